"""`gridclusters`: the grid's clusters, their status and usage (v3 options and layouts,
`cigri-v3-user.md` §2.6). An empty usage table prints "Data temporarily unavailable" (v3 crashed)."""

from __future__ import annotations

from typing import Any, Final

import click

from cigri import __version__
from cigri.cli.client import client_from_environment, dump_json, run_tool
from cigri.domain.event_codes import EventCode

TOOL = "gridclusters"
BAR: Final = 80
COLOURS: Final = (("unavailable_resources", "red"), ("used_others", "yellow"),
                  ("used_by_cigri", "white"), ("free", "green"))
USAGE_KEYS: Final = ("max_resources", "used_resources", "used_by_cigri", "unavailable_resources")


def _status_line(cluster: dict[str, Any]) -> str:
    flags = "".join([", BLACKLISTED" if cluster.get("blacklisted") else "",
                     ", UNDER_STRESS" if cluster.get("under_stress") else "",
                     *(f", {code}" for code in cluster.get("events") or ()
                       if code != EventCode.UNDER_STRESS)])
    return (f"{cluster['id']}: {cluster['name']} , {cluster.get('ssh_host') or ''} "
            f"(stress:{cluster.get('stress_factor')}{flags}){_night(cluster)}")


def _night(cluster: dict[str, Any]) -> str:
    """` night 20:00-07:00 weekends UTC (day now)`: the window nightly and semi-best-effort
    campaigns follow there (nothing when the server does not say)."""
    if not cluster.get("night_window"):
        return ""
    now = "night" if cluster.get("is_night") else "day"
    return f" night {cluster['night_window']} {cluster.get('time_zone') or ''} ({now} now)"


def _bar(usage: dict[str, Any]) -> str:
    total = int(usage.get("max_resources") or 0)
    if total <= 0:
        return ""
    used = int(usage.get("used_resources") or 0)
    cigri = int(usage.get("used_by_cigri") or 0)
    unavailable = int(usage.get("unavailable_resources") or 0)
    parts = {"unavailable_resources": unavailable, "used_others": max(used - cigri, 0),
             "used_by_cigri": cigri}
    parts["free"] = max(total - unavailable - used, 0)
    return "".join(click.style(" " * (parts[key] * BAR // total), bg=colour)
                   for key, colour in COLOURS)


@click.command(context_settings={"help_option_names": ["-h", "--help"]})
@click.option("-i", "--infos", is_flag=True, help="One status line per cluster.")
@click.option("-I", "--more_infos", "--more-infos", "more", is_flag=True,
              help="Every field of each cluster.")
@click.option("-u", "--usage", is_flag=True, help="Usage figures (implies -i).")
@click.option("-b", "--bars", is_flag=True, help="Coloured usage bars (implies -i -u).")
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
@click.version_option(__version__, prog_name=TOOL)
def gridclusters(infos: bool, more: bool, usage: bool, bars: bool, as_json: bool) -> None:
    """Shows available clusters."""
    api = client_from_environment()
    listing = api.get("/clusters")["items"]
    usage = usage or bars
    infos = infos or more or usage
    details = [api.get(f"/clusters/{c['id']}") for c in listing] if (infos or as_json) else listing
    grid: dict[int, dict[str, Any]] = {}
    if usage or as_json:
        items = api.get("/gridusage")["items"]
        if items:
            grid = {c["cluster_id"]: c for c in items[-1]["clusters"]}
    if as_json:
        dump_json({"items": [{**d, "usage": grid.get(d["id"])} for d in details]})
        return
    for cluster in sorted(details, key=lambda c: int(c["id"])):
        if more:
            click.echo(f"{cluster['id']}: {cluster['name']}")
            for key, value in cluster.items():
                if value is not None and key != "links":
                    click.echo(f"    {key}: {value}")
        elif infos:
            click.echo(_status_line(cluster))
        else:
            click.echo(f"{cluster['id']}: {cluster['name']}")
        if usage:
            figures = grid.get(cluster["id"])
            if figures is None or cluster.get("blacklisted"):
                click.echo("    Data temporarily unavailable")
            elif bars:
                click.echo(f" ({figures['max_resources']} resources)")
                click.echo(_bar(figures))
            else:
                for key in USAGE_KEYS:
                    click.echo(f"    {key}: {figures.get(key)}")
    if bars:
        click.echo(" ".join(click.style("  ", bg=colour) + f"={label}" for label, colour in
                            (("unavailable", "red"), ("used", "yellow"),
                             ("used_by_cigri", "white"), ("free", "green"))))


def main() -> None:
    run_tool(TOOL, gridclusters)
