"""The plans in the database: storing a catalog read by ``billing.catalog_file`` as plan
versions, and reading plans back."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from importlib import resources
from pathlib import Path

from sqlalchemy import func, or_, select, update
from sqlalchemy.orm import Session

from billing.catalog_file import load_catalog_file, load_zone
from billing.config import DEFAULT_PLANS, Settings
from billing.db.tables import CatalogLoad, PlanRow, PlanVersion, Subscription
from billing.domain.dunning import DunningPolicy, FinalAction
from billing.domain.durations import parse_interval
from billing.domain.plans import Catalog, Plan
from billing.domain.statuses import LIVE_STATUSES
from billing.errors import CatalogError, NotFound

# pg_advisory_xact_lock key: one catalog load at a time (two first loads of an empty
# database would both insert the same plan rows; there is no row yet to lock)
CATALOG_LOCK = 0x62696C6C_63617431  # "billcat1"


@dataclass
class LoadReport:
    created: list[str] = field(default_factory=list)
    changed: list[str] = field(default_factory=list)
    unchanged: list[str] = field(default_factory=list)
    archived: list[str] = field(default_factory=list)
    released: int = 0  # rows set aside by the scheduler, given another try with these plans

    def summary(self) -> str:
        parts = [
            f"{len(names)} {label}" + (f" ({', '.join(names)})" if names else "")
            for label, names in (
                ("new", self.created),
                ("changed", self.changed),
                ("unchanged", self.unchanged),
                ("archived", self.archived),
            )
        ]
        if self.released:
            parts.append(f"{self.released} set-aside subscriptions given another try")
        return "; ".join(parts)


def _lock_catalog(session: Session) -> None:
    """One catalog load at a time. SQLite (the embedded default) has no advisory locks and
    needs none: its transactions begin IMMEDIATE, one writer at a time."""
    if session.get_bind().dialect.name == "postgresql":
        session.execute(select(func.pg_advisory_xact_lock(CATALOG_LOCK)))


def catalog_path(settings: Settings) -> Path:
    """BILLING_PLANS; the default falls back to the catalog shipped in the package."""
    path = settings.plans_path
    if settings.plans == DEFAULT_PLANS and not path.exists():
        return Path(str(resources.files("schedules").joinpath("plans.yaml")))
    return path


def read_catalog(path: Path, settings: Settings) -> tuple[Catalog, str]:
    """Validate a catalog file; returns it with the sha256 of its bytes."""
    catalog = load_catalog_file(path, settings.timezone)
    digest = hashlib.sha256(path.read_bytes()).hexdigest()
    return catalog, digest


def load_catalog(
    session: Session, catalog: Catalog, source: str, digest: str, now: datetime
) -> LoadReport:
    """Upsert every plan of ``catalog`` (all or nothing: the caller's transaction)."""
    report = LoadReport()
    _lock_catalog(session)
    rows = {row.id: row for row in session.scalars(select(PlanRow).with_for_update())}
    versions: dict[str, int] = {}
    for plan in catalog.plans:
        versions[plan.id] = _upsert_plan(session, rows.get(plan.id), plan, now, report)
    wanted = {plan.id for plan in catalog.plans}
    for row in rows.values():
        if row.id not in wanted and row.archived_at is None:
            _archive(session, row, source, now)
            report.archived.append(row.id)
    report.released = release_set_aside(session)
    session.add(
        CatalogLoad(
            source=source,
            sha256=digest,
            timezone=catalog.zone.key,
            notify={
                "channels": [{"type": c.type, **dict(c.settings)} for c in catalog.notify],
                "reminders": {
                    "upcoming_renewal": int(catalog.reminders.upcoming_renewal.total_seconds()),
                    "trial_will_end": int(catalog.reminders.trial_will_end.total_seconds()),
                },
            },
            plan_versions=versions,
            loaded_at=now,
        )
    )
    return report


def _upsert_plan(
    session: Session, row: PlanRow | None, plan: Plan, now: datetime, report: LoadReport
) -> int:
    if row is None:
        session.add(PlanRow(id=plan.id, current_version=1, created_at=now, updated_at=now))
        session.flush()
        session.add(_version_row(plan, 1, now))
        report.created.append(plan.id)
        return 1
    current = plan_from_row(_version(session, row.id, row.current_version))
    row.archived_at = None
    if current.same_terms(plan):
        report.unchanged.append(plan.id)
        return row.current_version
    row.current_version += 1
    row.updated_at = now
    session.add(_version_row(plan, row.current_version, now))
    report.changed.append(plan.id)
    return row.current_version


def _archive(session: Session, row: PlanRow, source: str, now: datetime) -> None:
    live = session.scalar(
        select(func.count())
        .select_from(Subscription)
        .where(
            or_(Subscription.plan_id == row.id, Subscription.next_plan_id == row.id),
            Subscription.status.in_([str(s) for s in LIVE_STATUSES]),
        )
    )
    if live:
        raise CatalogError(
            f"{source}: plan {row.id!r}: removing a plan with {live} live subscription"
            f"{'s' if live > 1 else ''} is refused (move them with `subscriptions change-plan`)"
        )
    row.archived_at = now
    row.updated_at = now


def release_set_aside(session: Session, subscription_id: int | None = None) -> int:
    """Give rows the scheduler set aside another try (after a catalog load, or an operator
    action on one subscription); returns how many."""
    query = update(Subscription).where(Subscription.set_aside_at.is_not(None))
    if subscription_id is not None:
        query = query.where(Subscription.id == subscription_id)
    result = session.execute(query.values(set_aside_at=None, set_aside_reason=None))
    return int(result.rowcount or 0)  # type: ignore[attr-defined]


def _version_row(plan: Plan, version: int, now: datetime) -> PlanVersion:
    return PlanVersion(
        plan_id=plan.id,
        version=version,
        name=plan.name,
        amount=plan.amount,
        timezone=plan.zone.key,
        interval=str(plan.interval) if plan.interval else None,
        cron=plan.cron,
        trial_days=plan.trial_days,
        prorate_first=plan.prorate_first,
        card_quota=plan.card_quota,
        retry_after=[int(offset.total_seconds()) for offset in plan.dunning.retry_after],
        final_action=str(plan.dunning.final_action),
        created_at=now,
    )


def plan_from_row(row: PlanVersion) -> Plan:
    return Plan(
        id=row.plan_id,
        name=row.name,
        amount=row.amount,
        zone=load_zone(row.timezone),
        interval=parse_interval(row.interval) if row.interval else None,
        cron=row.cron,
        trial_days=row.trial_days,
        prorate_first=row.prorate_first,
        card_quota=row.card_quota,
        dunning=DunningPolicy(
            tuple(timedelta(seconds=s) for s in row.retry_after), FinalAction(row.final_action)
        ),
        version=row.version,
    )


def _version(session: Session, plan_id: str, version: int) -> PlanVersion:
    row = session.get(PlanVersion, (plan_id, version))
    if row is None:
        raise NotFound(f"plan {plan_id!r} has no version {version}")
    return row


def ensure_catalog(session: Session, settings: Settings, now: datetime) -> None:
    """Load BILLING_PLANS the first time a database is used; later loads are explicit.

    Uses that race on a new database wait for the first load and then find it done.
    """
    if _catalog_loaded(session):
        return
    _lock_catalog(session)
    if _catalog_loaded(session):
        return
    path = catalog_path(settings)
    catalog, digest = read_catalog(path, settings)
    load_catalog(session, catalog, str(path), digest, now)


def _catalog_loaded(session: Session) -> bool:
    return session.scalar(select(CatalogLoad.id).limit(1)) is not None


def current_plan(session: Session, plan_id: str, *, lock: bool = False) -> Plan:
    """The current terms of a plan that is in the catalog (not archived).

    ``lock``: hold a share lock on the plan row until the transaction ends, for a caller
    that puts a live subscription on the plan. A catalog load locks every plan row for
    update before it counts the live subscriptions of a plan it would archive, so the two
    cannot interleave: the load either sees the new subscription or archives first (and
    the caller then finds the plan unknown)."""
    row = session.get(PlanRow, plan_id, with_for_update={"read": True} if lock else None)
    if row is None or row.archived_at is not None:
        known = ", ".join(plan.id for plan in current_plans(session)) or "none loaded"
        raise NotFound(f"unknown plan {plan_id!r} (plans: {known})")
    return plan_from_row(_version(session, plan_id, row.current_version))


def latest_plan(session: Session, plan_id: str) -> Plan:
    """The newest terms of a plan, archived or not: for recording what already happened
    (a payment for a subscription whose pending plan was removed meanwhile)."""
    row = session.get(PlanRow, plan_id)
    if row is None:
        raise NotFound(f"unknown plan {plan_id!r}")
    return plan_from_row(_version(session, plan_id, row.current_version))


def plan_version(session: Session, plan_id: str, version: int) -> Plan:
    return plan_from_row(_version(session, plan_id, version))


def share_lock_plans(session: Session) -> None:
    """Share-lock every plan row until the transaction ends (see ``current_plan``'s lock)."""
    session.execute(select(PlanRow.id).with_for_update(read=True)).all()


def current_plans(session: Session) -> list[Plan]:
    is_current = (PlanRow.id == PlanVersion.plan_id) & (
        PlanRow.current_version == PlanVersion.version
    )
    query = (
        select(PlanVersion).join(PlanRow, is_current).where(PlanRow.archived_at.is_(None))
    ).order_by(PlanRow.id)
    return [plan_from_row(row) for row in session.scalars(query)]
