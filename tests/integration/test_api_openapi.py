"""The OpenAPI description and the Flask routes describe the same API."""

from __future__ import annotations

import re

from sqlalchemy import Engine

from cigri.api import create_app
from cigri.config import build_settings
from cigri.domain.clock import FakeClock


def _rules(engine: Engine) -> set[tuple[str, str]]:
    app = create_app(build_settings({}), engine, clock=FakeClock())
    found = set()
    for rule in app.url_map.iter_rules():
        if rule.endpoint == "static" or rule.endpoint.startswith("ui."):
            continue  # the dashboard's HTML pages (docs/ui.md) are not the JSON API
        path = re.sub(r"<(?:[a-z]+:)?([a-z_]+)>", r"{\1}", rule.rule)
        for method in rule.methods or ():
            if method not in {"HEAD", "OPTIONS"}:
                found.add((path, method.lower()))
    return found


def test_every_route_is_described_and_every_description_is_a_route(pg_engine: Engine) -> None:
    app = create_app(build_settings({}), pg_engine, clock=FakeClock())
    document = app.test_client().get("/openapi.json").get_json()
    described = {(path, method) for path, methods in document["paths"].items()
                 for method in methods}
    assert described == _rules(pg_engine)


def test_the_description_is_valid_openapi_3_in_shape(pg_engine: Engine) -> None:
    app = create_app(build_settings({}), pg_engine, clock=FakeClock())
    document = app.test_client().get("/openapi.json").get_json()
    assert document["openapi"].startswith("3.")
    for path, methods in document["paths"].items():
        names = set(re.findall(r"{([a-z_]+)}", path))
        for operation in methods.values():
            assert operation["summary"] and operation["responses"]
            assert {p["name"] for p in operation["parameters"] if p["in"] == "path"} == names
