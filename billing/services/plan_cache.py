"""Plans for the hot path: versions are immutable and cached for the life of the process."""

from __future__ import annotations

import threading

from sqlalchemy.orm import Session

from billing.domain.plans import Plan
from billing.services import catalog


class PlanCache:
    """(plan id, version) -> Plan. Thread-safe; a version never changes once written."""

    def __init__(self) -> None:
        self._plans: dict[tuple[str, int], Plan] = {}
        self._lock = threading.Lock()

    def version(self, session: Session, plan_id: str, version: int) -> Plan:
        key = (plan_id, version)
        with self._lock:
            cached = self._plans.get(key)
        if cached is None:
            cached = catalog.plan_version(session, plan_id, version)
            with self._lock:
                self._plans[key] = cached
        return cached

    def current(self, session: Session) -> dict[str, Plan]:
        """Every current plan, read once (one query) for a scheduler pass."""
        plans = {plan.id: plan for plan in catalog.current_plans(session)}
        with self._lock:
            self._plans.update({(p.id, p.version): p for p in plans.values()})
        return plans
