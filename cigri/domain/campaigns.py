"""A campaign as the rest of cigri sees it (one `campaigns` row)."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from cigri.domain.states import CampaignState


@dataclass(frozen=True, kw_only=True)
class Campaign:
    id: int
    grid_user: str
    state: CampaignState
    jobs_type: str
    name: str | None
    submission_time: datetime | None
    completion_time: datetime | None
    nb_jobs: int  # number of parameters (tasks) of the campaign
    jdl: str | None  # the expanded JDL as JSON text
