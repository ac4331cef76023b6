"""What the engine benchmarks set up alike: a fresh, migrated PostgreSQL database that is dropped
afterwards, and an OAR client factory that counts the requests of the clients it builds.

Imported as `_grid` by the scripts of this folder (`python bench/<script>.py` puts the folder on
the path)."""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager

from sqlalchemy import Engine, create_engine, text
from sqlalchemy.engine import make_url

from cigri.domain.clusters import Cluster
from cigri.domain.oar import OarApi
from cigri.oar.client import OarClient, client_for_cluster
from cigri.oar.http import DEFAULT_RETRY, RetryPolicy
from cigri.storage.db import make_engine
from cigri.storage.migrate import upgrade


def server_url() -> str:
    """A PostgreSQL database we may CREATE DATABASE from: `CIGRI_TEST_DATABASE_URL`, else `PG*`."""
    url = os.environ.get("CIGRI_TEST_DATABASE_URL")
    if url:
        return url
    host = os.environ.get("PGHOST", "127.0.0.1")
    user = os.environ.get("PGUSER", "postgres")
    return f"postgresql+psycopg://{user}@{host}:{os.environ.get('PGPORT', '5432')}/postgres"


@contextmanager
def fresh_database(name: str) -> Iterator[Engine]:
    """An engine on a new database `name` upgraded to the head migration; dropped on exit."""
    admin = create_engine(server_url(), isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(text(f'CREATE DATABASE "{name}"'))
    url = make_url(server_url()).set(database=name).render_as_string(hide_password=False)
    try:
        upgrade(url)
        engine = make_engine(url)
        try:
            yield engine
        finally:
            engine.dispose()
    finally:
        with admin.connect() as conn:
            conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        admin.dispose()


class CountingClients:
    """OAR clients for clusters (an `oar_factory`), counting the requests of all it built."""

    def __init__(self, *, timeout_seconds: float, retry: RetryPolicy = DEFAULT_RETRY) -> None:
        self.timeout_seconds = timeout_seconds
        self.retry = retry
        self.made: list[OarClient] = []

    def __call__(self, cluster: Cluster) -> OarApi:
        client = client_for_cluster(cluster, timeout_seconds=self.timeout_seconds,
                                    retry=self.retry)
        self.made.append(client)
        return client

    @property
    def requests(self) -> int:
        return sum(client.request_count for client in self.made)
