"""A workaround for kombu's Redis transport (5.x): a worker must survive a Redis restart.

When the broker connection drops while late-acked tasks are in flight, kombu closes the
channel and tries to restore the unacknowledged messages through a connection that no longer
exists: ``Channel._connparams`` reads the host from a transport whose ``client`` is already
``None`` and raises
``AttributeError``, which no error handler expects, and the whole worker stops with
"Unrecoverable error" (kombu #970, #582; reproduced by the chaos run). Raised as what it is,
a lost connection, the same code path is handled: the worker reconnects, and the messages stay
in Redis' unacked set to be restored later. Nothing is lost either way: every charge is a
database row that the scheduler's sweep publishes again.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import redis
from kombu.transport import redis as kombu_redis

_PATCHED = "_billing_lost_connection_patch"


def survive_redis_restarts() -> None:
    """Idempotent: patch ``Channel._connparams`` once per process."""
    channel = kombu_redis.Channel
    if getattr(channel, _PATCHED, False):
        return
    original: Callable[..., Any] = channel._connparams

    def connparams(self: Any, *args: Any, **kwargs: Any) -> Any:
        if self.connection is None or getattr(self.connection, "client", None) is None:
            raise redis.exceptions.ConnectionError("the broker connection is closed")
        return original(self, *args, **kwargs)

    channel._connparams = connparams  # type: ignore[method-assign]
    setattr(channel, _PATCHED, True)
