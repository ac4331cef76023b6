"""The event code vocabulary (CiGri v3, `reference/cigri-v3-server.md` §6.2, plus this port's own
codes), one type: a misspelt code is a mypy error, not a silent new code in the database.

The values are what the `events.code` column stores and what users read (gridevents, mails): never
rename one. Rule sets (which codes blacklist, which are aggregated, ...) are frozensets of members in
the module that owns the rule (`colombo`, `notifications`, `failures`). An admin's manual event may
carry a code of its own (`storage.actions.create_admin_event`): that is the one free-text code.
"""

from __future__ import annotations

from enum import StrEnum


class EventCode(StrEnum):
    """Every code cigri records or reads."""

    # campaign life (API, updater, metascheduler)
    NEW_CAMPAIGN = "NEW_CAMPAIGN"
    FINISHED_CAMPAIGN = "FINISHED_CAMPAIGN"
    PAUSED = "PAUSED"
    RESUMED = "RESUMED"
    NO_USABLE_CLUSTER = "NO_USABLE_CLUSTER"
    EPILOGUE_SKIPPED = "EPILOGUE_SKIPPED"
    # blacklists and cancellations
    BLACKLIST = "BLACKLIST"
    USER_FRAG = "USER_FRAG"
    FRAG = "FRAG"
    FRAG_RESUBMIT = "FRAG_RESUBMIT"
    FRAG_RESUBMIT_BY_NIKITA = "FRAG_RESUBMIT_BY_NIKITA"
    REMOTE_WAITING_FRAG = "REMOTE_WAITING_FRAG"
    CIGRI_WALLTIME = "CIGRI_WALLTIME"
    QUEUED_FOR_TOO_LONG = "QUEUED_FOR_TOO_LONG"
    MANUAL_EVENT = "MANUAL_EVENT"
    CLUSTER_MANUALLY_DISABLED = "CLUSTER_MANUALLY_DISABLED"
    # job failures (failure analysis, runner)
    RESUBMIT = "RESUBMIT"
    RESUBMIT_END = "RESUBMIT_END"
    EXIT_ERROR = "EXIT_ERROR"
    PROLOG_EXIT_ERROR = "PROLOG_EXIT_ERROR"
    EPILOG_EXIT_ERROR = "EPILOG_EXIT_ERROR"
    WORKING_DIRECTORY_ERROR = "WORKING_DIRECTORY_ERROR"
    UNKNOWN_ERROR = "UNKNOWN_ERROR"
    OAR_AUTO_RESUBMIT = "OAR_AUTO_RESUBMIT"
    TOO_MANY_RESUBMIT = "TOO_MANY_RESUBMIT"
    WALLTIME_WARNING = "WALLTIME_WARNING"
    LAUNCH_ERROR = "LAUNCH_ERROR"
    STUCK_LAUNCHING_JOB = "STUCK_LAUNCHING_JOB"
    RUNNER_SUBMIT_ERROR = "RUNNER_SUBMIT_ERROR"
    RUNNER_SUBMIT_TIMEOUT = "RUNNER_SUBMIT_TIMEOUT"
    RUNNER_SUBMIT_TOO_LARGE = "RUNNER_SUBMIT_TOO_LARGE"
    RUNNER_SUBMIT_PERMISSION_DENIED = "RUNNER_SUBMIT_PERMISSION_DENIED"
    RUNNER_SUBMIT_TOKEN_NOT_FOUND = "RUNNER_SUBMIT_TOKEN_NOT_FOUND"
    RUNNER_GET_JOB_SERVER_ERROR = "RUNNER_GET_JOB_SERVER_ERROR"
    RUNNER_GET_JOB_UNKNOWN_ERROR = "RUNNER_GET_JOB_UNKNOWN_ERROR"
    RUNNER_GET_JOB_CHUNK_ERROR = "RUNNER_GET_JOB_CHUNK_ERROR"
    RUNNER_GET_REMOTE_ID_ERROR = "RUNNER_GET_REMOTE_ID_ERROR"
    # output collection
    MISSING_OUTPUT_FILE = "MISSING_OUTPUT_FILE"
    OUTPUT_COLLECTION_FAILED = "OUTPUT_COLLECTION_FAILED"
    OUTPUT_DESTINATION_REFUSED = "OUTPUT_DESTINATION_REFUSED"
    OUTPUTS_REMOVED = "OUTPUTS_REMOVED"  # a gridclean --outputs request carried out
    OUTPUTS_REMOVAL_FAILED = "OUTPUTS_REMOVAL_FAILED"
    # automations and schedules
    RULE_FIRED = "RULE_FIRED"  # a rule's firing, recorded on its campaign
    RULE_NOTIFY = "RULE_NOTIFY"  # the message of a rule's notify action
    SCHEDULE_FAILED = "SCHEDULE_FAILED"  # a scheduled campaign that could not be created
    # cluster API calls (the OAR client's codes) and cluster health
    GET_ROOT = "GET_ROOT"
    GET_JOB = "GET_JOB"
    GET_JOBS = "GET_JOBS"
    GET_MEDIA = "GET_MEDIA"
    GET_RESOURCES = "GET_RESOURCES"
    GET_STRESS_FACTOR = "GET_STRESS_FACTOR"
    FILL_JOBS_CACHE = "FILL_JOBS_CACHE"
    SUBMIT_JOB = "SUBMIT_JOB"
    DELETE_JOB = "DELETE_JOB"
    DELETE_MEDIA = "DELETE_MEDIA"
    TIMEOUT = "TIMEOUT"
    POST_TIMEOUT = "POST_TIMEOUT"
    CONNECTION_REFUSED = "CONNECTION_REFUSED"
    CONNECTION_RESET = "CONNECTION_RESET"
    HOST_UNREACHABLE = "HOST_UNREACHABLE"
    SOCKET_ERROR = "SOCKET_ERROR"
    SSL_ERROR = "SSL_ERROR"
    REQUEST_TOO_LARGE = "REQUEST_TOO_LARGE"
    PERMISSION_DENIED = "PERMISSION_DENIED"
    FORBIDDEN = "FORBIDDEN"
    JWT_TOKEN_NOT_FOUND = "JWT_TOKEN_NOT_FOUND"
    CLUSTER_API_ERROR = "CLUSTER_API_ERROR"
    CLUSTER_API_SERVER_ERROR = "CLUSTER_API_SERVER_ERROR"
    CLUSTER_API_BAD_REQUEST_ERROR = "CLUSTER_API_BAD_REQUEST_ERROR"
    UNDER_STRESS = "UNDER_STRESS"
    ADMIN_TOKEN_MISSING = "ADMIN_TOKEN_MISSING"
    ADMIN_TOKEN_REJECTED = "ADMIN_TOKEN_REJECTED"
    # daemons (log class)
    ALMIGHTY_STARTING = "ALMIGHTY_STARTING"
    ALMIGHTY_TERMINATING = "ALMIGHTY_TERMINATING"
    RUNNER_FAILED = "RUNNER_FAILED"
    DAEMON_RESTARTED = "DAEMON_RESTARTED"
    CHILD_TIMEOUT = "CHILD_TIMEOUT"
    JUDAS_FAILED = "JUDAS_FAILED"
    NOTIFIER_FAILED = "NOTIFIER_FAILED"
    NIKITA_KILL_PROBLEM = "NIKITA_KILL_PROBLEM"
    NIKITA_CLEAN_AFFINITY = "NIKITA_CLEAN_AFFINITY"

    @classmethod
    def known(cls, code: str | None) -> EventCode | None:
        """The member spelt `code`, or None (a code from outside: an OAR client error)."""
        try:
            return cls(code) if code is not None else None
        except ValueError:
            return None
