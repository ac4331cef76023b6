"""Fixtures shared by the integration tests: emulated grids over the real PostgreSQL.

The helpers that build them (and the assertions' helpers) live in engine_helpers.py; a module that
needs another shape of grid says so with `pytestmark = pytest.mark.grid(**start_grid options)`
(or the mark on one test) instead of copying the fixture.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from sqlalchemy import Engine

from cigri.domain.clock import FakeClock
from tests.integration.engine_helpers import Grid, start_exec_grid, start_grid


@pytest.fixture
def grid(pg_engine: Engine, clock: FakeClock, request: pytest.FixtureRequest) -> Iterator[Grid]:
    """A grid in simulate mode whose emulated time moves with `clock` (`grid.advance`); by default
    one cluster of 4 nodes x 2 cores, or the keyword arguments of the closest `grid` mark."""
    marker = request.node.get_closest_marker("grid")
    with start_grid(pg_engine, clock, **(marker.kwargs if marker else {})) as grid:
        yield grid


@pytest.fixture
def exec_grid(pg_engine: Engine, clock: FakeClock, request: pytest.FixtureRequest) -> Iterator[Grid]:
    """One emulated cluster that really runs its jobs (real time); (nodes, cores) from an indirect
    parametrization, 2 x 2 by default."""
    nodes, cores = getattr(request, "param", (2, 2))
    with start_exec_grid(pg_engine, clock, nodes=nodes, cores=cores) as grid:
        yield grid
