"""What each process checks before it starts: everything it will need later.

A worker that cannot charge, a scheduler without a broker or any process whose plan catalog
cannot be read must not start and fail hours later (at 00:00 on the 1st): each problem is one
line that names the variable to fix. ``billing status`` and ``/readyz`` show the same lines.
No connection is made here: an unreachable store is an outage to wait out, not a wrong value.
"""

from __future__ import annotations

from collections.abc import Callable
from enum import StrEnum

from billing.config import Settings
from billing.errors import BillingError, ConfigError


class Role(StrEnum):
    WORKER = "worker"
    SCHEDULER = "scheduler"
    WEB = "web"


def charging_problem(settings: Settings, url: str | None = None) -> str | None:
    """Why this process could not charge (or ask PortOne anything), or None.

    Real money needs credentials and no sandbox mode. Sandbox mode never reaches
    api.iamport.kr: it needs BILLING_PORTONE_URL, or ``url`` (a bundled sandbox)."""
    if settings.sandbox_mode:
        if (url or settings.portone_url) is None:
            return (
                "BILLING_PORTONE_URL: sandbox mode needs a sandbox to charge: run `billing "
                "sandbox` and point BILLING_PORTONE_URL at it (or use `billing run`)"
            )
        return None
    if not settings.has_credentials:
        return (
            "BILLING_PORTONE_IMP_KEY: no PortOne credentials, so nothing is charged: set "
            "BILLING_PORTONE_IMP_KEY and BILLING_PORTONE_IMP_SECRET, or BILLING_SANDBOX=1"
        )
    return None


def notices_problem(settings: Settings) -> str | None:
    """The web process asks PortOne about every notice. Embedded (nothing configured), it
    starts without one: its webhook answers 503 and says why."""
    return None if settings.embedded else charging_problem(settings)


def broker_problem(settings: Settings) -> str | None:
    if settings.broker_url is None:
        return (
            "BILLING_BROKER_URL: not set, so the scheduler and the workers cannot reach each "
            "other; set it (redis://...) or use `billing run` for the embedded single process"
        )
    return None


def plans_problem(settings: Settings) -> str | None:
    """The plan catalog must read and validate now, not when the first charge needs it."""
    from billing.services.plan_store import catalog_path, read_catalog

    try:
        read_catalog(catalog_path(settings), settings)
    except BillingError as exc:
        return f"BILLING_PLANS: {exc.message}"
    return None


Check = Callable[[Settings], str | None]
CHECKS: dict[Role, tuple[Check, ...]] = {
    Role.WORKER: (broker_problem, charging_problem, plans_problem),
    Role.SCHEDULER: (broker_problem, plans_problem),
    Role.WEB: (notices_problem, plans_problem),
}


def problems(settings: Settings, role: Role) -> list[str]:
    """Every problem that would stop ``role`` from doing its work, one line each."""
    found = (check(settings) for check in CHECKS[role])
    return [problem for problem in found if problem is not None]


def every_problem(settings: Settings) -> list[str]:
    """The problems of every role, each line once, prefixed with the roles it stops."""
    roles: dict[str, list[str]] = {}
    for role in Role:
        for problem in problems(settings, role):
            roles.setdefault(problem, []).append(role.value)
    return [f"{', '.join(names)}: {problem}" for problem, names in roles.items()]


def require(settings: Settings, role: Role) -> None:
    """Raise ConfigError with the first problem of ``role``."""
    found = problems(settings, role)
    if found:
        raise ConfigError(found[0])
