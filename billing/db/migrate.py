"""Applying and checking Alembic migrations from inside the package.

Alembic itself is imported only to migrate: every other command compares the database's
revision with ``SCHEMA_REVISION`` (a test keeps it equal to the newest migration).
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

from sqlalchemy import Engine, inspect, text

from billing.errors import SchemaOutOfDate

if TYPE_CHECKING:
    from alembic.config import Config

MIGRATIONS = Path(__file__).resolve().parent.parent / "migrations"
SCHEMA_REVISION = "0012"  # the newest migration of this release


def alembic_config(engine: Engine) -> Config:
    from alembic.config import Config

    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS))
    config.set_main_option("sqlalchemy.url", engine.url.render_as_string(hide_password=False))
    return config


def head_revision() -> str:
    """The newest migration on disk, read by Alembic (tests compare it with SCHEMA_REVISION)."""
    from alembic.config import Config
    from alembic.script import ScriptDirectory

    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS))
    head = ScriptDirectory.from_config(config).get_current_head()
    assert head is not None
    return head


def current_revision(engine: Engine) -> str | None:
    with engine.connect() as connection:
        if not inspect(connection).has_table("alembic_version"):
            return None
        return connection.execute(text("SELECT version_num FROM alembic_version")).scalar()


def upgrade(engine: Engine) -> tuple[str | None, str]:
    """Apply every migration up to head; returns (revision before, revision after)."""
    before = current_revision(engine)
    if before == SCHEMA_REVISION:
        return before, SCHEMA_REVISION
    from alembic import command

    config = alembic_config(engine)
    with engine.begin() as connection:
        config.attributes["connection"] = connection
        command.upgrade(config, "head")
    return before, SCHEMA_REVISION


def require_head(engine: Engine) -> None:
    """Refuse to work on a schema that this release does not know."""
    current = current_revision(engine)
    if current != SCHEMA_REVISION:
        raise SchemaOutOfDate(
            f"the database schema is at {current or 'empty'}, this release needs "
            f"{SCHEMA_REVISION}: run `billing db upgrade`"
        )
