"""The web process (``billing serve``): PortOne webhooks, health, readiness and metrics.

Modules: ``app`` (the factory), ``context`` (what one process owns), ``config`` (its own
options), ``health``, ``metrics``, ``webhook`` (HTTP only) and ``verifier`` (the deadline).
The logic that is not HTTP lives in ``billing.services.metrics`` and
``billing.services.portone_webhook``.
"""

from billing.web.app import create_app
from billing.web.config import WebConfig

__all__ = ["WebConfig", "create_app"]
