"""`gridsub`: submit campaigns, or add tasks to one (v3 options and output, `cigri-v3-user.md` §2.1).

A JDL's `param_file` is read here, on the client, as the user who runs gridsub (`~` and `$VAR` are
the user's), and streamed to the API after the JDL line: the server never opens a user's path.
Exit status 0 only when everything asked was done.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import click

from cigri import __version__
from cigri.cli.client import ApiCallError, ApiClient, client_from_environment, dump_json, fail, run_tool
from cigri.domain.errors import JDLError
from cigri.domain.jdl import resolve_param_file_path

TOOL = "gridsub"
CHUNK_BYTES = 1 << 16


def _read_jdl(text: str, origin: str) -> dict[str, Any]:
    try:
        document = json.loads(text)
    except json.JSONDecodeError as error:
        fail(TOOL, f"gridsub: {origin}: invalid JSON at line {error.lineno}, column "
                   f"{error.colno}: {error.msg}")
    if not isinstance(document, dict):
        fail(TOOL, f"gridsub: {origin}: a JDL is a JSON object")
    return document


def _param_file(document: dict[str, Any], base: Path) -> Path | None:
    key = next((k for k in document if k.lower() == "param_file"), None)
    if key is None or any(k.lower() in {"params", "nb_jobs"} for k in document):
        return None
    try:
        resolved = resolve_param_file_path(str(document[key]), home=str(Path.home()),
                                           environ=os.environ)
    except JDLError as error:
        fail(TOOL, f"gridsub: {error.message}")
    path = Path(resolved)
    return path if path.is_absolute() else base / path


def _stream(first: bytes, path: Path) -> Iterator[bytes]:
    yield first
    with path.open("rb") as handle:
        while chunk := handle.read(CHUNK_BYTES):
            yield chunk


def _submit(api: ApiClient, document: dict[str, Any], base: Path) -> Any:
    path = _param_file(document, base)
    if path is None:
        return api.request("POST", "/campaigns", json_body=document)
    if not path.is_file():
        fail(TOOL, f"gridsub: param_file {path}: no such file")
    if not os.access(path, os.R_OK):
        fail(TOOL, f"gridsub: param_file {path}: permission denied")
    first = (json.dumps(document, separators=(",", ":")) + "\n").encode()
    return api.request("POST", "/campaigns", body=_stream(first, path), content_type="text/plain")


def _print_error(error: ApiCallError, *, adding: bool) -> None:
    if error.title == "Admission rule error":
        click.echo(f"Admission rule error: \n  {error.message}", err=True)
    else:
        click.echo(f"Error: {error.message}", err=True)


@click.command(context_settings={"help_option_names": ["-h", "--help"]})
@click.option("-f", "--file", "files", multiple=True, type=click.Path(dir_okay=False),
              help="JDL file (repeatable; one campaign per file).")
@click.option("-j", "--jdl", "inline", multiple=True, help="JDL given inline (repeatable).")
@click.option("-c", "--campaign", "campaign_id", type=int,
              help="Add tasks to this campaign (with -F, -J or -p).")
@click.option("-F", "--jobfile", "jobfiles", multiple=True, type=click.Path(dir_okay=False),
              help="File holding a JSON array of parameters (repeatable).")
@click.option("-J", "--jsonjob", "jsonjobs", multiple=True,
              help="JSON array of parameters given inline (repeatable).")
@click.option("-p", "--param-file", "param_files", multiple=True,
              type=click.Path(dir_okay=False), help="Text file of parameters, one per line, "
              "streamed to campaign -c (repeatable).")
@click.option("-d", "--details", is_flag=True, help="Also print the campaign JSON.")
@click.option("--json", "as_json", is_flag=True, help="Print only JSON (one object per action).")
@click.version_option(__version__, prog_name=TOOL)
def gridsub(files: tuple[str, ...], inline: tuple[str, ...], campaign_id: int | None,
            jobfiles: tuple[str, ...], jsonjobs: tuple[str, ...], param_files: tuple[str, ...],
            details: bool, as_json: bool) -> None:
    """Submit campaigns from JDLs, or add tasks to a campaign."""
    adding = bool(jobfiles or jsonjobs or param_files)
    if not files and not inline and not adding:
        fail(TOOL, "Please provide at least one JSON or JDL_FILE, or an array of parameters")
    if adding and campaign_id is None:
        fail(TOOL, "Please provide a campaign ID to add jobs in it (-c)")
    api = client_from_environment()
    failures = 0
    documents = [(_read_jdl(Path(f).read_text(), f), Path(f).resolve().parent) for f in files]
    documents += [(_read_jdl(text, "-j"), Path.cwd()) for text in inline]
    for document, base in documents:
        try:
            campaign = _submit(api, document, base)
        except ApiCallError as error:
            failures += 1
            _print_error(error, adding=False)
            continue
        if as_json:
            dump_json(campaign, pretty=False)
            continue
        click.echo("Campaign successfully submitted")
        if details:
            click.echo(json.dumps(campaign))
        click.echo(f"CAMPAIGN_ID={campaign['id']}")
    if adding and campaign_id is not None:
        failures += _add(api, campaign_id, jobfiles, jsonjobs, param_files, details, as_json)
    if failures:
        raise SystemExit(1)


def _add(api: ApiClient, campaign_id: int, jobfiles: tuple[str, ...], jsonjobs: tuple[str, ...],
         param_files: tuple[str, ...], details: bool, as_json: bool) -> int:
    failures = 0
    arrays = [Path(f).read_text() for f in jobfiles] + list(jsonjobs)
    calls: list[Any] = []
    for text in arrays:
        try:
            params = json.loads(text)
        except json.JSONDecodeError as error:
            fail(TOOL, f"gridsub: parameters are not a JSON array: {error.msg}")
        calls.append(lambda params=params: api.request(
            "POST", f"/campaigns/{campaign_id}/jobs", json_body=params))
    for name in param_files:
        path = Path(name)
        if not path.is_file():
            fail(TOOL, f"gridsub: {name}: no such file")
        calls.append(lambda path=path: api.request(
            "POST", f"/campaigns/{campaign_id}/jobs", body=_stream(b"", path),
            content_type="text/plain"))
    for call in calls:
        try:
            campaign = call()
        except ApiCallError as error:
            failures += 1
            click.echo(f"Error submitting campaign: {error.message}", err=True)
            continue
        if as_json:
            dump_json(campaign, pretty=False)
            continue
        click.echo(f"Jobs successfully added to campaign {campaign_id}")
        if details:
            click.echo(json.dumps(campaign))
    return failures


def main() -> None:
    run_tool(TOOL, gridsub)
