"""What a request brings: query arguments, a bounded JSON body, and the parameter lines of a
campaign (a JSON list or a streamed `text/plain` body read line by line from `request.stream`: the
WSGI server spools big bodies to disk, so a million-line campaign never sits in the API's memory),
held to the site's task limits. The server never opens a path a user names."""

from __future__ import annotations

import json
from collections.abc import Iterable, Iterator
from typing import Any, Final

from flask import request

from cigri.api.access import settings
from cigri.api.shapes import ApiError
from cigri.domain.errors import JDLError

MAX_LINE_BYTES: Final = 1 << 20
TEXT_TYPES: Final = ("text/plain", "application/x-cigri-campaign")
_DISCONNECT_CHECK_EVERY: Final = 10_000


def int_arg(name: str, default: int, *, minimum: int = 0, maximum: int = 10**15) -> int:
    raw = request.args.get(name)
    if raw is None or raw == "":
        return default
    if not raw.isdigit() or not minimum <= int(raw) <= maximum:
        raise ApiError(400, "Bad request",
                       f"{name} must be an integer between {minimum} and {maximum}")
    return int(raw)


def flag(name: str) -> bool:
    """A boolean query flag: present and not 0/false/no/off (v3 took `all=0` as true)."""
    raw = request.args.get(name)
    return raw is not None and raw.strip().lower() not in {"0", "false", "no", "off"}


def json_bytes() -> bytes:
    """The raw JSON body, at most API_MAX_JSON_BYTES (else 413, before reading more)."""
    limit = settings().API_MAX_JSON_BYTES
    too_large = ApiError(413, "Payload too large",
                         f"a JSON body is at most {limit} bytes (API_MAX_JSON_BYTES); send many "
                         "parameters as a streamed text/plain body")
    if request.content_length is not None and request.content_length > limit:
        raise too_large
    data = request.stream.read(limit + 1)
    if len(data) > limit:
        raise too_large
    return bytes(data)


def json_body() -> Any:
    try:
        return json.loads(json_bytes() or b"null")
    except (json.JSONDecodeError, UnicodeDecodeError) as error:
        raise ApiError(400, "Bad request", f"the body is not valid JSON: {error}") from error
    except RecursionError as error:
        raise ApiError(400, "Bad request", "the body is not valid JSON: nested too deeply") from error


def is_text_body() -> bool:
    return (request.mimetype or "") in TEXT_TYPES


def lines(stream: Any) -> Iterator[str]:
    """Decoded lines of a request body, read incrementally; a line over 1 MiB is refused."""
    while True:
        raw = stream.readline(MAX_LINE_BYTES + 1)
        if not raw:
            return
        if len(raw) > MAX_LINE_BYTES:
            raise JDLError("a parameter line is longer than 1 MiB")
        try:
            yield raw.decode("utf-8")
        except UnicodeDecodeError as error:
            raise JDLError("parameters must be UTF-8 text") from error


def param_list(body: Any) -> list[str]:
    if not isinstance(body, list) or not all(isinstance(item, str) for item in body):
        raise ApiError(400, "Bad request", "expected a JSON array of parameter strings")
    return body


class ClientGone(Exception):
    """The client closed the connection: the request's work is abandoned and rolled back."""


def bounded(found: Iterable[str], *, already: int, in_bag: int) -> Iterator[str]:
    """`found` lines, stopped with a 400 past MAX_TASKS_PER_CAMPAIGN (counting the `already` tasks
    of the campaign), a 403 past the user's MAX_TASKS_PER_USER (counting the `in_bag` tasks
    waiting), and `ClientGone` once the client has disconnected (checked every 10,000 lines): the
    caller's transaction then rolls back and nothing of it remains."""
    site = settings()
    per_campaign = site.MAX_TASKS_PER_CAMPAIGN - already
    per_user = site.MAX_TASKS_PER_USER - in_bag
    gone = request.environ.get("waitress.client_disconnected")
    for count, line in enumerate(found, start=1):
        if count > per_campaign:
            raise _campaign_limit(site.MAX_TASKS_PER_CAMPAIGN)
        if count > per_user:
            raise _user_limit(site.MAX_TASKS_PER_USER, in_bag)
        if gone is not None and count % _DISCONNECT_CHECK_EVERY == 0 and gone():
            raise ClientGone()
        yield line


def check_task_count(count: int, *, already: int, in_bag: int) -> None:
    """Refuse up front a number of tasks known before ingestion (`nb_jobs`, a JSON list)."""
    site = settings()
    if already + count > site.MAX_TASKS_PER_CAMPAIGN:
        raise _campaign_limit(site.MAX_TASKS_PER_CAMPAIGN)
    if in_bag + count > site.MAX_TASKS_PER_USER:
        raise _user_limit(site.MAX_TASKS_PER_USER, in_bag)


def _campaign_limit(limit: int) -> ApiError:
    return ApiError(400, "Error", f"a campaign holds at most {limit} tasks (MAX_TASKS_PER_CAMPAIGN "
                    "of this site)")


def _user_limit(limit: int, in_bag: int) -> ApiError:
    return ApiError(403, "Forbidden", f"you may have at most {limit} tasks waiting "
                    f"(MAX_TASKS_PER_USER of this site); {in_bag} are waiting already")
