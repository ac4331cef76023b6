"""Typed settings: one file (`/etc/cigri/cigri.conf` or `$CIGRI_CONF`) plus `CIGRI_<KEY>` overrides.

The file is TOML with flat upper-case keys, so a CiGri v3 `cigri.conf` (``KEY = "value"`` lines)
reads as is; v3 key names are kept where the meaning is the same. Values may be TOML-typed or
strings ("900" and 900 are both fine). Everything is validated once at start; every bad key gets its
own message, and all of them are reported together. No other module reads the environment.
"""

from __future__ import annotations

import dataclasses
import difflib
import os
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import timedelta
from enum import Enum, StrEnum
from pathlib import Path
from typing import Any, Final, get_type_hints, overload

from cigri.domain.errors import ConfigError
from cigri.domain.night import DEFAULT_TIME_ZONE, DEFAULT_WINDOW, NightWindow, NightWindowError
from cigri.domain.scheduling import Policy

DEFAULT_CONF_PATH: Final = Path("/etc/cigri/cigri.conf")
ENV_PREFIX: Final = "CIGRI_"


def _user_database_url() -> str:
    data_home = Path(os.environ.get("XDG_DATA_HOME") or Path.home() / ".local" / "share")
    return f"sqlite:///{data_home / 'cigri' / 'cigri.db'}"


def _describe(text: str) -> dict[str, str]:
    return {"help": text}


def _seconds(text: str) -> dict[str, str]:
    """Metadata of a duration key: a number of seconds, with a `timedelta` view on Settings."""
    return {"help": text, "unit": "seconds"}


# Other accepted spellings (lower case) of choice values: v3's and libpq's names.
CHOICE_ALIASES: Final = {"pg": "postgresql", "postgres": "postgresql", "warn": "warning",
                         "fatal": "critical"}


class Choice(StrEnum):
    """The values a choice key accepts: matched regardless of case, with CHOICE_ALIASES."""

    @classmethod
    def _missing_(cls, value: object) -> Choice | None:
        text = str(value).strip().lower()
        text = CHOICE_ALIASES.get(text, text)
        return next((member for member in cls if member.value.lower() == text), None)


class DatabaseType(Choice):
    """v3 DATABASE_TYPE; empty means: DATABASE_URL, or the user-level SQLite file."""

    UNSET = ""
    POSTGRESQL = "PostgreSQL"
    SQLITE = "SQLite"


class SslMode(Choice):
    """libpq `sslmode`; empty leaves the driver's default (prefer)."""

    UNSET = ""
    DISABLE = "disable"
    ALLOW = "allow"
    PREFER = "prefer"
    REQUIRE = "require"
    VERIFY_CA = "verify-ca"
    VERIFY_FULL = "verify-full"


class LogLevel(Choice):
    """Python logging level names; v3's WARN and FATAL are aliases."""

    DEBUG = "DEBUG"
    INFO = "INFO"
    WARNING = "WARNING"
    ERROR = "ERROR"
    CRITICAL = "CRITICAL"


class LogFormat(Choice):
    TEXT = "text"
    JSON = "json"


class _Duration:
    """A `timedelta` view of a duration key (seconds), built on first read and kept: settings are
    frozen, so daemons write `settings.autofix_delay`, never `timedelta(seconds=...)`."""

    def __init__(self, key: str) -> None:
        self.key = key
        self.name = key.lower()

    def __set_name__(self, owner: type, name: str) -> None:
        self.name = name

    @overload
    def __get__(self, instance: None, owner: type) -> _Duration: ...
    @overload
    def __get__(self, instance: object, owner: type) -> timedelta: ...
    def __get__(self, instance: object | None, owner: type) -> timedelta | _Duration:
        if instance is None:
            return self
        view = timedelta(seconds=getattr(instance, self.key))
        instance.__dict__[self.name] = view  # later reads find it before the descriptor
        return view


@dataclass(frozen=True, kw_only=True)
class Settings:
    """Every setting of cigri. Field names are the configuration keys."""

    # Database
    DATABASE_URL: str = field(default="", metadata=_describe(
        "SQLAlchemy URL. Empty: built from DATABASE_* keys, or the user-level SQLite file."))
    DATABASE_TYPE: DatabaseType = field(default=DatabaseType.UNSET, metadata=_describe(
        "v3 key: PostgreSQL (also Pg, postgres) or SQLite, any case."))
    DATABASE_HOST: str = field(default="127.0.0.1", metadata=_describe("PostgreSQL host."))
    DATABASE_PORT: int = field(default=5432, metadata=_describe("PostgreSQL port."))
    DATABASE_NAME: str = field(default="cigri3", metadata=_describe("Database name."))
    DATABASE_USER_NAME: str = field(default="cigri3", metadata=_describe("Database login."))
    DATABASE_USER_PASSWORD: str = field(default="", metadata=_describe("Database password."))
    DATABASE_SSL_MODE: SslMode = field(default=SslMode.UNSET, metadata=_describe(
        "libpq sslmode; empty: the driver's default."))

    # Logging
    LOG_FILE: str = field(default="STDERR", metadata=_describe("File path, STDOUT or STDERR."))
    LOG_LEVEL: LogLevel = field(default=LogLevel.INFO, metadata=_describe(
        "DEBUG, INFO, WARNING (or WARN), ERROR, CRITICAL (or FATAL), any case."))
    LOG_FORMAT: LogFormat = field(default=LogFormat.TEXT, metadata=_describe(
        "text or json (for journald)."))

    # JDL defaults and admission
    DEFAULT_JOB_RESOURCES: str = field(default="/resource_id=1", metadata=_describe(
        "Default `resources` of a campaign on a cluster."))
    DEFAULT_JOB_WALLTIME: str = field(default="01:00:00", metadata=_describe(
        "Default `walltime` of a campaign on a cluster."))
    DEFAULT_MAX_RESUBMISSIONS: int = field(default=5, metadata=_describe(
        "Retry budget: walltime kills and errors resubmitted per task (best-effort kills are free)."))

    # Engine
    REMOTE_WAITING_TIMEOUT: int = field(default=900, metadata=_seconds(
        "Seconds a job may wait on OAR, or a task in the queue, before nikita kills/dequeues it."))
    EPILOGUE_BLACKLIST_TIMEOUT: int = field(default=900, metadata=_seconds(
        "Seconds a finished campaign waits for a blacklisted cluster to run its epilogue there "
        "before it terminates without it (EPILOGUE_SKIPPED)."))
    AUTOFIX_DELAY: int = field(default=30, metadata=_seconds(
        "Seconds before a transient cluster error is re-probed and, if fine, closed."))
    STRESS_FACTOR: float = field(default=0.8, metadata=_describe(
        "Cluster stress at or above this: no new work queued there (UNDER_STRESS)."))
    STDERR_TAIL: int = field(default=5, metadata=_describe("Lines of stderr in EXIT_ERROR events."))
    REST_QUERIES_TIMEOUT: float = field(default=30.0, metadata=_seconds(
        "Connect/read timeout in seconds of every OAR API call."))
    REST_CLIENT_CERTIFICATE_FILE: str = field(default="", metadata=_describe(
        "Client certificate for `cert` clusters."))
    REST_CLIENT_KEY_FILE: str = field(default="", metadata=_describe(
        "Private key for `cert` clusters."))
    REST_CLIENT_CA_FILE: str = field(default="", metadata=_describe("CA bundle for cluster APIs."))
    REST_CLIENT_VERIFY_SSL: bool = field(default=True, metadata=_describe(
        "Verify the TLS certificates of cluster APIs."))
    RUNNER_MIN_CYCLE_DURATION: float = field(default=5.0, metadata=_seconds(
        "Seconds between two runner passes on one cluster."))
    RUNNER_DEFAULT_INITIAL_NUMBER_OF_JOBS: int = field(default=2, metadata=_describe(
        "Initial and minimum tap rate (jobs per submission)."))
    RUNNER_TAP_INCREASE_FACTOR: float = field(default=1.5, metadata=_describe(
        "Multiplicative increase/decrease of the tap rate."))
    RUNNER_TAP_INCREASE_MAX: int = field(default=100, metadata=_describe(
        "Maximum tap rate, which is also the largest array job."))
    RUNNER_TAP_GRACE_PERIOD: int = field(default=60, metadata=_seconds(
        "Seconds after a tap closes during which its rate is not decreased."))
    RUNNER_TEMPORAL_GROUPING_DURATION: int = field(default=900, metadata=_seconds(
        "Target duration in seconds of one temporal-grouping batch job."))
    RUNNER_MAX_TEMPORAL_GROUPED_JOBS: int = field(default=50, metadata=_describe(
        "Maximum tasks in one temporal-grouping batch job."))
    DEFAULT_TEMPORAL_GROUPING: str = field(default="false", metadata=_describe(
        "What a campaign's temporal_grouping false (the JDL's default) means on this site: false "
        "(never grouped, v3) or auto (grouped once its tasks are short compared with OAR's "
        "measured start cost on the cluster, as temporal_grouping: auto)."))
    NIGHT_WINDOW: str = field(default="20:00-07:00 weekends", metadata=_describe(
        "Grid-wide night of clusters without their own night_window: HH:MM-HH:MM, optionally "
        "followed by 'weekends' (all of Saturday and Sunday). nightly and semi-best-effort "
        "campaigns submit normal jobs only then."))
    NIGHT_TIME_ZONE: str = field(default="UTC", metadata=_describe(
        "Grid-wide time zone (IANA name, e.g. Europe/Paris) of clusters without their own "
        "time_zone."))
    RUNNER_INJECTION_POLICY: str = field(default="capacity", metadata=_describe(
        "How many tasks a runner pass submits: capacity (fill the free resources plus the waiting "
        "reference, then keep the reference), pi (PI controller on cigri's waiting jobs) or tap "
        "(v3). A cluster's injection_policy overrides it."))
    RUNNER_WAITING_REFERENCE: int = field(default=4, metadata=_describe(
        "Least number of cigri jobs kept waiting on a cluster's OAR queue (capacity and pi); it "
        "grows with the jobs that end during a pass interval plus a start latency."))
    RUNNER_MAX_JOBS_PER_PASS: int = field(default=1000, metadata=_describe(
        "Largest submission (array job) of one runner pass under capacity and pi."))
    RUNNER_PI_KP: float = field(default=1.0, metadata=_describe(
        "Proportional gain of the pi injection policy."))
    RUNNER_PI_KI: float = field(default=0.2, metadata=_describe(
        "Integral gain of the pi injection policy."))
    METASCHEDULER_INTERVAL: float = field(default=5.0, metadata=_seconds(
        "Seconds between two meta-scheduler passes."))
    METASCHEDULER_POLICY: Policy = field(default=Policy.FAIR_SHARE, metadata=_describe(
        "fair_share (round-robin between users of a cluster) or fifo (v3: priority then age)."))
    UPDATER_INTERVAL: float = field(default=5.0, metadata=_seconds(
        "Seconds between two updater passes."))
    UPDATER_WAITING_INTERVAL: float = field(default=2.0, metadata=_seconds(
        "Seconds to the next updater pass after one that saw jobs just submitted and not started "
        "yet (capped by UPDATER_INTERVAL), so their start is seen, and the runner woken, sooner."))
    NIKITA_INTERVAL: float = field(default=10.0, metadata=_seconds(
        "Seconds between two nikita passes."))
    COLLECTOR_INTERVAL: float = field(default=30.0, metadata=_seconds(
        "Seconds between two collector passes."))
    COLLECTOR_DIRECTORY: str = field(default="/var/lib/cigri/results", metadata=_describe(
        "Where gathered outputs go, one private directory per campaign (0700, its owner's)."))
    COLLECTOR_ALLOW_USER_DESTINATION: bool = field(default=False, metadata=_describe(
        "Let a campaign's output_destination (an absolute path in a directory its owner owns; "
        "the collector must run as root) replace COLLECTOR_DIRECTORY/<id>."))
    COLLECTOR_SSH_OPTIONS: str = field(default="-o BatchMode=yes", metadata=_describe(
        "ssh -o options of scp/rsync gathering (clusters with ssh_host), e.g. -o Port=2222."))
    NOTIFIER_INTERVAL: float = field(default=10.0, metadata=_seconds(
        "Seconds between two notifier passes."))
    AUTOMATIONS_INTERVAL: float = field(default=10.0, metadata=_seconds(
        "Seconds between two passes of the automations daemon (rules and their actions)."))
    DAEMON_MAX_CONSECUTIVE_FAILURES: int = field(default=10, metadata=_describe(
        "Failed passes in a row after which a daemon exits (and is restarted)."))
    DAEMON_IDLE_FACTOR: float = field(default=6.0, metadata=_describe(
        "On PostgreSQL, a daemon whose pass found nothing to do waits up to this many intervals "
        "(at most half its lease) before the next one; work arriving wakes it at once (NOTIFY). "
        "1 keeps every daemon on its interval."))
    ALMIGHTY_RESTART_DELAY: float = field(default=5.0, metadata=_seconds(
        "Seconds almighty waits before restarting a daemon that died."))
    ALMIGHTY_CHILD_TIMEOUT: float = field(default=300.0, metadata=_seconds(
        "Seconds without a heartbeat after which almighty kills and restarts a hung daemon."))
    LEASE_SECONDS: float = field(default=60.0, metadata=_seconds(
        "Length of a daemon's lease on its role (renewed during long passes); another "
        "instance takes over after it, or at once when the holder's process on the same host "
        "is gone."))
    GRID_USAGE_UPDATE_PERIOD: int = field(default=60, metadata=_seconds(
        "Seconds between grid-usage samples; 0 disables them."))
    CAMPAIGN_THROUGHPUT_WINDOW: int = field(default=3600, metadata=_seconds(
        "Window in seconds for the throughput statistic."))
    PURGE_AFTER_DAYS: int = field(default=0, metadata=_describe(
        "cigri maintenance purges finished campaigns older than this; 0 never purges."))

    # REST API and identity
    API_LISTEN: str = field(default="127.0.0.1:8080", metadata=_describe(
        "host:port the REST API listens on."))
    API_SOCKET: str = field(default="", metadata=_describe(
        "Unix socket of the REST API for users on this host (SO_PEERCRED identity)."))
    API_HEADER_USERNAME: str = field(default="X-CIGRI-USER", metadata=_describe(
        "Header a trusted reverse proxy sets to the authenticated user."))
    API_TRUSTED_PROXIES: str = field(default="", metadata=_describe(
        "Comma-separated addresses allowed to set API_HEADER_USERNAME."))
    ADMINS: str = field(default="root", metadata=_describe("Comma-separated admin grid users."))
    API_MAX_JSON_BYTES: int = field(default=4 << 20, metadata=_describe(
        "Largest JSON request body in bytes (413 above it); streamed text/plain parameter "
        "uploads are not limited by it."))
    API_STATEMENT_TIMEOUT: float = field(default=120.0, metadata=_describe(
        "Seconds one SQL statement of an API request may run (PostgreSQL statement_timeout); "
        "0 disables."))
    MAX_TASKS_PER_CAMPAIGN: int = field(default=2_000_000, metadata=_describe(
        "Most tasks one campaign may hold (a submission or an addition above it is refused)."))
    MAX_TASKS_PER_USER: int = field(default=5_000_000, metadata=_describe(
        "Most tasks one user may have waiting in the bag of tasks, all campaigns together."))

    # Web dashboard (docs/ui.md)
    UI_SECRET_KEY: str = field(default="", metadata=_describe(
        "Key signing the dashboard's session cookies; empty: generated once and kept in the "
        "database (site_secrets), shared by every API process."))
    UI_SESSION_HOURS: int = field(default=12, metadata=_describe(
        "Hours a dashboard sign-in lasts (the cookie's expiry; revoking the token ends it sooner)."))
    UI_POLL_SECONDS: float = field(default=5.0, metadata=_describe(
        "Seconds between the dashboard's refreshes of its live parts (fragment polling)."))

    # Metrics (docs/metrics.md)
    METRICS_LISTEN: str = field(default="127.0.0.1:9468", metadata=_describe(
        "host:port of `cigri metrics serve` (/metrics on a port of its own)."))
    METRICS_PER_CAMPAIGN: bool = field(default=False, metadata=_describe(
        "Also publish per-campaign series (tasks in the bag per campaign id)."))
    METRICS_PER_USER: bool = field(default=False, metadata=_describe(
        "Also publish per-user series (campaigns by user and state)."))

    # Notifications
    NOTIFICATIONS_SMTP_SERVER: str = field(default="", metadata=_describe(
        "SMTP relay; empty disables mail."))
    NOTIFICATIONS_SMTP_PORT: int = field(default=25, metadata=_describe("SMTP port."))
    NOTIFICATIONS_SMTP_FROM: str = field(default="cigri@localhost", metadata=_describe(
        "From address of mails."))
    NOTIFICATIONS_SMTP_STARTTLS: bool = field(default=False, metadata=_describe("Use STARTTLS."))
    NOTIFICATIONS_SMTP_USER: str = field(default="", metadata=_describe("SMTP login."))
    NOTIFICATIONS_SMTP_PASSWORD: str = field(default="", metadata=_describe("SMTP password."))
    NOTIFICATIONS_SMTP_SUBJECT_TAG: str = field(default="[CIGRI]", metadata=_describe(
        "Prefix of subjects and instant messages."))
    NOTIFICATIONS_XMPP_SERVER: str = field(default="", metadata=_describe(
        "XMPP server; empty disables XMPP."))
    NOTIFICATIONS_XMPP_PORT: int = field(default=5222, metadata=_describe("XMPP port."))
    NOTIFICATIONS_XMPP_IDENTITY: str = field(default="", metadata=_describe("Bot JID."))
    NOTIFICATIONS_XMPP_PASSWORD: str = field(default="", metadata=_describe("Bot password."))
    NOTIFICATIONS_XMPP_VERIFY_TLS: bool = field(default=True, metadata=_describe(
        "Verify the XMPP server's certificate when it offers STARTTLS."))
    NOTIFICATIONS_RATE_CAP: int = field(default=30, metadata=_describe(
        "Maximum messages per subscriber per hour."))

    # Typed views of the duration keys (the view of KEY is key.lower(); LEASE_SECONDS: lease_length).
    remote_waiting_timeout = _Duration("REMOTE_WAITING_TIMEOUT")
    epilogue_blacklist_timeout = _Duration("EPILOGUE_BLACKLIST_TIMEOUT")
    autofix_delay = _Duration("AUTOFIX_DELAY")
    rest_queries_timeout = _Duration("REST_QUERIES_TIMEOUT")
    runner_min_cycle_duration = _Duration("RUNNER_MIN_CYCLE_DURATION")
    runner_tap_grace_period = _Duration("RUNNER_TAP_GRACE_PERIOD")
    runner_temporal_grouping_duration = _Duration("RUNNER_TEMPORAL_GROUPING_DURATION")
    metascheduler_interval = _Duration("METASCHEDULER_INTERVAL")
    updater_interval = _Duration("UPDATER_INTERVAL")
    updater_waiting_interval = _Duration("UPDATER_WAITING_INTERVAL")
    nikita_interval = _Duration("NIKITA_INTERVAL")
    collector_interval = _Duration("COLLECTOR_INTERVAL")
    notifier_interval = _Duration("NOTIFIER_INTERVAL")
    automations_interval = _Duration("AUTOMATIONS_INTERVAL")
    almighty_restart_delay = _Duration("ALMIGHTY_RESTART_DELAY")
    almighty_child_timeout = _Duration("ALMIGHTY_CHILD_TIMEOUT")
    lease_length = _Duration("LEASE_SECONDS")
    grid_usage_update_period = _Duration("GRID_USAGE_UPDATE_PERIOD")
    campaign_throughput_window = _Duration("CAMPAIGN_THROUGHPUT_WINDOW")

    @property
    def database_url(self) -> str:
        """The URL to connect to, from DATABASE_URL, the v3 DATABASE_* keys, or user-level mode."""
        if self.DATABASE_URL:
            return self.DATABASE_URL
        if self.DATABASE_TYPE is DatabaseType.POSTGRESQL:
            auth = self.DATABASE_USER_NAME
            if self.DATABASE_USER_PASSWORD:
                auth += f":{self.DATABASE_USER_PASSWORD}"
            url = (f"postgresql+psycopg://{auth}@{self.DATABASE_HOST}:{self.DATABASE_PORT}/"
                   f"{self.DATABASE_NAME}")
            return url + (f"?sslmode={self.DATABASE_SSL_MODE}" if self.DATABASE_SSL_MODE else "")
        return _user_database_url()

    @property
    def admins(self) -> frozenset[str]:
        return frozenset(a.strip() for a in self.ADMINS.split(",") if a.strip())

    @property
    def trusted_proxies(self) -> frozenset[str]:
        return frozenset(a.strip() for a in self.API_TRUSTED_PROXIES.split(",") if a.strip())


SETTING_TYPES: Final[dict[str, type]] = {
    name: hint for name, hint in get_type_hints(Settings).items() if name.isupper()
}

_TRUE: Final = {"1", "true", "yes", "on"}
_FALSE: Final = {"0", "false", "no", "off", ""}


def _convert(key: str, raw: Any, kind: type) -> tuple[Any, str | None]:
    """Convert one raw value; return (value, error message or None)."""
    try:
        if kind is bool:
            if isinstance(raw, bool):
                return raw, None
            text = str(raw).strip().lower()
            if text in _TRUE:
                return True, None
            if text in _FALSE:
                return False, None
            raise ValueError
        if kind is int:
            if isinstance(raw, bool):
                raise ValueError
            return int(str(raw).strip()), None
        if kind is float:
            if isinstance(raw, bool):
                raise ValueError
            return float(str(raw).strip()), None
        if isinstance(raw, dict | list):
            raise ValueError
        if issubclass(kind, Enum):
            return _choose(key, raw, kind)
        return str(raw), None
    except ValueError:
        return None, f"{key}: expected {kind.__name__}, got {raw!r}"


def _choose(key: str, raw: Any, kind: type[Enum]) -> tuple[Any, str | None]:
    """A choice key's member, or a message naming the key, the value and the choices."""
    try:
        return kind(raw if isinstance(raw, Enum) else str(raw).strip()), None
    except ValueError:
        return None, f"{key}: unknown value {raw!r}; expected one of {_choices(kind)}"


def _choices(kind: type[Enum]) -> str:
    named = ", ".join(str(member.value) for member in kind if member.value)
    return named + (" (or empty)" if any(member.value == "" for member in kind) else "")


def _check_ranges(values: Mapping[str, Any]) -> list[str]:
    problems = []
    for key, value in values.items():
        if SETTING_TYPES[key] in (int, float) and value < 0:
            problems.append(f"{key}: must not be negative, got {value!r}")
    try:
        NightWindow.parse(values.get("NIGHT_WINDOW", DEFAULT_WINDOW),
                          values.get("NIGHT_TIME_ZONE", DEFAULT_TIME_ZONE))
    except NightWindowError as error:
        problems.append(f"NIGHT_WINDOW/NIGHT_TIME_ZONE: {error.message}")
    policy = values.get("RUNNER_INJECTION_POLICY", "capacity")
    if policy not in {"capacity", "pi", "tap"}:
        problems.append(f"RUNNER_INJECTION_POLICY: expected capacity, pi or tap, got {policy!r}")
    if values.get("DEFAULT_TEMPORAL_GROUPING", "false") not in {"false", "auto"}:
        problems.append("DEFAULT_TEMPORAL_GROUPING: expected false or auto, got "
                        f"{values['DEFAULT_TEMPORAL_GROUPING']!r}")
    for key in ("RUNNER_TAP_INCREASE_FACTOR", "DAEMON_IDLE_FACTOR"):
        factor = values.get(key)
        if factor is not None and factor < 1:
            problems.append(f"{key}: must be >= 1, got {factor!r}")
    return problems


def build_settings(raw: Mapping[str, Any], *, source: str = "settings") -> Settings:
    """Validate raw key/values (from a file, the environment or a test) into Settings."""
    values: dict[str, Any] = {}
    problems: list[str] = []
    for key, value in raw.items():
        if key not in SETTING_TYPES:
            hint = difflib.get_close_matches(key, SETTING_TYPES, n=1)
            suggestion = f" (did you mean {hint[0]}?)" if hint else ""
            problems.append(f"{key}: unknown key{suggestion}")
            continue
        converted, problem = _convert(key, value, SETTING_TYPES[key])
        if problem:
            problems.append(problem)
        else:
            values[key] = converted
    problems += _check_ranges(values)
    if problems:
        raise ConfigError(f"invalid configuration in {source}:\n  " + "\n  ".join(problems))
    return Settings(**values)


def read_config_file(path: Path) -> dict[str, Any]:
    """Read a TOML (or v3-style KEY = "value") file into a flat dict."""
    try:
        with path.open("rb") as handle:
            data = tomllib.load(handle)
    except OSError as error:
        raise ConfigError(f"cannot read configuration file {path}: {error.strerror}") from error
    except tomllib.TOMLDecodeError as error:
        raise ConfigError(f"configuration file {path} is not valid TOML: {error}") from error
    nested = [key for key, value in data.items() if isinstance(value, dict)]
    if nested:
        raise ConfigError(f"configuration file {path}: sections are not used, found {nested}")
    return data


def load_settings(environ: Mapping[str, str] | None = None) -> Settings:
    """Load settings from `$CIGRI_CONF` (or /etc/cigri/cigri.conf if present) and the environment.

    `CIGRI_<KEY>` environment variables override the file. A missing default file is fine (user-level
    mode); a missing file named by CIGRI_CONF is an error.
    """
    env = os.environ if environ is None else environ
    raw: dict[str, Any] = {}
    sources = []
    conf = env.get("CIGRI_CONF")
    if conf:
        raw.update(read_config_file(Path(conf)))
        sources.append(conf)
    elif DEFAULT_CONF_PATH.exists():
        raw.update(read_config_file(DEFAULT_CONF_PATH))
        sources.append(str(DEFAULT_CONF_PATH))
    for name, value in env.items():
        if name.startswith(ENV_PREFIX) and name != "CIGRI_CONF" and name[len(ENV_PREFIX):].isupper():
            key = name[len(ENV_PREFIX):]
            if key in SETTING_TYPES:
                raw[key] = value
                sources.append(name)
    return build_settings(raw, source=", ".join(sources) or "defaults")


def describe_settings() -> list[tuple[str, str, Any, str]]:
    """(key, type, default, help) for every setting, for docs and `cigri config`."""
    rows = []
    for item in dataclasses.fields(Settings):
        kind = SETTING_TYPES[item.name]
        if issubclass(kind, Enum):
            described, default = f"one of {_choices(kind)}", item.default.value
        else:
            described, default = kind.__name__, item.default
        if item.metadata.get("unit"):
            described += f" ({item.metadata['unit']})"
        rows.append((item.name, described, default, item.metadata.get("help", "")))
    return rows


def duration_keys() -> frozenset[str]:
    """The keys counted in seconds (each has a `timedelta` view on Settings)."""
    return frozenset(item.name for item in dataclasses.fields(Settings)
                     if item.metadata.get("unit") == "seconds")
