"""Role leases: at most one active instance per daemon role (and per cluster for runners).

Owns `daemon_leases`. A lease is a row (role, owner, expires_at); its holder renews it every pass
(and between units of work of a long pass). Anyone may take an expired lease, and a contender that
knows the holder is gone (the caller's `holder_gone`: on the same host, its process is not running)
takes it at once, so a daemon killed with SIGKILL blocks its role only until a new instance's first
pass. `now` is a bind parameter (the injected clock), never SQL `NOW()`.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime, timedelta

from sqlalchemy import Connection, bindparam, delete, or_, select, update
from sqlalchemy.dialects import postgresql, sqlite

from cigri.domain.heartbeats import Lease
from cigri.storage.tables import daemon_leases

# Every daemon runs this at every pass: built once, so a pass does not rebuild and re-key it.
_RENEW = (update(daemon_leases)
          .where(daemon_leases.c.role == bindparam("lease_role"),
                 or_(daemon_leases.c.owner == bindparam("lease_owner"),
                     daemon_leases.c.expires_at <= bindparam("lease_now")))
          .values(owner=bindparam("lease_owner"), expires_at=bindparam("lease_expires")))
_HOLDER = select(daemon_leases.c.owner).where(daemon_leases.c.role == bindparam("lease_role"))
_TAKE_OVER = (update(daemon_leases)
              .where(daemon_leases.c.role == bindparam("lease_role"),
                     daemon_leases.c.owner == bindparam("lease_previous"))
              .values(owner=bindparam("lease_owner"), expires_at=bindparam("lease_expires")))


def acquire_lease(conn: Connection, *, role: str, owner: str, now: datetime,
                  duration: timedelta,
                  holder_gone: Callable[[str], bool] | None = None) -> bool:
    """Take or renew the lease on `role` for `owner`; False while someone else holds it.

    The UPDATE renews our own lease or steals an expired one. On PostgreSQL, two instances racing
    for an expired lease serialise on the row lock and the loser re-checks `expires_at` after the
    winner commits, so it sees a live lease and matches no row.

    `holder_gone(owner)` says whether a live lease's holder is known to be gone (killed): then
    the lease is taken over at once, by an UPDATE guarded by that holder's name, so of two
    contenders only one wins.
    """
    expires_at = now + duration
    renewed = conn.execute(_RENEW, {"lease_role": role, "lease_owner": owner, "lease_now": now,
                                    "lease_expires": expires_at})
    if renewed.rowcount == 1:
        return True
    if holder_gone is not None:
        holder = conn.execute(_HOLDER, {"lease_role": role}).scalar_one_or_none()
        if holder is not None and holder_gone(holder):
            taken = conn.execute(_TAKE_OVER, {"lease_role": role, "lease_previous": holder,
                                              "lease_owner": owner, "lease_expires": expires_at})
            return taken.rowcount == 1
    dialect = postgresql if conn.dialect.name == "postgresql" else sqlite
    inserted = conn.execute(
        dialect.insert(daemon_leases)
        .values(role=role, owner=owner, expires_at=expires_at)
        .on_conflict_do_nothing(index_elements=["role"])
        .returning(daemon_leases.c.role)
    ).first()
    return inserted is not None


def release_lease(conn: Connection, *, role: str, owner: str) -> None:
    """Give the lease up (clean shutdown), so a standby takes over at once."""
    conn.execute(delete(daemon_leases).where(daemon_leases.c.role == role,
                                             daemon_leases.c.owner == owner))


def find_lease(conn: Connection, role: str) -> Lease | None:
    row = conn.execute(select(daemon_leases).where(daemon_leases.c.role == role)).one_or_none()
    if row is None:
        return None
    return Lease(role=row.role, owner=row.owner, expires_at=row.expires_at)
