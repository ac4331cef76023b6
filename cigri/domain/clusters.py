"""A cluster of the grid, as the daemons see it (v3's `clusters` row)."""

from __future__ import annotations

from dataclasses import dataclass

from cigri.domain.states import AuthType, ClusterAPI


@dataclass(frozen=True, kw_only=True)
class Cluster:
    id: int
    name: str
    api_url: str  # base URL of the OAR REST API, e.g. http://host/oarapi/
    api_auth_type: AuthType = AuthType.HEADER
    api_username: str | None = None
    api_password: str | None = None
    api_auth_header: str | None = None  # identity header; None = X-Remote-Ident
    api_chunk_size: int = 100  # job ids per bulk status request
    api_limit: int = 100  # page size of collection requests
    api_timeout_seconds: float | None = None  # None = REST_QUERIES_TIMEOUT
    ssh_host: str | None = None
    batch: ClusterAPI = ClusterAPI.OAR2_5
    resource_unit: str | None = "resource_id"
    power: int | None = None
    properties: str | None = None
    stress_factor: float = 0.0
    enabled: bool = True
    night_window: str | None = None  # e.g. "20:00-07:00 weekends"; None: NIGHT_WINDOW
    time_zone: str | None = None  # IANA name; None: NIGHT_TIME_ZONE
    injection_policy: str | None = None  # capacity, pi or tap; None = RUNNER_INJECTION_POLICY

    def is_stressed(self, threshold: float) -> bool:
        """v3: a cluster at or above STRESS_FACTOR gets no new work queued (0 disables)."""
        return threshold > 0 and self.stress_factor >= threshold
