"""``billing db``: the schema."""

from __future__ import annotations

import click

from billing.cli.runtime import Runtime
from billing.db import migrate
from billing.db.engine import make_engine


@click.group()
def db() -> None:
    """Database schema (Alembic migrations, same on PostgreSQL and SQLite)."""


@db.command()
@click.pass_obj
def upgrade(runtime: Runtime) -> None:
    """Apply every migration up to this release's schema."""
    settings = runtime.settings
    engine = make_engine(settings.database_url, pool_size=1, pgbouncer=settings.database_pgbouncer)
    try:
        before, after = migrate.upgrade(engine)
    finally:
        engine.dispose()
    if before == after:
        click.echo(f"schema already at {after}")
    else:
        click.echo(f"schema upgraded from {before or 'empty'} to {after}")
