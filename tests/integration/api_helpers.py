"""Shared set-up of the API tests: an app over a real database, users by trusted-proxy header."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from flask import Flask
from flask.testing import FlaskClient
from sqlalchemy import Engine, insert

from cigri.api import create_app
from cigri.config import build_settings
from cigri.domain.clock import FakeClock
from cigri.storage.clusters import add_cluster
from cigri.storage.tables import jobs

PROXY = "127.0.0.1"


@dataclass
class Api:
    app: Flask
    client: FlaskClient
    engine: Engine
    clock: FakeClock

    def call(self, method: str, path: str, *, user: str | None = "alice", **kwargs: Any) -> Any:
        headers = dict(kwargs.pop("headers", {}))
        if user is not None:
            headers["X-Cigri-User"] = user
        return self.client.open(path, method=method, headers=headers, **kwargs)

    def submit(self, jdl: Mapping[str, Any], *, user: str = "alice") -> int:
        response = self.call("POST", "/campaigns", user=user, json=dict(jdl))
        assert response.status_code == 201, response.get_json()
        return int(response.get_json()["id"])

    def add_job(self, campaign_id: int, *, param_id: int | None, cluster_id: int, state: str,
                remote_id: int | None = None, **values: Any) -> int:
        with self.engine.begin() as conn:
            return int(conn.execute(insert(jobs).values(
                campaign_id=campaign_id, param_id=param_id, cluster_id=cluster_id, state=state,
                remote_id=remote_id, **values).returning(jobs.c.id)).scalar_one())


def make_api(engine: Engine, clock: FakeClock, **settings: Any) -> Api:
    raw = {"API_TRUSTED_PROXIES": PROXY, "ADMINS": "root"}
    raw.update(settings)
    app = create_app(build_settings(raw), engine, clock=clock)
    with engine.begin() as conn:
        add_cluster(conn, name="dahu", api_url="http://127.0.0.1:9/oarapi/", ssh_host="dahu-fe")
        add_cluster(conn, name="luke", api_url="http://127.0.0.1:9/oarapi/")
    return Api(app=app, client=app.test_client(), engine=engine, clock=clock)


def jdl(name: str = "n", **extra: Any) -> dict[str, Any]:
    document: dict[str, Any] = {"name": name, "clusters": {"dahu": {"exec_file": "e"}}}
    if not {"params", "nb_jobs", "param_file"} & set(extra):
        document["nb_jobs"] = 10
    document.update(extra)
    return document
