"""`cigri-oar-emulator`: serve emulated OAR clusters on consecutive ports, or on one port with a
path prefix each, until SIGTERM."""

from __future__ import annotations

import logging
import signal
import threading

import click
from click.core import ParameterSource

from cigri.emulator.server import Emulator, build
from cigri.emulator.workload import Workload

log = logging.getLogger(__name__)


@click.command(name="cigri-oar-emulator")
@click.option("--clusters", default=1, show_default=True, help="Number of clusters.")
@click.option("--nodes", default=4, show_default=True, help="Nodes per cluster.")
@click.option("--cores", default=2, show_default=True, help="Cores per node.")
@click.option("--mode", type=click.Choice(["execute", "simulate"]), default="execute", show_default=True)
@click.option("--host", default="127.0.0.1", show_default=True)
@click.option(
    "--port",
    default=7000,
    show_default=True,
    help="Port of cluster 1; cluster i uses port+i-1 (0: any free ports).",
)
@click.option(
    "--single-port",
    type=int,
    default=None,
    metavar="PORT",
    help="Serve every cluster on PORT instead, cluster i at /c<i>/oarapi/ (0: any free port).",
)
@click.option("--time-scale", default=1.0, show_default=True, help="Emulated seconds per real second.")
@click.option("--workdir", default=None, help="Where homes and job files live (default: a temp dir).")
@click.option("--state-file", default=None, help="JSON file keeping jobs across restarts.")
@click.option(
    "--duration",
    default="fixed:60",
    show_default=True,
    help="Simulate mode: fixed:S, uniform:A:B or normal:MEAN:SD (emulated seconds).",
)
@click.option("--failure-rate", default=0.0, show_default=True, help="Simulate mode: share of failing jobs.")
@click.option("--error-rate", default=0.0, show_default=True, help="Share of API answers that are a 500.")
@click.option("--latency", default=0.0, show_default=True, help="Seconds added to each answer.")
@click.option("--truncate-rate", default=0.0, show_default=True, help="Share of JSON answers cut short.")
@click.option("--nonjson-rate", default=0.0, show_default=True, help="Share of answers that are HTML.")
@click.option(
    "--normal-user",
    default=None,
    metavar="CORES:DURATION[:PERIOD]",
    help="A normal user taking CORES cores for DURATION s (every PERIOD s) on every cluster.",
)
@click.option(
    "--outages",
    default=None,
    metavar="EVERY:DURATION",
    help="Every EVERY real seconds, refuse connections for DURATION seconds (all clusters).",
)
@click.option("--simulate-outputs", is_flag=True, help="Simulate mode: jobs write small stdout/stderr files.")
@click.option(
    "--launch-delay", default=0.0, show_default=True, help="Emulated seconds a job stays Launching."
)
@click.option(
    "--api",
    type=click.Choice(["oar2.5", "oar3"]),
    default="oar2.5",
    show_default=True,
    help="Answer in OAR 2.5 shapes, or in OAR 3 (FastAPI) shapes.",
)
@click.option(
    "--allow-root-jobs",
    is_flag=True,
    help="Started as root: run every login's jobs and /media requests as root (by default each "
    "runs as the Unix user named by the login, and unknown logins are refused).",
)
@click.option("--users", default=None, help="Comma-separated logins that exist (default: any login).")
@click.option("--oar-version", type=click.Choice(["2.5.9", "2.5.10"]), default="2.5.9", show_default=True)
@click.option("--log-level", default="INFO", show_default=True)
def command(
    clusters: int, nodes: int, cores: int, mode: str, host: str, port: int,
    single_port: int | None, time_scale: float, workdir: str | None, state_file: str | None,
    duration: str, failure_rate: float,
    error_rate: float, latency: float, truncate_rate: float, nonjson_rate: float,
    normal_user: str | None, outages: str | None, simulate_outputs: bool, launch_delay: float,
    api: str, allow_root_jobs: bool, users: str | None, oar_version: str, log_level: str,
) -> None:
    """Serve CLUSTERS emulated OAR 2.5.9 REST APIs at http://HOST:PORT+i-1/oarapi/
    (or http://HOST:SINGLE_PORT/c<i>/oarapi/)."""
    context = click.get_current_context()
    if single_port is not None and context.get_parameter_source("port") is not ParameterSource.DEFAULT:
        raise click.UsageError("--port and --single-port exclude each other")
    logging.basicConfig(level=log_level.upper(), format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    emulator = build(
        clusters=clusters,
        nodes=nodes,
        cores=cores,
        mode="simulate" if mode == "simulate" else "execute",
        time_scale=time_scale,
        workdir=workdir,
        host=host,
        ports=[port + i for i in range(clusters)] if port and single_port is None else None,
        single_port=single_port,
        state_file=state_file,
        workload=Workload(duration=duration, failure_rate=failure_rate),
        error_rate=error_rate,
        latency=latency,
        truncate_rate=truncate_rate,
        nonjson_rate=nonjson_rate,
        oar_version=oar_version,
        simulate_outputs=simulate_outputs,
        launch_delay=launch_delay,
        api=api,
        allow_root_jobs=allow_root_jobs,
        users=[u.strip() for u in users.split(",") if u.strip()] if users else None,
    )
    emulator.start()
    _start_load(emulator, normal_user, outages)
    for control in emulator.controls:
        click.echo(control.url)
    click.echo(f"# workdir: {emulator.controls[0].cluster.config.workdir}", err=True)
    _serve_until_signalled(emulator)


def _start_load(emulator: Emulator, normal_user: str | None, outages: str | None) -> None:
    """--normal-user and --outages, on every cluster."""
    if normal_user:
        parts = [float(x) for x in normal_user.split(":")]
        for control in emulator.controls:
            control.normal_user(int(parts[0]), parts[1], period=parts[2] if len(parts) > 2 else None)
    if outages:
        every, window = (float(x) for x in outages.split(":"))
        for control in emulator.controls:
            control.outage(window, start_in=every, every=every)


def _serve_until_signalled(emulator: Emulator) -> None:
    stop = threading.Event()

    def on_signal(signum: int, frame: object) -> None:
        stop.set()

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    while not stop.wait(0.5):
        pass
    log.info("stopping the emulator")
    emulator.stop()


def main() -> None:
    command()
