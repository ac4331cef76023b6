"""`GET /metrics`: the grid's Prometheus metrics (`cigri.metrics.collector`, docs/metrics.md),
served by `cigri-api` to anyone who can reach it (by default nothing in it names a user or a
campaign; `METRICS_PER_USER` changes that). One registry per application, built on first use."""

from __future__ import annotations

from flask import Blueprint, Response, current_app
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from prometheus_client.registry import CollectorRegistry

from cigri.metrics.collector import grid_registry

metrics = Blueprint("metrics", __name__)


@metrics.get("/metrics")
def scrape() -> Response:
    registry = current_app.extensions.get("cigri_metrics")
    if not isinstance(registry, CollectorRegistry):
        registry = grid_registry(current_app.config["CIGRI_ENGINE"],
                                 current_app.config["CIGRI_SETTINGS"],
                                 current_app.config["CIGRI_CLOCK"])
        current_app.extensions["cigri_metrics"] = registry
    return Response(generate_latest(registry), mimetype=CONTENT_TYPE_LATEST)
