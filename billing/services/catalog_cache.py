"""The catalog for the hot path: plan versions (immutable, cached for the life of the
process) and the notice settings of the latest catalog load (re-read every few seconds)."""

from __future__ import annotations

import threading

from sqlalchemy.orm import Session

from billing.domain.plans import Plan
from billing.services import plan_store
from billing.services.notices import NoticeConfig, NoticeSettings


class CatalogCache:
    """Plans by (plan id, version), and the notice settings of the latest catalog load.

    Thread-safe; a plan version never changes once written."""

    def __init__(self) -> None:
        self._plans: dict[tuple[str, int], Plan] = {}
        self._lock = threading.Lock()
        self._notices = NoticeConfig()

    def notice_settings(self, session: Session) -> NoticeSettings:
        return self._notices.get(session)

    def version(self, session: Session, plan_id: str, version: int) -> Plan:
        key = (plan_id, version)
        with self._lock:
            cached = self._plans.get(key)
        if cached is None:
            cached = plan_store.plan_version(session, plan_id, version)
            with self._lock:
                self._plans[key] = cached
        return cached

    def current(self, session: Session) -> dict[str, Plan]:
        """Every current plan, read once (one query) for a scheduler pass."""
        plans = {plan.id: plan for plan in plan_store.current_plans(session)}
        with self._lock:
            self._plans.update({(p.id, p.version): p for p in plans.values()})
        return plans
