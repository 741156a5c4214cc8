"""The merchant's HTTP API under ``/v1`` (SPEC section 8), mounted in ``billing serve``.

Modules: ``app`` (the FastAPI factory and its error handlers), ``context`` (what it owns),
``auth`` (Bearer API keys), ``idempotency`` (``Idempotency-Key`` on every POST, who acts),
``errors`` (the error envelope), ``models`` (every request and answer), ``routes/*`` (one
module per resource; each handler calls the services the CLI calls).
"""

from billing.api.app import create_api

__all__ = ["create_api"]
