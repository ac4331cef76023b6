"""`cigri token create|list|revoke`: an admin's management of users' API bearer tokens (a user
makes their own with `gridtoken create`)."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta

import click

from cigri.cli.clusters import per_user_listing, transaction
from cigri.storage import tokens as store


@click.group("token")
def token() -> None:
    """Users' API bearer tokens."""


@token.command("create")
@click.option("--user", required=True, help="Grid user the token acts as.")
@click.option("--name", help="A name to recognise it by.")
@click.option("--expires-days", type=click.IntRange(1, 3650))
def create(user: str, name: str | None, expires_days: int | None) -> None:
    """Create a token for USER and print it (once: only its hash is stored)."""
    now = datetime.now(UTC)
    with transaction() as conn:
        created, clear = store.create_token(
            conn, grid_user=user, name=name, now=now,
            expires_at=now + timedelta(days=expires_days) if expires_days else None)
    click.echo(f"token {created.id} for {user}:", err=True)
    click.echo(clear)


@per_user_listing(token)
def list_tokens(user: str | None, as_json: bool) -> None:
    with transaction() as conn:
        found = store.list_tokens(conn, grid_user=user)
    if as_json:
        click.echo(json.dumps([{"id": t.id, "user": t.grid_user, "name": t.name,
                                "created_at": t.created_at.isoformat(),
                                "expires_at": t.expires_at and t.expires_at.isoformat(),
                                "revoked_at": t.revoked_at and t.revoked_at.isoformat()}
                               for t in found], indent=2))
        return
    for t in found:
        state = "revoked" if t.revoked_at else "active"
        click.echo(f"{t.id}: {t.grid_user} {t.name or '-'} {state} "
                   f"expires {t.expires_at.isoformat() if t.expires_at else 'never'}")


@token.command("revoke")
@click.argument("token_id", type=int)
def revoke(token_id: int) -> None:
    with transaction() as conn:
        done = store.revoke_token(conn, token_id, now=datetime.now(UTC))
    if not done:
        raise click.ClickException(f"no live token {token_id}")
    click.echo(f"token {token_id} revoked")
