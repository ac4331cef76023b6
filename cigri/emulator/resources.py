"""Parsing of oarsub resource requests (`/nodes=1/core=2,walltime=1:00:00`) into core counts,
with oarsub's error texts, for the emulator."""

from __future__ import annotations

import re
from dataclasses import dataclass

NODE_LEVELS = frozenset({"nodes", "network_address", "host", "cpu"})
CORE_LEVELS = frozenset({"core", "resource_id", "thread"})
DEFAULT_WALLTIME = 7200

_LEVEL = re.compile(r"^([A-Za-z_][A-Za-z0-9_]*)=(\d+|ALL|BEST|BESTHALF)$")
_WALLTIME = re.compile(r"^(\d+)(?::(\d+))?(?::(\d+))?$")


class ResourceSyntaxError(ValueError):
    """oarsub cannot parse the request (`cannot recognize ...`)."""


class UnknownProperty(ValueError):
    """The request names a resource property the cluster does not have."""


@dataclass(frozen=True, kw_only=True)
class Group:
    levels: tuple[tuple[str, int | str], ...]  # (name, count or ALL/BEST/BESTHALF)
    properties: str | None = None


@dataclass(frozen=True, kw_only=True)
class ResourceRequest:
    groups: tuple[Group, ...]
    walltime: int | None  # seconds, None when not written

    def wanted(self) -> str:
        """The `wanted_resources` text OAR shows, e.g. `-l "{type = 'default'}/core=1,walltime=0:2:0" `."""
        parts = []
        for group in self.groups:
            text = "".join(
                f"/{'network_address' if name == 'nodes' else name}={count}" for name, count in group.levels
            )
            parts.append("{type = 'default'}" + text)
        walltime = self.walltime if self.walltime is not None else DEFAULT_WALLTIME
        return f'-l "{"+".join(parts)},walltime={format_walltime(walltime)}" '


def format_walltime(seconds: int) -> str:
    return f"{seconds // 3600}:{seconds % 3600 // 60}:{seconds % 60}"


def parse_walltime(text: str) -> int:
    match = _WALLTIME.match(text.strip())
    if not match:
        raise ResourceSyntaxError(f"/!\\ Cannot recognize -- ,walltime={text} -- resource")
    hours, minutes, seconds = (int(x) if x else 0 for x in match.groups())
    return hours * 3600 + minutes * 60 + seconds


def parse_resource(text: str | None) -> ResourceRequest:
    """Parse one oarsub `-l` value; an empty one means `/resource_id=1`."""
    if text is None or not text.strip():
        return ResourceRequest(groups=(Group(levels=(("resource_id", 1),)),), walltime=None)
    walltime: int | None = None
    groups: list[Group] = []
    for part in text.split(","):
        part = part.strip()
        if part.startswith("walltime="):
            walltime = parse_walltime(part[len("walltime=") :])
            continue
        for chunk in part.split("+"):
            groups.append(_parse_group(chunk.strip(), text))
    if not groups:
        groups.append(Group(levels=(("resource_id", 1),)))
    return ResourceRequest(groups=tuple(groups), walltime=walltime)


def _parse_group(chunk: str, whole: str) -> Group:
    properties = None
    if chunk.startswith("{"):
        end = chunk.find("}")
        if end < 0:
            raise ResourceSyntaxError(f"/!\\ Cannot recognize the resource description : {whole}")
        properties, chunk = chunk[1:end], chunk[end + 1 :]
    if not chunk:
        return Group(levels=(("resource_id", 1),), properties=properties)
    levels: list[tuple[str, int | str]] = []
    for level in chunk.strip("/").split("/"):
        match = _LEVEL.match(level.strip())
        if not match:
            raise ResourceSyntaxError(f"/!\\ Cannot recognize the resource description : {whole}")
        name, count = match.group(1), match.group(2)
        if name not in NODE_LEVELS | CORE_LEVELS:
            raise UnknownProperty(name)
        levels.append((name, int(count) if count.isdigit() else count))
    return Group(levels=tuple(levels), properties=properties)


def group_shape(group: Group, *, nodes: int, cores: int) -> tuple[int | None, int]:
    """How a group maps onto a nodes x cores cluster: (node count or None for any, cores each).

    With a node level, the result is (n nodes, cores per node); without one, (None, total cores).
    """
    node_count: int | None = None
    per: int | None = None
    for name, count in group.levels:
        if name in NODE_LEVELS:
            value = nodes if count == "ALL" else (1 if count in ("BEST", "BESTHALF") else int(count))
            node_count = value if node_count is None else node_count * value
        else:
            limit = cores if node_count is not None else nodes * cores
            value = limit if count == "ALL" else (1 if count in ("BEST", "BESTHALF") else int(count))
            per = value if per is None else per * value
    if node_count is not None:
        return node_count, cores if per is None else per
    return None, 1 if per is None else per
