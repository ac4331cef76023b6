"""The schema, as SQLAlchemy Core tables. The only place table shapes are written.

Table names follow CiGri v3 where the meaning is the same. Fixed from v3: enumerations are checked
strings (portable to SQLite), cluster names are unique, foreign keys cascade from campaigns so a purge
is one DELETE, prologue/epilogue jobs have a NULL `param_id` instead of v3's fake parameter 0, and
events.checked is a boolean. New tables: `submissions` (crash-safe OAR submission intents),
`daemon_heartbeats`, `daemon_leases`, `api_tokens`, `notification_messages` (outbox) and
`collected_files`.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from sqlalchemy import (
    BigInteger,
    Boolean,
    Column,
    DateTime,
    Dialect,
    Float,
    ForeignKey,
    Index,
    Integer,
    MetaData,
    String,
    Table,
    Text,
    UniqueConstraint,
    text,
)
from sqlalchemy.types import TypeDecorator

NAMING_CONVENTION = {
    "ix": "ix_%(column_0_label)s",
    "uq": "uq_%(table_name)s_%(column_0_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}

metadata = MetaData(naming_convention=NAMING_CONVENTION)

# SQLite autoincrements only INTEGER PRIMARY KEY; PostgreSQL gets BIGINT identities.
BigId = BigInteger().with_variant(Integer(), "sqlite")


class UTCDateTime(TypeDecorator[datetime]):
    """TIMESTAMPTZ that always comes back as an aware UTC datetime (SQLite stores naive text)."""

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError("naive datetime given to the database; use aware UTC")
        if dialect.name == "sqlite":
            return value.astimezone(UTC).replace(tzinfo=None)
        return value

    def process_result_value(self, value: Any, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            return value.replace(tzinfo=UTC)
        return value.astimezone(UTC)


def _cascade(target: str) -> ForeignKey:
    return ForeignKey(target, ondelete="CASCADE")


clusters = Table(
    "clusters", metadata,
    Column("id", Integer, primary_key=True),
    Column("name", String(255), nullable=False, unique=True),
    Column("api_url", String(255), nullable=False),
    Column("api_auth_type", String(16), nullable=False, server_default="header"),
    Column("api_username", String(255)),
    Column("api_password", String(255)),
    Column("api_auth_header", String(255)),
    Column("api_chunk_size", Integer, nullable=False, server_default="100"),
    Column("api_limit", Integer, nullable=False, server_default="100"),
    Column("api_timeout_seconds", Float),
    Column("ssh_host", String(255)),
    Column("batch", String(16), nullable=False, server_default="oar2_5"),
    Column("resource_unit", String(255), server_default="resource_id"),
    Column("power", Integer),
    Column("properties", String(255)),
    Column("stress_factor", Float, nullable=False, server_default="0"),
    Column("enabled", Boolean, nullable=False, server_default="1"),
    Column("created_at", UTCDateTime),
    Column("night_window", String(64)),  # NULL: NIGHT_WINDOW
    Column("time_zone", String(64)),  # NULL: NIGHT_TIME_ZONE
    Column("injection_policy", String(16)),  # NULL: RUNNER_INJECTION_POLICY
)

users_mapping = Table(
    "users_mapping", metadata,
    Column("id", Integer, primary_key=True),
    Column("grid_login", String(255), nullable=False),
    Column("cluster_login", Text),
    Column("cluster_id", Integer, _cascade("clusters.id"), nullable=False),
    UniqueConstraint("grid_login", "cluster_id", name="uq_users_mapping_login_cluster"),
)

campaigns = Table(
    "campaigns", metadata,
    Column("id", Integer, primary_key=True),
    Column("grid_user", String(255), nullable=False, index=True),
    Column("state", String(32), nullable=False, index=True),
    Column("type", String(255), nullable=False, server_default="normal"),
    Column("name", String(255)),
    Column("submission_time", UTCDateTime),
    Column("completion_time", UTCDateTime),
    Column("nb_jobs", BigInteger, nullable=False, server_default="0"),
    Column("jdl", Text),
    # the schedule that submitted it (not a foreign key: campaign_schedules points back here;
    # removing a schedule clears it, storage.schedules.remove_schedule)
    Column("schedule_id", Integer, index=True),
)

campaign_properties = Table(
    "campaign_properties", metadata,
    Column("id", Integer, primary_key=True),
    Column("campaign_id", Integer, _cascade("campaigns.id"), nullable=False),
    Column("cluster_id", Integer, _cascade("clusters.id")),  # NULL = campaign-wide
    Column("name", String(255), nullable=False),
    Column("value", Text, nullable=False),
    Index("ix_campaign_properties_campaign_cluster", "campaign_id", "cluster_id", "name"),
)

parameters = Table(
    "parameters", metadata,
    Column("id", BigId, primary_key=True),
    Column("campaign_id", Integer, _cascade("campaigns.id"), nullable=False),
    Column("name", String(255), nullable=False),
    Column("param", Text, nullable=False),
    UniqueConstraint("campaign_id", "name", name="uq_parameters_campaign_name"),
)

bag_of_tasks = Table(
    "bag_of_tasks", metadata,
    Column("id", BigId, primary_key=True),
    Column("campaign_id", Integer, _cascade("campaigns.id"), nullable=False),
    Column("param_id", BigInteger, _cascade("parameters.id"), nullable=False),
    Column("priority", Integer, nullable=False, server_default="10"),
    Index("ix_bag_of_tasks_campaign_priority", "campaign_id", "priority", "id"),
    Index("ix_bag_of_tasks_param_id", "param_id"),
)

jobs_to_launch = Table(
    "jobs_to_launch", metadata,
    Column("id", BigId, primary_key=True),
    Column("task_id", BigInteger, _cascade("bag_of_tasks.id"), nullable=False, unique=True),
    Column("cluster_id", Integer, _cascade("clusters.id"), nullable=False),
    Column("tag", String(255)),
    Column("queuing_date", UTCDateTime),
    Column("runner_options", Text),
    Column("order_num", Integer, nullable=False, server_default="1"),
    Index("ix_jobs_to_launch_cluster_order", "cluster_id", "order_num", "id"),
)

submissions = Table(
    "submissions", metadata,
    Column("id", BigId, primary_key=True),
    Column("key", String(64), nullable=False, unique=True),  # carried in the OAR job name
    Column("cluster_id", Integer, _cascade("clusters.id"), nullable=False),
    Column("campaign_id", Integer, _cascade("campaigns.id"), nullable=False),
    Column("state", String(16), nullable=False),  # intent, submitted, failed, reconciled
    Column("nb_jobs", Integer, nullable=False),
    Column("remote_array_id", BigInteger),
    Column("created_at", UTCDateTime, nullable=False),
    Column("updated_at", UTCDateTime),
    Column("message", Text),
    Index("ix_submissions_cluster_state", "cluster_id", "state"),
)

jobs = Table(
    "jobs", metadata,
    Column("id", BigId, primary_key=True),
    Column("campaign_id", Integer, _cascade("campaigns.id"), nullable=False),
    Column("param_id", BigInteger, _cascade("parameters.id")),  # NULL for prologue/epilogue
    Column("batch_id", BigInteger),
    Column("cluster_id", Integer, _cascade("clusters.id")),
    Column("collect_id", Integer),
    Column("state", String(32), nullable=False),
    Column("return_code", Integer),
    Column("submission_time", UTCDateTime),
    Column("start_time", UTCDateTime),
    Column("stop_time", UTCDateTime),
    Column("node_name", String(255)),
    Column("resources_used", Integer),
    Column("remote_id", BigInteger),
    Column("tag", String(255)),
    Column("runner_options", Text),
    Column("submission_id", BigInteger, ForeignKey("submissions.id", ondelete="SET NULL")),
    Column("array_index", Integer),  # OAR_ARRAY_INDEX of this job in its array submission
    Column("attempt", Integer, nullable=False, server_default="1"),  # nth job of its parameter
    Column("updated_at", UTCDateTime),
    Index("ix_jobs_campaign_state", "campaign_id", "state"),
    Index("ix_jobs_cluster_state", "cluster_id", "state"),
    Index("ix_jobs_state", "state"),
    Index("ix_jobs_param_id", "param_id"),
    Index("ix_jobs_remote", "cluster_id", "remote_id"),
    Index("ix_jobs_submission_id", "submission_id"),
    # Prologue and epilogue jobs only (migration 0003): the epilogue check finds a campaign's
    # among its million task jobs, and task job writes never touch it.
    Index("ix_jobs_campaign_cluster_tag", "campaign_id", "cluster_id", "tag", "state",
          postgresql_where=text("param_id IS NULL"), sqlite_where=text("param_id IS NULL")),
)

events = Table(
    "events", metadata,
    Column("id", BigId, primary_key=True),
    Column("class", String(16), key="class_", nullable=False),
    Column("code", String(32), nullable=False),
    Column("state", String(16), nullable=False, server_default="open"),
    Column("job_id", BigInteger, _cascade("jobs.id")),
    Column("cluster_id", Integer, _cascade("clusters.id")),
    Column("campaign_id", Integer, _cascade("campaigns.id")),
    Column("parent", BigInteger, ForeignKey("events.id", ondelete="SET NULL")),
    Column("checked", Boolean, nullable=False, server_default="0"),
    Column("notified", Boolean, nullable=False, server_default="0"),
    Column("date_open", UTCDateTime),
    Column("date_closed", UTCDateTime),
    Column("date_update", UTCDateTime),
    Column("message", Text),
    Index("ix_events_campaign_state", "campaign_id", "state"),
    Index("ix_events_cluster_state", "cluster_id", "state"),
    Index("ix_events_job_id", "job_id"),
    Index("ix_events_state_checked", "state", "checked"),
    Index("ix_events_notified", "notified"),
    # The automations' watermark on closures (migration 0009): rules on closed events read the
    # events closed since their last pass, not every closed event.
    Index("ix_events_date_closed", "date_closed"),
)

queue_counts = Table(
    "queue_counts", metadata,
    Column("id", BigId, primary_key=True),
    Column("date", UTCDateTime, nullable=False),
    Column("campaign_id", Integer, _cascade("campaigns.id"), nullable=False),
    Column("cluster_id", Integer, _cascade("clusters.id"), nullable=False),
    Column("jobs_count", Integer, nullable=False),
)

admission_rules = Table(
    "admission_rules", metadata,
    Column("id", Integer, primary_key=True),
    Column("rule", String(64), nullable=False),  # name of a built-in rule, never code
    Column("value", Text),  # JSON arguments of the rule
    Column("enabled", Boolean, nullable=False, server_default="1"),
)

user_notifications = Table(
    "user_notifications", metadata,
    Column("id", Integer, primary_key=True),
    Column("grid_user", String(255), nullable=False),
    Column("type", String(16), nullable=False),
    Column("identity", String(1024), nullable=False),
    Column("severity", String(16), nullable=False, server_default="low"),
    Column("format", String(32)),  # webhook payload: json (slack & co. are Apprise URLs, 0010)
    Column("created_at", UTCDateTime),
    UniqueConstraint("grid_user", "identity", "type", name="uq_user_notifications_subscription"),
)

notification_messages = Table(
    "notification_messages", metadata,
    Column("id", BigId, primary_key=True),
    Column("dedup_key", String(255), nullable=False, unique=True),
    Column("grid_user", String(255), nullable=False),
    Column("type", String(16), nullable=False),
    Column("identity", String(1024), nullable=False),
    Column("format", String(32)),
    Column("severity", String(16), nullable=False),
    Column("subject", Text, nullable=False),
    Column("body", Text, nullable=False),
    Column("state", String(16), nullable=False, server_default="pending"),  # pending, sent, failed
    Column("attempts", Integer, nullable=False, server_default="0"),
    Column("next_attempt_at", UTCDateTime),
    Column("created_at", UTCDateTime, nullable=False),
    Column("sent_at", UTCDateTime),
    Column("last_error", Text),
    Index("ix_notification_messages_state_next", "state", "next_attempt_at"),
)

grid_usage = Table(
    "grid_usage", metadata,
    Column("id", BigId, primary_key=True),
    Column("date", UTCDateTime, nullable=False, index=True),
    Column("cluster_id", Integer, _cascade("clusters.id"), nullable=False),
    Column("max_resources", Integer),
    Column("used_resources", Integer),
    Column("unavailable_resources", Integer),
    Column("used_by_cigri", Integer),
)

users_priority = Table(
    "users_priority", metadata,
    Column("id", Integer, primary_key=True),
    Column("grid_user", String(255), nullable=False),
    Column("cluster_id", Integer, _cascade("clusters.id"), nullable=False),
    Column("priority", Integer, nullable=False),
    UniqueConstraint("grid_user", "cluster_id", name="uq_users_priority_user_cluster"),
)

tasks_affinity = Table(
    "tasks_affinity", metadata,
    Column("id", BigId, primary_key=True),
    Column("param_id", BigInteger, _cascade("parameters.id"), nullable=False),
    Column("cluster_id", Integer, _cascade("clusters.id"), nullable=False),
    Column("priority", Integer, nullable=False),
    UniqueConstraint("param_id", "cluster_id", name="uq_tasks_affinity_param_cluster"),
)

taps = Table(
    "taps", metadata,
    Column("id", BigId, primary_key=True),
    Column("cluster_id", Integer, _cascade("clusters.id"), nullable=False),
    Column("campaign_id", Integer, _cascade("campaigns.id"), nullable=False),
    Column("state", String(16), nullable=False, server_default="open"),
    Column("rate", Integer, nullable=False),
    Column("close_date", UTCDateTime),
    UniqueConstraint("cluster_id", "campaign_id", name="uq_taps_cluster_campaign"),
)

daemon_heartbeats = Table(
    "daemon_heartbeats", metadata,
    Column("name", String(255), primary_key=True),  # role, or role:cluster for runners
    Column("host", String(255), nullable=False),
    Column("pid", Integer, nullable=False),
    Column("started_at", UTCDateTime, nullable=False),
    Column("beat_at", UTCDateTime, nullable=False),
    Column("interval_seconds", Float, nullable=False),
    Column("passes", BigInteger, nullable=False, server_default="0"),
    Column("failures", Integer, nullable=False, server_default="0"),
)

daemon_leases = Table(
    "daemon_leases", metadata,
    Column("role", String(255), primary_key=True),  # one active instance per role (and cluster)
    Column("owner", String(255), nullable=False),
    Column("expires_at", UTCDateTime, nullable=False),
)

api_tokens = Table(
    "api_tokens", metadata,
    Column("id", Integer, primary_key=True),
    Column("grid_user", String(255), nullable=False, index=True),
    Column("name", String(255)),
    Column("token_hash", String(128), nullable=False, unique=True),
    Column("created_at", UTCDateTime, nullable=False),
    Column("expires_at", UTCDateTime),
    Column("last_used_at", UTCDateTime),
    Column("revoked_at", UTCDateTime),
)

# Secrets the grid generates for itself (migration 0007): the dashboard's session-signing key.
site_secrets = Table(
    "site_secrets", metadata,
    Column("name", String(64), primary_key=True),
    Column("value", String(255), nullable=False),
    Column("created_at", UTCDateTime, nullable=False),
)

collected_files = Table(
    "collected_files", metadata,
    Column("id", BigId, primary_key=True),
    Column("campaign_id", Integer, _cascade("campaigns.id"), nullable=False),
    Column("job_id", BigInteger, _cascade("jobs.id"), nullable=False),
    Column("remote_path", Text, nullable=False),
    Column("local_path", Text),
    Column("size", BigInteger),
    Column("state", String(16), nullable=False),  # pending, collected, missing, failed
    Column("attempts", Integer, nullable=False, server_default="0"),
    Column("collected_at", UTCDateTime),
    Column("message", Text),
    UniqueConstraint("job_id", "remote_path", name="uq_collected_files_job_path"),
    Index("ix_collected_files_campaign_state", "campaign_id", "state"),
)

# `DELETE /campaigns/<id>/outputs` records a request here; the collector carries it out in bounded
# batches of OAR jobs (`last_cluster_id`, `last_remote_id`: how far it got), reporting its counts.
output_purges = Table(
    "output_purges", metadata,
    Column("id", BigId, primary_key=True),
    Column("campaign_id", Integer, _cascade("campaigns.id"), nullable=False),
    Column("requested_by", String(255), nullable=False),
    Column("state", String(16), nullable=False),  # pending, running, done, failed
    Column("requested_at", UTCDateTime, nullable=False),
    Column("finished_at", UTCDateTime),
    Column("last_cluster_id", Integer, nullable=False, server_default="0"),
    Column("last_remote_id", BigInteger, nullable=False, server_default="0"),
    Column("removed", Integer, nullable=False, server_default="0"),
    Column("missing", Integer, nullable=False, server_default="0"),
    Column("errors", Text, nullable=False, server_default=""),  # one cluster error a line
    Index("ix_output_purges_state", "state"),
)

# PostgreSQL keeps this up to date with statement triggers on `jobs` (baseline migration), so a
# campaign's finished count is one row read, not a count of a million index entries. SQLite counts.
campaign_job_counts = Table(
    "campaign_job_counts", metadata,
    Column("campaign_id", Integer, _cascade("campaigns.id"), primary_key=True),
    Column("terminated_tasks", BigInteger, nullable=False, server_default="0"),
)

# Per (campaign, cluster) sums behind `/campaigns/<id>/stats`, kept by PostgreSQL statement
# triggers on `jobs` (migration 0002) so the call reads a few rows instead of every job of a
# million-job campaign; SQLite computes the same figures from `jobs`. Only terminated tasks count,
# so the statements that write here are those that move tasks into or out of `terminated`, which
# already lock the campaign's `campaign_job_counts` row: no new waits for the daemons.
# `cluster_id` 0 stands for jobs and events without a cluster (a primary key cannot be NULL).
campaign_cluster_job_stats = Table(
    "campaign_cluster_job_stats", metadata,
    Column("campaign_id", Integer, _cascade("campaigns.id"), primary_key=True),
    Column("cluster_id", Integer, primary_key=True),
    Column("terminated", BigInteger, nullable=False, server_default="0"),  # with a param_id
    Column("timed", BigInteger, nullable=False, server_default="0"),  # with start and stop times
    Column("total_seconds", Float, nullable=False, server_default="0"),  # of the timed ones
    Column("squares", Float, nullable=False, server_default="0"),  # sum of squared durations
)

# Terminated tasks per (campaign, cluster) and minute of their stop time (PostgreSQL triggers):
# the throughput over a window sums at most window/60 rows per cluster.
campaign_cluster_throughput = Table(
    "campaign_cluster_throughput", metadata,
    Column("campaign_id", Integer, _cascade("campaigns.id"), primary_key=True),
    Column("cluster_id", Integer, primary_key=True),
    Column("minute", UTCDateTime, primary_key=True),
    Column("terminated", BigInteger, nullable=False, server_default="0"),
)

# Failure and resubmission events per (campaign, cluster), kept by PostgreSQL triggers on `events`
# in one row per database session that wrote them, so two transactions recording failures of the
# same campaign never wait for each other (the updater's blacklist relies on an advisory lock
# alone); the figure is the sum of the rows.
campaign_cluster_event_counts = Table(
    "campaign_cluster_event_counts", metadata,
    Column("campaign_id", Integer, _cascade("campaigns.id"), primary_key=True),
    Column("cluster_id", Integer, primary_key=True),
    Column("backend_pid", Integer, primary_key=True),  # pg_backend_pid() of the writer
    Column("failures", BigInteger, nullable=False, server_default="0"),  # job events, v3 sense
    Column("resubmissions", BigInteger, nullable=False, server_default="0"),  # RESUBMIT events
)

# The daemons' counters and histograms (`cigri.domain.telemetry`), one row per series: every
# daemon process adds its deltas at the end of a pass (one upsert); `/metrics` reads them all.
# `labels` is the canonical JSON of the sorted (label, value) pairs.
daemon_counters = Table(
    "daemon_counters", metadata,
    Column("name", String(128), primary_key=True),
    Column("labels", String(512), primary_key=True),
    Column("value", Float, nullable=False, server_default="0"),
)

# Tasks in `bag_of_tasks` per campaign, kept by PostgreSQL statement triggers (migration 0005) in
# one row per (campaign, database session) so writers never wait on a shared row; the figure is
# the sum of the rows (`backend_pid` 0: what the bag held when the migration ran).
bag_task_counts = Table(
    "bag_task_counts", metadata,
    Column("campaign_id", Integer, _cascade("campaigns.id"), primary_key=True),
    Column("backend_pid", Integer, primary_key=True),
    Column("tasks", BigInteger, nullable=False, server_default="0"),
)

# Automation rules (issue 13, migration 0009): a user's (about their campaigns) or an admin's
# (grid-wide); `definition` is the validated JSON (`cigri.domain.automations`).
automation_rules = Table(
    "automation_rules", metadata,
    Column("id", Integer, primary_key=True),
    Column("owner", String(255), nullable=False, index=True),
    Column("admin", Boolean, nullable=False, server_default="0"),
    Column("name", String(255), nullable=False),
    Column("definition", Text, nullable=False),
    Column("enabled", Boolean, nullable=False, server_default="1"),
    Column("created_at", UTCDateTime, nullable=False),
    Column("updated_at", UTCDateTime),
)

# One row per firing, written in the transaction that decides it and before its actions run
# (`state` pending); the actions and `state` done commit together. `dedup_key` makes a firing
# unique (rule, campaign, event id or window).
automation_firings = Table(
    "automation_firings", metadata,
    Column("id", BigId, primary_key=True),
    Column("rule_id", Integer, _cascade("automation_rules.id"), nullable=False),
    Column("campaign_id", Integer, _cascade("campaigns.id")),
    Column("dedup_key", String(255), nullable=False, unique=True),
    Column("trigger", Text, nullable=False),
    Column("actions", Text, nullable=False),  # JSON list of the actions to run
    Column("fired_at", UTCDateTime, nullable=False),
    Column("state", String(16), nullable=False, server_default="pending"),  # pending, done
    Column("outcome", Text),
    Column("done_at", UTCDateTime),
    Column("event_id", BigInteger),  # the RULE_FIRED event
    Index("ix_automation_firings_rule_campaign", "rule_id", "campaign_id", "fired_at"),
    Index("ix_automation_firings_state", "state"),
)

# Per (rule, campaign): last firing (cooldown) and the metric window's base sample (with, for
# `cluster_error_share`, each cluster's failures).
automation_rule_campaigns = Table(
    "automation_rule_campaigns", metadata,
    Column("rule_id", Integer, _cascade("automation_rules.id"), primary_key=True),
    Column("campaign_id", Integer, _cascade("campaigns.id"), primary_key=True),
    Column("last_fired_at", UTCDateTime),
    Column("window_start", UTCDateTime),
    Column("base_terminated", BigInteger, nullable=False, server_default="0"),
    Column("base_failures", BigInteger, nullable=False, server_default="0"),
    Column("base_resubmissions", BigInteger, nullable=False, server_default="0"),
    Column("base_clusters", Text),  # JSON {cluster id: failures} (migration 0011)
)

# Campaign schedules (migration 0009): a JDL submitted at `next_run_at`, once or every period
# (`definition`: `cigri.domain.schedules`); the run and the move of `next_run_at` commit together.
campaign_schedules = Table(
    "campaign_schedules", metadata,
    Column("id", Integer, primary_key=True),
    Column("owner", String(255), nullable=False, index=True),
    Column("name", String(255), nullable=False),
    Column("definition", Text, nullable=False),
    Column("enabled", Boolean, nullable=False, server_default="1"),
    Column("next_run_at", UTCDateTime, index=True),
    Column("last_campaign_id", Integer, ForeignKey("campaigns.id", ondelete="SET NULL")),
    Column("runs", Integer, nullable=False, server_default="0"),
    Column("skipped", Integer, nullable=False, server_default="0"),
    Column("last_error", Text),
    Column("created_at", UTCDateTime, nullable=False),
)

# The automations daemon's watermarks: the last event id read (opened events) and the last
# closure instant read (closed events).
automation_cursors = Table(
    "automation_cursors", metadata,
    Column("name", String(64), primary_key=True),
    Column("last_id", BigInteger, nullable=False, server_default="0"),
    Column("last_at", UTCDateTime),
)
