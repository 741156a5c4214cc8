"""The operator console (SPEC 9): money, not tasks, under ``/ops`` in ``billing serve``.

Server-rendered pages (Jinja2 templates in ``templates/``, one stylesheet in ``static/``, no
JavaScript): the overview (``pages.overview``), the queues that need a person, search, a
subscription's timeline; and the actions (``actions``), each a form with a reason and a
CSRF token (``csrf``), recorded in the event log as ``ops:<user>``. Behind
BILLING_OPS_AUTH (``auth``); off without it.
"""

from billing.web.ops.app import console_routes
from billing.web.ops.auth import OpsAuth, load_ops_auth

__all__ = ["OpsAuth", "console_routes", "load_ops_auth"]
