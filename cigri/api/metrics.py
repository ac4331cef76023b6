"""`GET /metrics`: the grid's Prometheus metrics (`cigri.metrics.collector`, docs/metrics.md),
served by `cigri-api` to any authenticated caller (a Prometheus scrape job sends an API token),
since by default nothing in it names a user or a campaign; once `METRICS_PER_USER` or
`METRICS_PER_CAMPAIGN` is on, to admins only. One registry per application, built on first use."""

from __future__ import annotations

from flask import Blueprint, Response, current_app
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from prometheus_client.registry import CollectorRegistry

from cigri.api.access import release_connection, who
from cigri.api.shapes import ApiError
from cigri.metrics.collector import grid_registry

metrics = Blueprint("metrics", __name__)


@metrics.get("/metrics")
def scrape() -> Response:
    settings = current_app.config["CIGRI_SETTINGS"]
    if (settings.METRICS_PER_USER or settings.METRICS_PER_CAMPAIGN) and not who().is_admin:
        raise ApiError(403, "Forbidden", "metrics with per-user or per-campaign series are for "
                       "admins only (METRICS_PER_USER, METRICS_PER_CAMPAIGN)")
    # the collectors read (and write this process's OAR counts) on connections of their own:
    # end the request's transaction (the token check) first, or SQLite would see it locked
    release_connection(failed=False)
    registry = current_app.extensions.get("cigri_metrics")
    if not isinstance(registry, CollectorRegistry):
        registry = grid_registry(current_app.config["CIGRI_ENGINE"],
                                 current_app.config["CIGRI_SETTINGS"],
                                 current_app.config["CIGRI_CLOCK"])
        current_app.extensions["cigri_metrics"] = registry
    return Response(generate_latest(registry), mimetype=CONTENT_TYPE_LATEST)
