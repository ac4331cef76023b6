"""What differs between the OAR REST flavours cigri speaks (`oar2_5`, `oar3`): routes, query
parameters, the submission payload (server spec §4.4–4.5) and how collections are paged.

Pure data and functions; the client (`client.py`) does the HTTP.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any
from urllib.parse import quote

from cigri.domain.oar import SubmitRequest
from cigri.domain.states import ClusterAPI


@dataclass(frozen=True, kw_only=True)
class Route:
    path: str  # relative to the API base URL
    params: tuple[tuple[str, str], ...] = ()


@dataclass(frozen=True, kw_only=True)
class Flavour:
    """The routes and payload shape of one OAR REST flavour."""

    name: ClusterAPI
    follows_links: bool  # OAR 2.5 pages by `next` links; OAR 3 by total/offset
    submit_status: int  # 201 on OAR 2.5, 200 on OAR 3

    def jobs_by_ids(self, job_ids: Sequence[int]) -> Route:
        if self.name is ClusterAPI.OAR3:
            return Route(path="jobs", params=(("details", "1"),
                                              *(("job_ids", str(job_id)) for job_id in job_ids)))
        return Route(path="jobs/details", params=(("ids", ":".join(str(i) for i in job_ids)),))

    def jobs_of_array(self, array_id: int) -> Route:
        if self.name is ClusterAPI.OAR3:
            return Route(path="jobs", params=(("details", "1"), ("array", str(array_id))))
        return Route(path="jobs/details", params=(("array", str(array_id)),))

    def jobs_of_user(self, user: str, states: Sequence[str], since_epoch: int | None) -> Route:
        """A light listing (id, name, state) of `user`'s jobs in `states`, bounded by `since`."""
        if self.name is ClusterAPI.OAR3:
            params: list[tuple[str, str]] = [("user", user), *(("states", s) for s in states)]
            if since_epoch is not None:
                params.append(("start_time", str(since_epoch)))
            return Route(path="jobs", params=tuple(params))
        params = [("user", user), ("state", ",".join(states))]
        if since_epoch is not None:
            params.append(("from", str(since_epoch)))
        return Route(path="jobs", params=tuple(params))

    def jobs_in_states(self, states: Sequence[str]) -> Route:
        """Every job in `states`, with its resources (grid usage)."""
        if self.name is ClusterAPI.OAR3:
            return Route(path="jobs", params=(("details", "1"), *(("states", s) for s in states)))
        return Route(path="jobs/details", params=(("state", ",".join(states)),))

    def job(self, job_id: int) -> Route:
        return Route(path=f"jobs/{int(job_id)}")

    def submit(self) -> Route:
        return Route(path="jobs")

    def delete_array(self, array_id: int) -> tuple[str, Route]:
        """(HTTP method, route) that deletes every job of an array."""
        if self.name is ClusterAPI.OAR3:
            return "DELETE", Route(path=f"jobs/{int(array_id)}", params=(("array", "true"),))
        return "POST", Route(path=f"jobs/array/{int(array_id)}/deletions/new")

    def media(self, path: str, tail: int | None) -> Route:
        tail_params: tuple[tuple[str, str], ...] = () if tail is None else (("tail", str(tail)),)
        if self.name is ClusterAPI.OAR3:
            return Route(path="media", params=(("path_filename", path), *tail_params))
        if not path.startswith(("/", "~")):
            raise ValueError(f"media paths must be absolute: {path!r}")
        return Route(path="media/" + quote(path.lstrip("/"), safe="/~"), params=tail_params)

    def media_ls(self, directory: str) -> Route:
        """The `ls` of a directory (same route in both flavours; the trailing `/` lets OAR 2.5
        expand `~/`)."""
        if not directory.startswith(("/", "~")):
            raise ValueError(f"media paths must be absolute: {directory!r}")
        path = directory.strip("/")
        return Route(path="media/ls/" + (quote(path, safe="/~") + "/" if path else ""))

    def resources(self) -> Route:
        if self.name is ClusterAPI.OAR3:
            return Route(path="resources", params=(("detailed", "true"),))
        return Route(path="resources/full")

    def stress_factor(self) -> Route:
        return Route(path="stress_factor")

    def payload(self, request: SubmitRequest) -> dict[str, Any]:
        """The JSON body of `POST jobs` for `request` (§4.5)."""
        resource = request.resources
        if request.walltime:
            resource = f"{resource},walltime={request.walltime}"
        command = request.command
        params = [line for line in request.params]
        if len(params) == 1:  # v3: a single parameter is folded into the command
            command = f"{command} {params[0]}"
            params = []
        for line in params:
            if "\n" in line or not line.strip() or line.lstrip().startswith("#"):
                raise ValueError(f"a parameter line OAR would drop or split: {line!r}")
        types = [t for t in request.types if t]
        body: dict[str, Any] = {"command": command}
        if self.name is ClusterAPI.OAR3:
            body["resource"] = [resource]
            body["command"] = command.replace("\\$HOME", "$HOME")
            if types:
                body["type"] = types
        else:
            body["resource"] = resource
            if types:  # one string is one type on OAR 2.5; a list repeats --type
                body["type"] = types[0] if len(types) == 1 else types
        if params:
            body["param_file"] = "\n".join(params) + "\n"
        optional: Mapping[str, str | None] = {
            "name": request.name, "directory": request.directory, "property": request.properties,
            "project": request.project, "queue": request.queue, "stdout": request.stdout,
            "stderr": request.stderr,
        }
        body.update({key: value for key, value in optional.items() if value})
        return body


OAR2_5 = Flavour(name=ClusterAPI.OAR2_5, follows_links=True, submit_status=201)
OAR3 = Flavour(name=ClusterAPI.OAR3, follows_links=False, submit_status=200)

FLAVOURS: Mapping[ClusterAPI, Flavour] = {ClusterAPI.OAR2_5: OAR2_5, ClusterAPI.OAR3: OAR3}


def flavour_for(batch: str | ClusterAPI) -> Flavour:
    """The flavour of a cluster's `batch` column; g5k and unknown values are refused."""
    try:
        return FLAVOURS[ClusterAPI(batch)]
    except (KeyError, ValueError) as exc:
        raise ValueError(f"unsupported OAR flavour {batch!r} (supported: oar2_5, oar3)") from exc
