"""The error boundary of every installed command: any failure becomes ONE readable line on
stderr (what is wrong and what to do) and a non-zero exit status, never a Python traceback.

Owns `guard` (run a command inside the boundary), `describe` (an exception as that line) and
`check_database` (connect and compare the schema with this build's, for daemons at start-up and
`cigri config check`). Usage errors exit 2, everything else 1, Ctrl-C 130. An unexpected error
says so and how to see the traceback (`CIGRI_DEBUG=1`), the only way one is ever printed.
"""

from __future__ import annotations

import os
import re
import sys
from collections.abc import Callable
from typing import Any, NoReturn

import click
from sqlalchemy.engine import make_url
from sqlalchemy.exc import DBAPIError, SQLAlchemyError

from cigri.domain.errors import CigriError

DEBUG_VARIABLE = "CIGRI_DEBUG"

_SERVER = re.compile(r'server (?:at "(?P<host>[^"]+)", port (?P<port>\d+)|on socket "(?P<socket>[^"]+)")')
_NO_DATABASE = re.compile(r'database "(?P<name>[^"]+)" does not exist')
_NO_TABLE = re.compile(r'relation "(?P<name>[^"]+)" does not exist|no such table: (?P<sqlite>\S+)')


class SchemaNotCurrent(CigriError):
    """The database schema is not the one this build of cigri needs."""


def _first_line(text: str) -> str:
    lines = [line.strip() for line in str(text).splitlines() if line.strip()]
    return lines[0] if lines else ""


def _database_problem(error: SQLAlchemyError) -> str:
    """A database failure in the user's words, with the fix when there is an obvious one."""
    original = getattr(error, "orig", None) or error
    text = " ".join(line.strip() for line in str(original).splitlines() if line.strip())
    text = re.sub(r"\s*\[SQL: .*", "", text)  # never the statement nor its parameters (secrets)
    server = _SERVER.search(text)
    where = ""
    if server:
        where = server["socket"] or f"{server['host']}:{server['port']}"
    missing = _NO_DATABASE.search(text)
    if missing:
        host = f" -h {server['host']} -p {server['port']}" if server and server["host"] else ""
        return (f"database {missing['name']} does not exist on {where or 'the server'}; create it "
                f"with `createdb{host} {missing['name']}`, then run `cigri db upgrade`")
    table = _NO_TABLE.search(text)
    if table:
        return (f"the database has no table {table['name'] or table['sqlite']}: its schema is "
                "missing or old; run `cigri db upgrade`")
    if "Connection refused" in text or ("No such file or directory" in text and server):
        return (f"database server not reachable at {where or 'its address'} (connection refused);"
                " is PostgreSQL running there? The address is DATABASE_URL (or DATABASE_HOST/PORT)"
                " in the configuration")
    if "unable to open database file" in text:
        return ("cannot open the SQLite database file (does its directory exist and is it "
                "writable?); check DATABASE_URL")
    reason = re.sub(r"^connection failed: ", "", text)
    reason = re.sub(r'connection to server (?:at "[^"]+", port \d+|on socket "[^"]+") failed: ',
                    "", reason)
    reason = re.sub(r"\s*\(Background on this error at: \S+\)", "", reason)
    if server or (isinstance(error, DBAPIError) and error.connection_invalidated):
        return f"cannot use the database at {where or 'its address'}: {reason}"
    return f"database error: {reason[:300]}"


def describe(error: BaseException) -> str:
    """One line (without the command's name) saying what went wrong."""
    if isinstance(error, CigriError):
        return error.message
    if isinstance(error, SQLAlchemyError):
        return _database_problem(error)
    if isinstance(error, PermissionError):
        return f"permission denied: {error.filename}" if error.filename else str(error)
    if isinstance(error, FileNotFoundError) and error.filename:
        return f"no such file: {error.filename}"
    if isinstance(error, OSError) and error.strerror:
        where = f": {error.filename}" if error.filename else ""
        return f"{error.strerror}{where}"
    detail = _first_line(str(error))
    return (f"unexpected error ({type(error).__name__}{': ' + detail[:200] if detail else ''}); "
            f"run again with {DEBUG_VARIABLE}=1 to see where, and report it")


def _exit_quietly_on_broken_pipe() -> NoReturn:
    # `gridstat | head`: the reader went away; say nothing, as Unix tools do.
    devnull = os.open(os.devnull, os.O_WRONLY)
    os.dup2(devnull, sys.stdout.fileno())
    sys.exit(141)


def guard(tool: str, run: Callable[[], Any]) -> NoReturn:
    """Run `run()` (a click command with `standalone_mode=False`, or any main) and exit with its
    status; every failure is one line on stderr prefixed with `tool`."""
    try:
        result = run()
    except SystemExit:
        raise
    except KeyboardInterrupt:
        click.echo(f"{tool}: interrupted", err=True)
        sys.exit(130)
    except click.exceptions.Exit as done:
        sys.exit(done.exit_code)
    except click.Abort:
        click.echo(f"{tool}: aborted", err=True)
        sys.exit(1)
    except click.UsageError as error:
        path = error.ctx.command_path if error.ctx is not None else tool
        click.echo(f"{path}: {error.format_message().rstrip('.')}; see `{path} --help`",
                   err=True)
        sys.exit(error.exit_code)
    except click.ClickException as error:
        error.show()
        sys.exit(error.exit_code)
    except BrokenPipeError:
        _exit_quietly_on_broken_pipe()
    except Exception as error:
        if os.environ.get(DEBUG_VARIABLE):
            raise
        click.echo(f"{tool}: {describe(error)}", err=True)
        sys.exit(1)
    sys.exit(result if isinstance(result, int) and not isinstance(result, bool) else 0)


def run_click(tool: str, command: click.Command, args: list[str] | None = None) -> NoReturn:
    """Run a click command inside the boundary (usage errors as one line too)."""
    guard(tool, lambda: command.main(args=args, prog_name=tool, standalone_mode=False))


def redacted(url: str) -> str:
    """A database URL fit to print: no password."""
    try:
        return make_url(url).render_as_string(hide_password=True)
    except Exception:
        return "<unparsable DATABASE_URL>"


def check_database(url: str) -> str:
    """Connect to the database at `url` and check that its schema is this build's (the Alembic
    head); returns the revision, raises SchemaNotCurrent (or the connection's error) otherwise."""
    from cigri.storage.db import make_engine
    from cigri.storage.migrate import current_revision, head_revision, is_known_revision

    engine = make_engine(url)
    try:
        current = current_revision(engine)
    finally:
        engine.dispose()
    head = head_revision()
    if current is None:
        raise SchemaNotCurrent(f"the database {redacted(url)} has no cigri schema; "
                               "create it with `cigri db upgrade`")
    if current != head and not is_known_revision(current):
        raise SchemaNotCurrent(f"the database {redacted(url)} is at schema revision {current}, "
                               f"newer than this cigri (which knows up to {head}); upgrade cigri")
    if current != head:
        raise SchemaNotCurrent(f"the database {redacted(url)} is at schema revision {current}, "
                               f"this cigri needs {head}; run `cigri db upgrade`")
    return current
