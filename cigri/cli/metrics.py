"""`cigri metrics`: the grid's Prometheus metrics (docs/metrics.md) printed once (`show`, what a
scrape returns) or served on a port of their own (`serve`, for sites that keep the API private)."""

from __future__ import annotations

import re

import click
from prometheus_client import generate_latest

from cigri.app import build_engine, load, setup_logging
from cigri.domain.clock import SystemClock
from cigri.domain.errors import ConfigError
from cigri.metrics.collector import grid_registry
from cigri.metrics.server import serve as serve_metrics

_LISTEN = re.compile(r"^[^\s:]*:\d{1,5}$")


@click.group()
def metrics() -> None:
    """Prometheus metrics of the whole grid (also served by cigri-api at /metrics)."""


@metrics.command()
def show() -> None:
    """Print the metrics once, in Prometheus' text format."""
    settings = load()
    engine = build_engine(settings)
    try:
        click.echo(generate_latest(grid_registry(engine, settings, SystemClock())).decode(),
                   nl=False)
    finally:
        engine.dispose()


@metrics.command()
@click.option("--listen", metavar="HOST:PORT",
              help="Where to listen (default: METRICS_LISTEN, 127.0.0.1:9468).")
@click.option("--port", type=click.IntRange(0, 65535),
              help="Port on METRICS_LISTEN's host (shorthand for --listen).")
def serve(listen: str | None, port: int | None) -> None:
    """Serve GET /metrics on a port of its own until SIGTERM."""
    settings = load()
    address = listen or settings.METRICS_LISTEN
    if port is not None:
        address = f"{address.rpartition(':')[0] or '127.0.0.1'}:{port}"
    if not _LISTEN.match(address) or int(address.rpartition(":")[2]) > 65535:
        raise ConfigError(f"--listen {address!r}: expected HOST:PORT, e.g. 127.0.0.1:9468")
    setup_logging(settings, name="cigri-metrics")
    engine = build_engine(settings)
    try:
        serve_metrics(grid_registry(engine, settings, SystemClock()), address)
    except OSError as error:
        raise ConfigError(f"cannot listen on {address}: {error.strerror or error}") from error
    finally:
        engine.dispose()
