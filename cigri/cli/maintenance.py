"""`cigri maintenance`: the periodic housekeeping, for cron or a systemd timer (see
`etc/cron.d/cigri`, `systemd/cigri-maintenance.timer`): purge or archive finished campaigns older
than PURGE_AFTER_DAYS, sample grid usage, drop old outbox messages, fold the per-session event
counts, optionally vacuum."""

from __future__ import annotations

import json
from pathlib import Path

import click

from cigri import app
from cigri.cli.failures import check_database
from cigri.daemons.maintenance import run_maintenance
from cigri.domain.clock import SystemClock


@click.command("maintenance")
@click.option("--purge/--no-purge", default=True, show_default=True,
              help="Purge finished campaigns older than PURGE_AFTER_DAYS (0: never).")
@click.option("--archive", "archive_directory", type=click.Path(file_okay=False, path_type=Path),
              help="Write each purged campaign to DIR/campaign-<id>.json first.")
@click.option("--usage/--no-usage", "sample_usage", default=True, show_default=True,
              help="Sample grid usage (every GRID_USAGE_UPDATE_PERIOD seconds at most).")
@click.option("--vacuum", is_flag=True, help="VACUUM (ANALYZE) the database afterwards.")
@click.option("--dry-run", is_flag=True, help="Only list the campaigns that would be purged.")
@click.option("--json", "as_json", is_flag=True, help="Print the report as JSON.")
def maintenance(purge: bool, archive_directory: Path | None, sample_usage: bool, vacuum: bool,
                dry_run: bool, as_json: bool) -> None:
    """Purge or archive old campaigns, sample grid usage, vacuum (run it from cron)."""
    settings = app.load()
    check_database(settings.database_url)  # else every step fails quietly and reports nothing
    engine = app.build_engine(settings)
    try:
        report = run_maintenance(
            engine, settings, SystemClock(), oar_factory=app.build_oar_factory(settings, engine),
            purge=purge, archive_directory=archive_directory, sample_usage=sample_usage,
            vacuum=vacuum, dry_run=dry_run)
    finally:
        engine.dispose()
    if as_json:
        click.echo(json.dumps(report.as_dict()))
    else:
        verb = "would purge" if dry_run else "purged"
        ids = ", ".join(str(i) for i in report.purged) or "none"
        click.echo(f"{verb} {len(report.purged)} campaigns: {ids}")
        for path in report.archived:
            click.echo(f"archived {path}")
        if report.usage_samples:
            click.echo(f"grid usage: {report.usage_samples} clusters sampled")
        if report.event_counts_folded:
            click.echo(f"statistics: {report.event_counts_folded} event count rows folded")
        if report.bag_counts_folded:
            click.echo(f"statistics: {report.bag_counts_folded} bag count rows folded")
        if report.vacuumed:
            click.echo("database vacuumed")
    for error in report.errors:
        click.echo(f"error: {error}", err=True)
    if report.errors:
        raise SystemExit(1)
