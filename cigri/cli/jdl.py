"""`cigri jdl check`: validate a JDL on the client side and print it expanded.

The client reads the `param_file` (the server never opens a path a user names), so this command
is also what a submitting tool does before sending parameters. Cluster names are checked against
`--clusters`, else the configured database's clusters, else not at all (said on stderr). It also
says, per cluster, what the campaign would do now and next (`nightly` and `semi-best-effort`
follow the cluster's night window).
"""

from __future__ import annotations

import json
import os
import sys
from collections.abc import Collection, Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, TextIO

import click
from sqlalchemy.engine import make_url
from sqlalchemy.exc import SQLAlchemyError

from cigri.domain.errors import CigriError, JDLError
from cigri.domain.jdl import (
    CampaignSpec,
    JDLDefaults,
    ParamRecord,
    duplicate_message,
    parse_jdl,
    parse_param_lines,
    resolve_param_file_path,
)
from cigri.domain.night import DEFAULT_TIME_ZONE, DEFAULT_WINDOW, NightWindow, describe_plan

_PARAMETER_KEYS = {"params", "nb_jobs", "param_file"}


@click.group()
def jdl() -> None:
    """Campaign descriptions (JDL)."""


@jdl.command("check")
@click.argument("file", type=click.Path(dir_okay=False, allow_dash=True))
@click.option("--params", "params_path", type=click.Path(dir_okay=False, allow_dash=True),
              help="Parameter file, one task per line; read in place of the JDL's param_file.")
@click.option("--clusters", "cluster_list", metavar="A,B,C",
              help="Known cluster names. Default: the clusters of the configured database.")
def check(file: str, params_path: str | None, cluster_list: str | None) -> None:
    """Validate the JDL in FILE ('-' for stdin); print it expanded, as JSON, with its tasks.

    Exits 0 when valid; otherwise prints every problem on stderr and exits 1.
    """
    try:
        if file == "-" and params_path == "-":
            raise JDLError("only one of FILE and --params can be '-' (stdin)")
        source = _read_text(file)
        defaults, known, windows = _context(cluster_list)
        document = _with_param_file(source, params_path)
        spec = parse_jdl(document, defaults=defaults, known_clusters=known)
        for warning in spec.warnings:
            click.echo(f"warning: {warning}", err=True)
        # A file is streamed twice (check, then print); stdin can be read only once, so it is kept.
        params_source = sys.stdin.readlines() if params_path == "-" else params_path
        base = _param_file_base(file, params_source)
        count = _validate_parameters(spec, params_source, base)
    except JDLError as error:
        for message in error.errors:
            click.echo(f"error: {message}", err=True)
        sys.exit(1)
    _print_expanded(spec, _parameter_records(spec, params_source, base), count)
    now = datetime.now(UTC)
    for cluster in spec.clusters:
        window = windows.get(cluster.name, windows[""])
        plan = describe_plan(cluster.type, is_test=cluster.is_test_mode, window=window, now=now)
        click.echo(f"on {cluster.name} ({cluster.type}): {plan}", err=True)
    click.echo(f"valid JDL: {len(spec.clusters)} cluster(s), {count} task(s)", err=True)


def _param_file_base(file: str, params_source: str | list[str] | None) -> Path | None:
    """Where a relative `param_file` of the JDL is: the JDL file's directory (the current one
    for a JDL on stdin), as for gridsub. A --params path is the user's, relative to here."""
    if params_source is not None:
        return None
    return Path.cwd() if file == "-" else Path(file).resolve().parent


def _parameter_records(spec: CampaignSpec, params_source: str | list[str] | None,
                       base: Path | None = None) -> Iterator[ParamRecord]:
    lines: Iterator[str] | None = None
    if spec.needs_param_file:
        lines = _param_file_lines(
            params_source if params_source is not None else spec.param_file or "", base)
    return parse_param_lines(spec.parameter_lines(lines))


def _validate_parameters(spec: CampaignSpec, params_source: str | list[str] | None,
                         base: Path | None = None) -> int:
    """First pass over the parameters: count them and find duplicate task names. Only the names
    are kept, so a large parameter file is checked without holding its lines."""
    first_line: dict[str, int] = {}
    repeated: dict[str, list[int]] = {}
    count = 0
    for record in _parameter_records(spec, params_source, base):
        count += 1
        first = first_line.setdefault(record.name, record.line_no)
        if first != record.line_no:
            repeated.setdefault(record.name, [first]).append(record.line_no)
    if repeated:
        raise JDLError([duplicate_message(name, numbers) for name, numbers in repeated.items()])
    return count


def _print_expanded(spec: CampaignSpec, records: Iterator[ParamRecord], count: int) -> None:
    """Print the expanded JDL with its parameters, streaming the `params` array."""
    out = click.get_text_stream("stdout")
    head = json.dumps({**spec.jdl, "nb_jobs": count}, indent=2)
    out.write(head[:-2] + ',\n  "params": [')
    for index, record in enumerate(records):
        out.write(("," if index else "") + "\n    " + json.dumps(record.param))
    out.write("\n  ]\n}\n" if count else "]\n}\n")
    out.flush()


def _read_text(path: str) -> str:
    try:
        if path == "-":
            return sys.stdin.read()
        return Path(path).read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as error:
        raise JDLError(f"cannot read the JDL file '{path}': {error}") from error


def _with_param_file(source: str, params_path: str | None) -> str | dict[str, Any]:
    """With --params, a JDL that names no parameter source gets one (the file given)."""
    if params_path is None:
        return source
    try:
        document = json.loads(source)
    except json.JSONDecodeError:
        return source  # parse_jdl reports it with line and column
    if isinstance(document, dict) and not ({k.lower() for k in document} & _PARAMETER_KEYS):
        document["param_file"] = params_path
        return document
    if isinstance(document, dict) and {k.lower() for k in document} & {"params", "nb_jobs"}:
        click.echo("warning: --params is ignored: the JDL's params or nb_jobs take precedence",
                   err=True)
    return source


def _param_file_lines(path: str | list[str], base: Path | None = None) -> Iterator[str]:
    if isinstance(path, list):  # stdin, read once: the lines are read twice (check, then print)
        return iter(path)
    resolved = resolve_param_file_path(path, home=str(Path.home()), environ=os.environ)
    if base is not None and not os.path.isabs(resolved):
        resolved = str(base / resolved)
    try:
        handle: TextIO = open(resolved, encoding="utf-8")  # noqa: SIM115 - closed by the generator
    except OSError as error:
        raise JDLError(f"param_file: parameter file '{os.path.abspath(resolved)}' is not "
                       f"readable: {error.strerror}") from error
    return _lines_then_close(handle)


def _lines_then_close(handle: TextIO) -> Iterator[str]:
    with handle:
        yield from handle


def _context(cluster_list: str | None) -> tuple[JDLDefaults, Collection[str] | None,
                                                dict[str, NightWindow]]:
    """Defaults from the configuration, the known cluster names (None: not checked) and the
    night windows of the clusters, by name (`""`: the grid-wide default)."""
    from cigri.app import build_engine, load
    from cigri.storage.clusters import list_clusters

    try:
        settings = load()
    except CigriError as error:
        click.echo(f"warning: configuration not loaded ({error.message}); using built-in "
                   "defaults", err=True)
        settings = None
    defaults = JDLDefaults() if settings is None else JDLDefaults(
        resources=settings.DEFAULT_JOB_RESOURCES, walltime=settings.DEFAULT_JOB_WALLTIME,
        max_resubmissions=settings.DEFAULT_MAX_RESUBMISSIONS)
    default_window, default_zone = ((DEFAULT_WINDOW, DEFAULT_TIME_ZONE) if settings is None
                                    else (settings.NIGHT_WINDOW, settings.NIGHT_TIME_ZONE))
    windows = {"": NightWindow.parse(default_window, default_zone)}
    if cluster_list is not None:
        return (defaults, {name.strip() for name in cluster_list.split(",") if name.strip()},
                windows)
    if settings is None:
        click.echo("warning: cluster names not checked: no configuration", err=True)
        return defaults, None, windows
    url = make_url(settings.database_url)
    if url.get_backend_name() == "sqlite" and not Path(url.database or "").expanduser().exists():
        # Connecting would create an empty database file as a side effect.
        click.echo(f"warning: cluster names not checked: no database at {url.database}", err=True)
        return defaults, None, windows
    engine = build_engine(settings)
    try:
        with engine.connect() as conn:
            found = list_clusters(conn)
        windows.update({c.name: NightWindow.for_cluster(c, default_window=default_window,
                                                        default_zone=default_zone)
                        for c in found})
        return defaults, {c.name for c in found}, windows
    except SQLAlchemyError as error:
        reason = str(error.orig if hasattr(error, "orig") else error).splitlines()[0]
        click.echo(f"warning: cluster names not checked: database unreachable ({reason})",
                   err=True)
        return defaults, None, windows
    finally:
        engine.dispose()
