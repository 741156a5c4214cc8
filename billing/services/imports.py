"""Bulk import of subscriptions (``billing subscriptions import FILE``): all or nothing.

Two passes over the file, streamed, in the caller's transaction: the first validates every row
(shape, plan, start) and writes nothing; the second reads it again and inserts chunk by chunk:
the chunk's missing customers (the first row of a customer_uid gives its details), the
subscriptions and their ``subscription_created`` events, in bulk (``billing.db.bulk``). Memory
holds one chunk, whatever the size of the file; a pipe is spooled to a temporary file so that
it can be read twice. A file that changes between the passes is refused (nothing is kept).
The first period of each row comes from the same pure calendar code as
``subscriptions create``, memoised per (plan, start).
"""

from __future__ import annotations

import csv
import io
import json
import re
import reprlib
import tempfile
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime
from functools import lru_cache
from itertools import chain, islice
from pathlib import Path
from typing import Any, BinaryIO, TextIO, cast
from zoneinfo import ZoneInfo

from sqlalchemy import Table, select, text
from sqlalchemy.orm import Session

from billing.clock import system_now
from billing.db.bulk import insert_returning_ids
from billing.db.tables import Customer, Event, Subscription
from billing.domain import lifecycle
from billing.domain.events import SubscriptionCreated
from billing.domain.plans import Plan
from billing.domain.state import BillingState
from billing.domain.times import parse_time
from billing.errors import InvalidInput
from billing.services.customers import CUSTOMER_UID, EMAIL, PHONE
from billing.services.history import event_row
from billing.services.plan_store import current_plans, share_lock_plans
from billing.services.subscriptions import new_key

SUBSCRIPTIONS = cast(Table, Subscription.__table__)
EVENTS = cast(Table, Event.__table__)
CUSTOMERS = cast(Table, Customer.__table__)
COLUMNS = ("customer_uid", "plan_id", "start", "name", "email", "phone")
REQUIRED = ("customer_uid", "plan_id")
CHUNK = 5000
SHARED_VALUES = 10_000  # distinct start times kept parsed, at most
MAX_BYTES = 1 << 30  # a file (or what a pipe sends) larger than this is refused: split it
MAX_LINE = 1 << 20  # characters of one line (a CSV field or JSON line is bounded by it)
MAX_LENGTHS = {
    "customer_uid": 80,
    "plan_id": 64,
    "start": 64,
    "name": 200,
    "email": 254,
    "phone": 32,
}  # the columns' sizes
CONTROL = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f]")  # NUL, ESC...; not tab, CR, LF
SPOOL_BLOCK = 1 << 16


@dataclass(frozen=True, slots=True)
class Row:
    line: int
    customer_uid: str
    plan_id: str
    start: str | None
    name: str | None
    email: str | None
    phone: str | None


@dataclass
class ImportReport:
    subscriptions: int = 0
    new_customers: int = 0
    first_id: int | None = None
    last_id: int | None = None


def import_file(session: Session, path: Path, now: datetime) -> ImportReport:
    """Validate every row of ``path``, then insert them all; raise and insert nothing."""
    share_lock_plans(session)  # no catalog load archives a plan these rows are put on
    plans = {plan.id: plan for plan in current_plans(session)}
    with _readable_twice(path) as source:
        before = _identity(source, path)
        _check_size(source, path)
        if sum(1 for _ in _valid_rows(source, path, plans, now)) == 0:  # every row, no write
            raise InvalidInput(f"{path}: no rows to import")
        report = _insert(session, _valid_rows(source, path, plans, now), now)
        if _identity(source, path) != before:
            raise InvalidInput(f"{path}: changed while it was being imported; nothing imported")
    _refresh_statistics(session)
    return report


@contextmanager
def _readable_twice(path: Path) -> Iterator[Path]:
    """``path`` itself when it is a regular file; otherwise (a pipe) a temporary copy."""
    if path.is_file():
        yield path
        return
    with tempfile.TemporaryDirectory(prefix="billing-import-") as directory:
        spool = Path(directory) / "rows"
        try:
            with path.open("rb") as incoming, spool.open("wb") as outgoing:
                _spool(incoming, outgoing, path)
        except OSError as exc:
            raise _unreadable(path, exc) from None
        yield spool


def _spool(incoming: BinaryIO, outgoing: BinaryIO, path: Path) -> None:
    """Copies at most MAX_BYTES; a NUL byte stops it at once (``import /dev/zero``)."""
    size = lines = 0
    while block := incoming.read(SPOOL_BLOCK):
        if b"\0" in block:
            line = lines + block[: block.index(b"\0")].count(b"\n") + 1
            raise InvalidInput(f"{path}: line {line}: a NUL byte: not a text file")
        size += len(block)
        if size > MAX_BYTES:
            raise InvalidInput(f"{path}: larger than {MAX_BYTES} bytes, the import limit: split it")
        lines += block.count(b"\n")
        outgoing.write(block)


def _check_size(source: Path, path: Path) -> None:
    if source.stat().st_size > MAX_BYTES:
        raise InvalidInput(f"{path}: larger than {MAX_BYTES} bytes, the import limit: split it")


def _identity(source: Path, path: Path) -> tuple[int, int]:
    try:
        found = source.stat()
    except OSError as exc:
        raise _unreadable(path, exc) from None
    return found.st_size, found.st_mtime_ns


def _valid_rows(
    source: Path, path: Path, plans: dict[str, Plan], now: datetime
) -> Iterator[tuple[Row, Plan, datetime]]:
    """Each row of the file (read from ``source``, named ``path`` in errors) with its plan and
    start, or InvalidInput naming the first bad line."""
    parsed: dict[tuple[str, ZoneInfo], datetime] = {}  # a start many rows share: parsed once
    try:
        with source.open(encoding="utf-8-sig", newline="") as handle:
            is_json, lines = _lines(handle, path)
            records = _json_lines(lines, path) if is_json else _csv(lines, path)
            for line, record in records:
                row = _row(path, line, record)
                plan = _plan(row, plans, path)
                yield row, plan, _start(row, plan, now, parsed, path)
    except UnicodeDecodeError:
        raise InvalidInput(f"{path}: cannot read: not UTF-8 text") from None
    except OSError as exc:
        raise _unreadable(path, exc) from None


def _unreadable(path: Path, exc: OSError) -> InvalidInput:
    return InvalidInput(f"{path}: cannot read: {exc.strerror or exc}")


def _lines(handle: TextIO, path: Path) -> tuple[bool, Iterator[str]]:
    """Whether the first character that is not white space opens a JSON object, and every line
    of the file (read ahead only as far as that character's line, never rewound), each at
    most MAX_LINE characters."""
    head = ""
    while not head.strip() and len(head) <= MAX_LINE:
        chunk = handle.read(4096)
        if not chunk:
            break
        head += chunk
    head += handle.readline(MAX_LINE + 2)
    rest = iter(lambda: handle.readline(MAX_LINE + 2), "")
    return head.lstrip().startswith("{"), _bounded(chain(io.StringIO(head, newline=""), rest), path)


def _bounded(lines: Iterator[str], path: Path) -> Iterator[str]:
    for number, line in enumerate(lines, start=1):
        if len(line.rstrip("\r\n")) > MAX_LINE:
            raise InvalidInput(f"{path}: line {number}: longer than {MAX_LINE} characters")
        yield line


def _csv(lines: Iterator[str], path: Path) -> Iterator[tuple[int, dict[str, Any]]]:
    return csv_records(lines, path, _check_header)


def csv_records(
    lines: Iterator[str], path: Path, check_header: Callable[[list[str], Path], None]
) -> Iterator[tuple[int, dict[str, Any]]]:
    """(line number, record) of each row of a CSV with a header that ``check_header``
    accepts; InvalidInput names the first bad line."""
    if csv.field_size_limit() < MAX_LINE:
        csv.field_size_limit(MAX_LINE)  # a field is bounded by its line; _row names the column
    reader = csv.DictReader(lines)
    try:
        header = [name.strip() for name in reader.fieldnames or []]
        check_header(header, path)
        reader.fieldnames = header
        for record in reader:
            if None in record:
                raise InvalidInput(f"{path}: line {reader.line_num}: more fields than the header")
            yield reader.line_num, record
    except csv.Error as exc:
        raise InvalidInput(f"{path}: line {reader.line_num}: not valid CSV: {exc}") from None


def _check_header(header: list[str], path: Path) -> None:
    unknown = [_shown(name) for name in header if name not in COLUMNS]
    if unknown or any(name not in header for name in REQUIRED):
        raise InvalidInput(
            f"{path}: line 1: the header needs {', '.join(REQUIRED)} and may have "
            f"{', '.join(COLUMNS[2:])}" + (f" (unknown: {', '.join(unknown)})" if unknown else "")
        )
    twice = next((name for name in header if header.count(name) > 1), None)
    if twice is not None:
        raise InvalidInput(f"{path}: line 1: column {twice} appears more than once")


def _json_lines(lines: Iterator[str], path: Path) -> Iterator[tuple[int, dict[str, Any]]]:
    for number, line in enumerate(lines, start=1):
        if not line.strip():
            continue
        try:
            record = json.loads(line)
        except (ValueError, RecursionError):
            raise InvalidInput(f"{path}: line {number}: not a JSON object") from None
        if not isinstance(record, dict):
            raise InvalidInput(f"{path}: line {number}: not a JSON object")
        unknown = sorted(set(record) - set(COLUMNS))
        if unknown:
            raise InvalidInput(f"{path}: line {number}: unknown field {_shown(unknown[0])}")
        yield number, record


def _row(path: Path, line: int, record: dict[str, Any]) -> Row:
    def field(name: str) -> str | None:
        value = record.get(name)
        if value is None or value == "":
            return None
        if not isinstance(value, str):
            raise InvalidInput(f"{path}: line {line}: {name} must be text")
        return _checked(value.strip(), name, f"{path}: line {line}: {name}")

    uid, plan_id = field("customer_uid"), field("plan_id")
    if uid is None or not CUSTOMER_UID.match(uid):
        raise InvalidInput(
            f"{path}: line {line}: customer_uid {_shown(uid)} must be 1-80 "
            "characters of letters, digits and _ . : @ + = -"
        )
    if plan_id is None:
        raise InvalidInput(f"{path}: line {line}: plan_id is required")
    email, phone = field("email"), field("phone")
    if email is not None and not EMAIL.match(email):
        raise InvalidInput(f"{path}: line {line}: email {_shown(email)} is not an e-mail address")
    if phone is not None and not PHONE.match(phone):
        raise InvalidInput(f"{path}: line {line}: phone {_shown(phone)} is not a phone number")
    return Row(line, uid, plan_id, field("start"), field("name"), email, phone)


def _checked(value: str, name: str, where: str) -> str:
    """A field fit for the database and a terminal: no NUL or other control character (tab
    and line breaks, inside a quoted CSV field, are fine), not longer than its column."""
    control = CONTROL.search(value)
    if control is not None:
        what = "a NUL byte" if control.group() == "\0" else "a control character"
        raise InvalidInput(f"{where}: {what} ({control.group()!r}) is not allowed")
    limit = MAX_LENGTHS.get(name, 200)
    if len(value) > limit:
        raise InvalidInput(f"{where}: longer than {limit} characters ({len(value)})")
    return value


def _shown(value: object) -> str:
    """A value quoted for an error line, shortened."""
    short = reprlib.Repr()
    short.maxstring = short.maxother = 60
    return short.repr(value)


@lru_cache(maxsize=4096)
def _first_state(plan: Plan, start: datetime) -> BillingState:
    return lifecycle.start(plan, start)


def _insert(
    session: Session, rows: Iterator[tuple[Row, Plan, datetime]], now: datetime
) -> ImportReport:
    report = ImportReport()
    wall = system_now()
    while chunk := list(islice(rows, CHUNK)):
        customer_ids, created = _customers(session, [row for row, _, _ in chunk], now)
        values = [_subscription(row, plan, start, customer_ids, now) for row, plan, start in chunk]
        ids = insert_returning_ids(session, SUBSCRIPTIONS, values, SUBSCRIPTIONS.c.key)
        events = [_created_event(sid, v, now, wall) for sid, v in zip(ids, values, strict=True)]
        session.execute(EVENTS.insert(), events)
        report.new_customers += created
        report.first_id = report.first_id or ids[0]
        report.last_id = ids[-1]
        report.subscriptions += len(ids)
    return report


def _refresh_statistics(session: Session) -> None:
    """A bulk load changes the tables' shape: let PostgreSQL's planner see it at once, so
    that "what is due" stays an index range scan."""
    if session.get_bind().dialect.name == "postgresql":
        for table in ("customers", "subscriptions"):
            session.execute(text(f"ANALYZE {table}"))


def _plan(row: Row, plans: dict[str, Plan], path: Path) -> Plan:
    plan = plans.get(row.plan_id)
    if plan is None:
        known = ", ".join(sorted(plans)) or "none loaded"
        raise InvalidInput(
            f"{path}: line {row.line}: unknown plan {row.plan_id!r} (plans: {known})"
        )
    return plan


def _start(
    row: Row, plan: Plan, now: datetime, parsed: dict[tuple[str, ZoneInfo], datetime], path: Path
) -> datetime:
    """The row's start (now when it has none); a start many rows share is parsed once."""
    if row.start is None:
        return now
    key = (row.start, plan.zone)
    if key in parsed:
        return parsed[key]
    try:
        moment = parse_time(row.start, plan.zone)
    except ValueError as exc:
        raise InvalidInput(f"{path}: line {row.line}: start: {exc}") from None
    if len(parsed) < SHARED_VALUES:
        parsed[key] = moment
    return moment


def _customers(session: Session, rows: list[Row], now: datetime) -> tuple[dict[str, int], int]:
    """customer_uid -> id for one chunk, inserting the customers that do not exist yet (a
    customer_uid an earlier chunk created is found here, so its first row's details stay)."""
    wanted = {row.customer_uid: row for row in reversed(rows)}  # the first row's details win
    found = session.execute(
        select(Customer.customer_uid, Customer.id).where(Customer.customer_uid.in_(wanted))
    )
    ids = {uid: cid for uid, cid in found}
    missing = [row for uid, row in wanted.items() if uid not in ids]
    values = [
        {
            "customer_uid": r.customer_uid,
            "name": r.name,
            "email": r.email,
            "phone": r.phone,
            "created_at": now,
        }
        for r in missing
    ]
    created = insert_returning_ids(session, CUSTOMERS, values, CUSTOMERS.c.customer_uid)
    ids.update(zip([r.customer_uid for r in missing], created, strict=True))
    return ids, len(missing)


def _subscription(
    row: Row, plan: Plan, start: datetime, customer_ids: dict[str, int], now: datetime
) -> dict[str, Any]:
    state = _first_state(plan, start)
    current, due = state.current, state.due
    return {
        "key": new_key(),
        "customer_id": customer_ids[row.customer_uid],
        "plan_id": plan.id,
        "plan_version": plan.version,
        "next_plan_id": None,
        "status": str(state.status),
        "started_at": start,
        "trial_end": current.end if current else None,
        "anchor_at": state.anchor,
        "current_period_start": current.start if current else None,
        "current_period_end": current.end if current else None,
        "current_cycle": current.cycle if current else None,
        "period_no": 1,
        "due_period_start": due.start,
        "due_period_end": due.end,
        "due_cycle": due.cycle,
        "attempt": 1,
        "next_charge_at": state.next_charge_at,
        "first_failed_at": None,
        "cancel_at_period_end": False,
        "awaiting_new_card": False,
        "reminded_period_no": 0,
        "canceled_at": None,
        "paused_at": None,
        "created_at": now,
        "updated_at": now,
    }


def _created_event(
    sid: int, values: dict[str, Any], now: datetime, wall: datetime
) -> dict[str, Any]:
    due = values["next_charge_at"]
    created = SubscriptionCreated(
        plan_id=values["plan_id"],
        plan_version=values["plan_version"],
        status=values["status"],
        imported=True,
        next_charge_at=due.isoformat() if due else None,
    )
    return event_row(created, now, wall, subscription_id=sid)
