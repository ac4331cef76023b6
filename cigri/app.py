"""Composition root: loads settings, sets up logging, builds engines and the OAR-client factory.
The only place that wires concrete objects together; daemons, CLI and API get what they need from
here."""

from __future__ import annotations

import json
import logging
import sys
import threading
import time
from collections.abc import Callable, Iterator, Mapping
from datetime import UTC, datetime

from sqlalchemy import Engine

from cigri.config import Settings, load_settings
from cigri.domain.clusters import Cluster
from cigri.domain.oar import OarApi
from cigri.domain.states import AuthType
from cigri.oar.client import client_for_cluster
from cigri.storage.db import make_engine
from cigri.storage.users import list_user_mappings

log = logging.getLogger(__name__)

OarFactory = Callable[[Cluster], OarApi]
ADMIN_LOGIN = "oar"  # the grid login whose mapping is the cluster-admin identity (v3 §4.1)
TOKEN_REFRESH_SECONDS = 60.0

class JsonFormatter(logging.Formatter):
    """One JSON object per line, with the `extra` identifiers (campaign_id, cluster, action)."""

    _STANDARD = set(logging.makeLogRecord({}).__dict__) | {"message", "asctime"}

    def format(self, record: logging.LogRecord) -> str:
        payload = {
            "time": datetime.fromtimestamp(record.created, UTC).isoformat(),
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
        }
        payload.update({k: v for k, v in record.__dict__.items() if k not in self._STANDARD})
        if record.exc_info:
            payload["exception"] = self.formatException(record.exc_info)
        return json.dumps(payload, default=str)


def setup_logging(settings: Settings, *, name: str = "cigri") -> None:
    """Configure the root logger once, from LOG_FILE, LOG_LEVEL and LOG_FORMAT."""
    target = settings.LOG_FILE
    handler: logging.Handler
    if target.upper() == "STDOUT":
        handler = logging.StreamHandler(sys.stdout)
    elif target.upper() in {"STDERR", ""}:
        handler = logging.StreamHandler(sys.stderr)
    else:
        handler = logging.FileHandler(target)
    if settings.LOG_FORMAT == "json":
        handler.setFormatter(JsonFormatter())
    else:
        handler.setFormatter(logging.Formatter(
            f"%(asctime)s %(levelname)s [{name}] %(name)s: %(message)s"))
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(settings.LOG_LEVEL.value)  # validated at load; v3's WARN/FATAL already mapped
    # APScheduler logs every scheduled run (and each job added) at INFO: noise beside cigri's one
    # INFO line per real action. Its warnings (a missed run) still show; LOG_LEVEL=DEBUG shows all.
    logging.getLogger("apscheduler").setLevel(
        logging.NOTSET if root.level <= logging.DEBUG else max(root.level, logging.WARNING))


def build_engine(settings: Settings) -> Engine:
    return make_engine(settings.database_url)


def load() -> Settings:
    """Load and validate settings (raises ConfigError with every problem listed)."""
    return load_settings()


def _cluster_mappings(engine: Engine, cluster_id: int) -> dict[str, str]:
    """grid login -> `users_mapping.cluster_login` on one cluster (one short transaction)."""
    with engine.begin() as conn:
        return {m.grid_login: m.cluster_login for m in list_user_mappings(conn)
                if m.cluster_id == cluster_id and m.cluster_login}


class ClusterTokens(Mapping[str, str]):
    """The JWTs of one `jwt` cluster, as `users_mapping` holds them (grid login -> `Bearer
    <token>`, the `oar` login's being the cluster-admin token), re-read every `refresh_seconds`
    and, at most once a second, when a login is missing (a token registered since)."""

    def __init__(self, engine: Engine, cluster_id: int, *,
                 refresh_seconds: float = TOKEN_REFRESH_SECONDS,
                 monotonic: Callable[[], float] = time.monotonic) -> None:
        self._engine = engine
        self._cluster_id = cluster_id
        self._refresh_seconds = refresh_seconds
        self._monotonic = monotonic
        self._lock = threading.Lock()
        self._tokens: dict[str, str] = {}
        self._loaded_at: float | None = None

    def _load(self, *, force_after: float) -> dict[str, str]:
        with self._lock:
            now = self._monotonic()
            if self._loaded_at is None or now - self._loaded_at >= force_after:
                self._tokens = {login: value
                                for login, value in _cluster_mappings(self._engine,
                                                                      self._cluster_id).items()
                                if value.lower().startswith("bearer ")}
                self._loaded_at = now
            return self._tokens

    def __getitem__(self, login: str) -> str:
        tokens = self._load(force_after=self._refresh_seconds)
        if login not in tokens:
            tokens = self._load(force_after=1.0)
        return tokens[login]

    def __iter__(self) -> Iterator[str]:
        return iter(self._load(force_after=self._refresh_seconds))

    def __len__(self) -> int:
        return len(self._load(force_after=self._refresh_seconds))


def client_key(cluster: Cluster) -> tuple[object, ...]:
    """The fields a client is built from: a change (an admin edited the cluster) rebuilds it."""
    return (cluster.api_url, cluster.batch, cluster.api_auth_type, cluster.api_auth_header,
            cluster.api_username, cluster.api_password, cluster.api_chunk_size, cluster.api_limit,
            cluster.api_timeout_seconds)


class OarClients:
    """The one cache of OAR clients: `clients(cluster)` is the client `build` made for that
    cluster, kept per cluster id and rebuilt as soon as any field it is built from
    (`client_key`) differs in the row given, e.g. after `cigri cluster set NAME api_url=...`.
    Daemons call it with the cluster row they read in the current pass, so an edit takes effect
    at their next pass, without a restart. Thread-safe (the runner's cluster loops share it)."""

    def __init__(self, build: Callable[[Cluster], OarApi]) -> None:
        self._build = build
        self._cache: dict[int, tuple[tuple[object, ...], OarApi]] = {}
        self._lock = threading.Lock()

    def __call__(self, cluster: Cluster) -> OarApi:
        key = client_key(cluster)
        with self._lock:
            known = self._cache.get(cluster.id)
            if known is not None and known[0] == key:
                return known[1]
            client = self._build(cluster)
            self._cache[cluster.id] = (key, client)
            if known is not None:
                log.info("cluster %s changed: new OAR client for %s", cluster.name,
                         cluster.api_url)
            return client


def build_oar_factory(settings: Settings, engine: Engine | None = None, *,
                      monotonic: Callable[[], float] = time.monotonic) -> OarFactory:
    """The one way daemons get OAR clients: `factory(cluster)` is the cluster's `OarClient`
    (`client_for_cluster` with the REST_* settings), cached per cluster id in one `OarClients`
    (rebuilt when any of the cluster's API fields change).

    With `engine`, `users_mapping` gives the identities: on `jwt` clusters the tokens
    (`ClusterTokens`; the `oar` login's token for bulk status and grid usage), elsewhere the
    mapped login of `oar` as the admin identity (v3 §4.1). Without it, no tokens and `oar` as
    the admin login. `monotonic` times the token refreshes (tests pass a fake one).
    """

    def build(cluster: Cluster) -> OarApi:
        tokens: Mapping[str, str] | None = None
        admin = ADMIN_LOGIN
        if engine is not None and AuthType(cluster.api_auth_type) is AuthType.JWT:
            tokens = ClusterTokens(engine, cluster.id, monotonic=monotonic)
        elif engine is not None:
            admin = _cluster_mappings(engine, cluster.id).get(ADMIN_LOGIN) or ADMIN_LOGIN
        client = client_for_cluster(
            cluster, timeout_seconds=settings.REST_QUERIES_TIMEOUT,
            cert_file=settings.REST_CLIENT_CERTIFICATE_FILE or None,
            key_file=settings.REST_CLIENT_KEY_FILE or None,
            ca_file=settings.REST_CLIENT_CA_FILE or None,
            verify_ssl=settings.REST_CLIENT_VERIFY_SSL, tokens=tokens, admin_user=admin)
        log.debug("OAR client for cluster %s (%s)", cluster.name, cluster.api_url)
        return client

    return OarClients(build)
