"""Turning OAR's JSON into cigri's domain objects (`OarJob`, `OarEvent`, `OarResource`).

Pure functions, no HTTP: they take the decoded JSON of one answer and return domain objects, or
raise `ValueError` when the answer does not have the shape OAR gives (the client turns that into
`OarUnavailable`, because a truncated or garbled answer is a transient failure of the cluster).
Both flavours go through here: OAR 3 names a few fields differently (`user` for `owner`,
`queue_name` for `queue`).
"""

from __future__ import annotations

import logging
import re
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime
from typing import Any

from cigri.domain.oar import OarEvent, OarJob, OarResource, OarState

log = logging.getLogger(__name__)

_STATES: dict[str, OarState] = {state.value.lower(): state for state in OarState}
_JOB_ID_LINE = re.compile(r"^\s*OAR_JOB_ID=(-?\d+)\s*$", re.MULTILINE)
_ARRAY_ID_LINE = re.compile(r"^\s*OAR_ARRAY_ID=(\d+)\s*$", re.MULTILINE)


def parse_state(value: object) -> OarState:
    """An OAR state name (any case) as an `OarState`; unknown names log a warning and map to UNKNOWN."""
    state = _STATES.get(str(value).lower())
    if state is None:
        log.warning("unknown OAR job state %r", value)
        return OarState.UNKNOWN
    return state


def as_int(value: object) -> int | None:
    """OAR integers may come as numbers or numeric strings; null and "" are None."""
    if value is None or value == "":
        return None
    if isinstance(value, bool):
        raise ValueError(f"not an integer: {value!r}")
    if isinstance(value, int):
        return value
    if isinstance(value, float) and value.is_integer():
        return int(value)
    if isinstance(value, str):
        return int(value.strip())
    raise ValueError(f"not an integer: {value!r}")


def epoch_to_datetime(value: object) -> datetime | None:
    """Epoch seconds as an aware UTC datetime; OAR's 0 ("not yet") and null are None."""
    seconds = as_int(value)
    if not seconds:
        return None
    return datetime.fromtimestamp(seconds, tz=UTC)


def parse_event(raw: Mapping[str, Any]) -> OarEvent:
    return OarEvent(type=str(raw["type"]), description=str(raw.get("description") or ""),
                    date=epoch_to_datetime(raw.get("date")))


def _expand_jobid(value: object, job_id: int) -> str | None:
    return None if value is None else str(value).replace("%jobid%", str(job_id))


def _types(value: object) -> tuple[str, ...]:
    if value is None or value == "":
        return ()
    if isinstance(value, str):
        return tuple(part.strip() for part in value.split(",") if part.strip())
    if isinstance(value, Sequence):
        return tuple(str(part) for part in value)
    raise ValueError(f"bad job types: {value!r}")


def _resource_ids(value: object) -> tuple[int, ...]:
    if not isinstance(value, Sequence) or isinstance(value, str):
        return ()
    ids = []
    for item in value:
        if isinstance(item, Mapping) and item.get("id") is not None:
            found = as_int(item["id"])
            if found is not None:
                ids.append(found)
    return tuple(ids)


def parse_job(raw: object) -> OarJob:
    """One job object of `GET jobs/<id>` or of a `jobs/details` collection (either flavour)."""
    if not isinstance(raw, Mapping):
        raise ValueError(f"a job must be a JSON object, got {type(raw).__name__}")
    try:
        job_id = as_int(raw["id"])
    except KeyError as missing:
        raise ValueError("job without an id") from missing
    if job_id is None:
        raise ValueError("job with a null id")
    events_raw = raw.get("events") or ()
    if not isinstance(events_raw, Sequence) or isinstance(events_raw, str):
        raise ValueError(f"job {job_id}: events is not a list")
    owner = raw.get("owner") or raw.get("user")
    return OarJob(
        id=job_id,
        state=parse_state(raw.get("state")),
        name=None if raw.get("name") is None else str(raw["name"]),
        owner=None if owner is None else str(owner),
        array_id=as_int(raw.get("array_id")),
        array_index=as_int(raw.get("array_index")),
        exit_code=as_int(raw.get("exit_code")),
        start_time=epoch_to_datetime(raw.get("start_time")),
        stop_time=epoch_to_datetime(raw.get("stop_time")),
        submission_time=epoch_to_datetime(raw.get("submission_time", raw.get("submission"))),
        events=tuple(parse_event(event) for event in events_raw),
        types=_types(raw.get("types")),
        command=None if raw.get("command") is None else str(raw["command"]),
        launching_directory=(None if raw.get("launching_directory") is None
                             else str(raw["launching_directory"])),
        stdout_file=_expand_jobid(raw.get("stdout_file"), job_id),
        stderr_file=_expand_jobid(raw.get("stderr_file"), job_id),
        walltime_seconds=as_int(raw.get("walltime")),
        resource_ids=_resource_ids(raw.get("resources")),
    )


_RESOURCE_KEYS = frozenset({"id", "resource_id", "state", "network_address", "available_upto",
                            "links", "api_timestamp"})


def parse_resource(raw: object) -> OarResource:
    """One item of `resources/full` (OAR 2.5) or `resources?detailed=true` (OAR 3)."""
    if not isinstance(raw, Mapping):
        raise ValueError(f"a resource must be a JSON object, got {type(raw).__name__}")
    resource_id = as_int(raw.get("id", raw.get("resource_id")))
    if resource_id is None:
        raise ValueError("resource without an id")
    address = raw.get("network_address")
    return OarResource(
        id=resource_id,
        state=str(raw.get("state") or ""),
        network_address=None if address is None else str(address),
        available_upto=as_int(raw.get("available_upto")),
        properties={key: value for key, value in raw.items() if key not in _RESOURCE_KEYS},
    )


def job_ids_from_cmd_output(cmd_output: str) -> list[int]:
    """The `OAR_JOB_ID=<n>` lines of oarsub's output, in printed (= array) order.

    OAR 2.5.9 also prints negative ids (`OAR_JOB_ID=-5`) before failing; those are not jobs.
    """
    return [int(found) for found in _JOB_ID_LINE.findall(cmd_output) if int(found) > 0]


def array_id_from_cmd_output(cmd_output: str) -> int | None:
    found = _ARRAY_ID_LINE.search(cmd_output)
    return int(found.group(1)) if found else None


def parse_stress_factor(raw: object) -> float:
    """`GLOBAL_STRESS` (a decimal string) as a float; a missing value means no stress (0.0)."""
    if not isinstance(raw, Mapping):
        raise ValueError("stress_factor answer is not a JSON object")
    value = raw.get("GLOBAL_STRESS")
    if value is None or value == "":
        return 0.0
    return float(value)


def collection_items(raw: object) -> list[Any]:
    """The `items` of a collection envelope; anything else is a garbled answer."""
    if not isinstance(raw, Mapping) or not isinstance(raw.get("items"), list):
        raise ValueError("collection answer without an items list")
    return list(raw["items"])


def next_link(raw: Mapping[str, Any]) -> str | None:
    """The href of the `rel: next` link of an OAR 2.5 collection, if any."""
    for link in raw.get("links") or ():
        if isinstance(link, Mapping) and link.get("rel") == "next" and link.get("href"):
            return str(link["href"])
    return None


def error_detail(raw: object) -> str | None:
    """The human part of an OAR error body: `message` (OAR 2.5) or `detail` (OAR 3 FastAPI)."""
    if isinstance(raw, Mapping):
        for key in ("message", "detail", "title"):
            if raw.get(key):
                return str(raw[key])
    return None
