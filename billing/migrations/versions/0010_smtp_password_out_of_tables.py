"""No SMTP password in any table: the password of an ``smtp_url`` stored by an earlier release
(in ``catalog_loads.notify`` and in the e-mail rows of ``notices``) is removed from the URL,
and the channel reads it from the environment variable ``BILLING_SMTP_PASSWORD`` instead
(``password_env``), so that e-mails already queued still go out once it is set.

Revision ID: 0010
Revises: 0009
Create Date: 2026-12-03
"""

from __future__ import annotations

from typing import Any
from urllib.parse import urlsplit, urlunsplit

import sqlalchemy as sa
from alembic import op

revision = "0010"
down_revision = "0009"
branch_labels = None
depends_on = None

VARIABLE = "BILLING_SMTP_PASSWORD"  # where the password is read from now
BATCH = 1000


def without_password(channel: dict[str, Any]) -> dict[str, Any] | None:
    """The channel with the password taken out of its smtp_url, or None when it has none."""
    url = channel.get("smtp_url")
    if not isinstance(url, str):
        return None
    try:
        parts = urlsplit(url)
        if parts.password is None:
            return None
    except ValueError:
        return None
    host = parts.netloc.rpartition("@")[2]
    user = parts.netloc.rpartition("@")[0].partition(":")[0]
    cleaned = urlunsplit(parts._replace(netloc=f"{user}@{host}" if user else host))
    return {
        **channel,
        "smtp_url": cleaned,
        "password_env": channel.get("password_env") or VARIABLE,
    }


def upgrade() -> None:
    connection = op.get_bind()
    loads = sa.table("catalog_loads", sa.column("id", sa.Integer), sa.column("notify", sa.JSON))
    for row in connection.execute(sa.select(loads.c.id, loads.c.notify)).all():
        notify = dict(row.notify or {})
        channels = [without_password(c) or c for c in notify.get("channels", [])]
        if channels != notify.get("channels", []):
            notify["channels"] = channels
            connection.execute(loads.update().where(loads.c.id == row.id).values(notify=notify))
    _scrub_notices(connection)


def _scrub_notices(connection: sa.Connection) -> None:
    notices = sa.table(
        "notices",
        sa.column("id", sa.Integer),
        sa.column("channel", sa.String),
        sa.column("channel_config", sa.JSON),
    )
    after = 0
    while True:
        query = (
            sa.select(notices.c.id, notices.c.channel_config)
            .where(notices.c.channel == "email", notices.c.id > after)
            .where(sa.cast(notices.c.channel_config, sa.Text).like("%:%@%"))
            .order_by(notices.c.id)
            .limit(BATCH)
        )
        rows = connection.execute(query).all()
        if not rows:
            return
        for row in rows:
            cleaned = without_password(dict(row.channel_config or {}))
            if cleaned is not None:
                update = notices.update().where(notices.c.id == row.id)
                connection.execute(update.values(channel_config=cleaned))
        after = rows[-1].id


def downgrade() -> None:
    """Nothing to undo: the passwords are gone (the variable names stay, harmless)."""
