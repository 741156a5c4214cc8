"""The bundled PortOne V1 sandbox: an HTTP server that speaks the V1 REST protocol for billing
keys (getToken, subscribe/payments/again, lookups, billing keys, cancels, hosted schedules),
keeps its own ledger, and can be scripted to decline, refuse, fail or drop connections.

Modules: ``config`` (settings), ``behaviors`` (script and fault model), ``ledger`` (payments),
``customers`` (billing keys), ``schedules`` (hosted schedules), ``cards`` (card checks and
masking), ``tokens``, ``fields`` (request validation), ``protocol`` (wire shapes),
``charging``, ``endpoints``, ``lookups`` and ``scheduler`` (PortOne endpoints; ``scheduler``
also fires due schedules), ``admin`` (control endpoints), ``routes`` (dispatch),
``transport`` (HTTP and socket faults), ``server`` (the ``SandboxServer`` facade),
``webhooks``, ``stats``.
"""

from billing.sandbox.config import SandboxConfig
from billing.sandbox.server import SandboxError, SandboxServer

__all__ = ["SandboxConfig", "SandboxError", "SandboxServer"]
