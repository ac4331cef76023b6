"""OAR 3 (JWT) cluster tokens as cigri keeps them: what a token may look like, how it is shown
(masked, never in clear), which events say a token is missing or refused, and the hint each
event gives (the command that fixes it).

A cluster's tokens live in `users_mapping` as `Bearer <token>` per grid login; the grid login
`oar` holds the cluster-admin token, used for bulk job polling and grid usage (v3 §4.1). Pure: no
I/O; storage and the daemons apply it.
"""

from __future__ import annotations

import base64
import json
from datetime import UTC, datetime
from typing import Final

from cigri.domain.errors import CigriError
from cigri.domain.event_codes import EventCode

ADMIN_LOGIN: Final = "oar"  # the grid login whose token is the cluster-admin token (v3 §4.1)
BEARER: Final = "Bearer "

# Open class-`cluster` events (each with a whole-cluster BLACKLIST child) while the admin token
# of a jwt cluster is missing or refused by OAR; the updater closes them once it works.
ADMIN_TOKEN_MISSING: Final = EventCode.ADMIN_TOKEN_MISSING
ADMIN_TOKEN_REJECTED: Final = EventCode.ADMIN_TOKEN_REJECTED
ADMIN_TOKEN_CODES: Final = frozenset({ADMIN_TOKEN_MISSING, ADMIN_TOKEN_REJECTED})
# Job event (v3 code) of a submission refused because the campaign owner has no token.
USER_TOKEN_MISSING: Final = EventCode.RUNNER_SUBMIT_TOKEN_NOT_FOUND
# Error codes of the OAR client that mean "this identity is missing or refused".
MISSING_CODES: Final = frozenset({EventCode.JWT_TOKEN_NOT_FOUND})
REFUSED_CODES: Final = frozenset({EventCode.PERMISSION_DENIED, EventCode.FORBIDDEN})


class BadToken(CigriError):
    """A token that cannot be an OAR 3 JWT (empty, spaces, several lines)."""


def normalize_token(raw: str) -> str:
    """The token to store, from what an admin or a user typed or piped: surrounding blanks and a
    leading `Bearer ` are dropped; empty, multi-line or space-holding values are refused."""
    token = raw.strip()
    head, _, rest = token.partition(" ")
    if head.lower() == BEARER.strip().lower():
        token = rest.strip()
    if not token:
        raise BadToken("the token is empty")
    if any(ch.isspace() or ord(ch) < 32 for ch in token):
        raise BadToken("the token holds spaces or several lines: give the token alone")
    return token


def stored_value(token: str) -> str:
    """What `users_mapping.cluster_login` holds for a jwt cluster (v3: the header value)."""
    return BEARER + normalize_token(token)


def mask(value: str | None) -> str:
    """A token shown without its secret: its last 6 characters only."""
    if not value:
        return ""
    token = value[len(BEARER):] if value.lower().startswith(BEARER.lower()) else value
    return "..." + token[-6:]


def claims(value: str | None) -> dict[str, object]:
    """The unverified `user`/`sub` and `exp` claims of a JWT (empty when it is not one); they are
    no secret (no signature) and say whose token it is and until when."""
    if not value:
        return {}
    token = value[len(BEARER):] if value.lower().startswith(BEARER.lower()) else value
    parts = token.split(".")
    if len(parts) != 3:
        return {}
    try:
        payload = json.loads(base64.urlsafe_b64decode(parts[1] + "=" * (-len(parts[1]) % 4)))
    except (ValueError, UnicodeDecodeError):
        return {}
    if not isinstance(payload, dict):
        return {}
    found: dict[str, object] = {}
    user = payload.get("user") or payload.get("sub")
    if isinstance(user, str):
        found["user"] = user
    exp = payload.get("exp")
    if isinstance(exp, int | float) and not isinstance(exp, bool):
        found["expires"] = datetime.fromtimestamp(exp, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
    return found


def describe(value: str | None) -> str:
    """One line for a stored token: masked, with its claims when it is a JWT."""
    if not value:
        return "none"
    found = claims(value)
    extra = ", ".join(f"{key} {found[key]}" for key in ("user", "expires") if key in found)
    return mask(value) + (f" ({extra})" if extra else "")


def admin_fix_hint(cluster_name: str, cluster_id: int) -> str:
    """The commands that set (or replace) a cluster's admin token."""
    return (f"an admin sets it with `cigri cluster token {cluster_name} --set - < TOKEN_FILE` "
            f"on the server, or `gridtoken --admin -i {cluster_id} -t TOKEN`; the cluster is "
            "used again at the next updater pass")


def admin_token_message(code: str, cluster_name: str, cluster_id: int, detail: str = "") -> str:
    """The message of an ADMIN_TOKEN_* event: what is wrong, what it stops, how to fix it."""
    what = ("has no cluster-admin token" if code == ADMIN_TOKEN_MISSING
            else "refuses the cluster-admin token" + (f" ({detail})" if detail else ""))
    return (f"Cluster {cluster_name} (OAR 3, JWT) {what}: cigri cannot follow its jobs, so the "
            f"cluster is blacklisted. Fix: {admin_fix_hint(cluster_name, cluster_id)}.")


def user_token_message(user: str, cluster_name: str, cluster_id: int) -> str:
    """The message of a submission refused because `user` has no token on the cluster."""
    return (f"{user} has no OAR token for cluster {cluster_name} (OAR 3, JWT). Fix: run "
            f"`gridtoken -i {cluster_id} -t TOKEN` with a token from that cluster; the campaign "
            "resumes there at the next updater pass.")


def user_token_refused_message(user: str, cluster_name: str, cluster_id: int,
                               detail: str) -> str:
    """The message of a submission OAR refused (401) on a jwt cluster."""
    return (f"OAR on {cluster_name} refused the token of {user} ({detail}). Fix: register a "
            f"valid token with `gridtoken -i {cluster_id} -t TOKEN`, then resubmit with "
            "`gridevents -c CAMPAIGN_ID -f -r`.")
