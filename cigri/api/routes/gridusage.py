"""`/gridusage`: the grid's resource usage per cluster, the newest sample of each cluster or the
samples between `from` and `to` (epoch seconds)."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any, Final

from flask import Blueprint, request
from flask.typing import ResponseReturnValue

from cigri.api.access import tx, who
from cigri.api.inputs import int_arg
from cigri.api.shapes import epoch, json_response, link
from cigri.storage.stats import grid_usage_rows

gridusage = Blueprint("gridusage", __name__)

MAX_EPOCH: Final = 253_402_300_799  # 9999-12-31T23:59:59Z, the last second a datetime holds


@gridusage.get("/gridusage")
def usage() -> ResponseReturnValue:
    who()
    start = int_arg("from", -1, maximum=MAX_EPOCH) if request.args.get("from") else None
    end = int_arg("to", -1, maximum=MAX_EPOCH) if request.args.get("to") else None
    with tx() as conn:
        rows = grid_usage_rows(
            conn, after=None if start is None else datetime.fromtimestamp(start, tz=UTC),
            until=None if end is None else datetime.fromtimestamp(end, tz=UTC))
    by_date: dict[datetime, list[dict[str, Any]]] = {}
    for r in rows:
        by_date.setdefault(r.date, []).append({
            "cluster_name": r.cluster_name, "cluster_id": r.cluster_id,
            "max_resources": r.max_resources, "used_resources": r.used_resources,
            "used_by_cigri": r.used_by_cigri, "unavailable_resources": r.unavailable_resources})
    items = [{"date": epoch(date), "clusters": value} for date, value in by_date.items()]
    return json_response({"items": items, "from": start, "to": end, "total": len(items),
                          "links": [link("self", "/gridusage"), link("parent", "/")]})
