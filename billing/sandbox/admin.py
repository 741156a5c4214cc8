"""The control endpoints under ``/__sandbox__/`` (no token): the same controls as the Python
API, with JSON bodies. A bad control answers 400 ``{"code": -1, "message": ...}``."""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from contextlib import contextmanager

from billing.sandbox import fields, scheduler
from billing.sandbox.protocol import InvalidRequest, Reply, Request
from billing.sandbox.state import SandboxState

PREFIX = "__sandbox__"
DONE = Reply(200, {"ok": True})


def script(state: SandboxState, request: Request) -> Reply:
    behaviors = request.fields.get("behaviors")
    if not isinstance(behaviors, list):
        raise InvalidRequest("behaviors: a list of behavior strings is required")
    with _as_invalid():
        state.script(_owner(request.fields), behaviors)
    return DONE


def default(state: SandboxState, request: Request) -> Reply:
    behavior = request.fields.get("behavior")
    if not isinstance(behavior, str):
        raise InvalidRequest("behavior: a behavior string is required")
    with _as_invalid():
        state.set_default(_owner(request.fields), behavior)
    return DONE


def faults(state: SandboxState, request: Request) -> Reply:
    odds = request.fields.get("faults")
    seed = request.fields.get("seed")
    if not isinstance(odds, Mapping):
        raise InvalidRequest("faults: an object of fault name -> probability is required")
    if seed is not None and (isinstance(seed, bool) or not isinstance(seed, int)):
        raise InvalidRequest("seed: an integer or null")
    with _as_invalid():
        state.set_faults(odds, seed)
    return DONE


def latency(state: SandboxState, request: Request) -> Reply:
    ms = request.fields.get("ms")
    if isinstance(ms, bool) or not isinstance(ms, int) or ms < 0:
        raise InvalidRequest("ms: a whole number of milliseconds, 0 or more")
    state.set_latency(ms)
    return DONE


def expire_tokens(state: SandboxState, request: Request) -> Reply:
    return Reply(200, {"ok": True, "expired": state.expire_tokens()})


def reset(state: SandboxState, request: Request) -> Reply:
    state.reset()
    return DONE


def clock(state: SandboxState, request: Request) -> Reply:
    """``{"now": unix seconds}`` or ``{"advance": seconds}``: move the sandbox clock on, then
    fire what fell due; answers the new now and the schedules fired."""
    now = fields.whole_number(request.fields, "now")
    advance = fields.whole_number(request.fields, "advance")
    with _as_invalid():
        moved = state.move_clock(now, advance)
    fired = scheduler.fire_due(state)
    return Reply(200, {"ok": True, "now": moved, "fired": [s.merchant_uid for s in fired]})


def clock_now(state: SandboxState, request: Request) -> Reply:
    return Reply(200, {"ok": True, "now": state.now(), "frozen": state.frozen is not None})


def ledger(state: SandboxState, request: Request) -> Reply:
    return Reply(200, {"payments": state.ledger_json()})


def stats(state: SandboxState, request: Request) -> Reply:
    return Reply(200, dict(state.stats()))


def _owner(fields: Mapping[str, object]) -> str | None:
    owner = fields.get("customer_uid")
    if owner is not None and not isinstance(owner, str):
        raise InvalidRequest("customer_uid: a string or null")
    return owner


@contextmanager
def _as_invalid() -> Iterator[None]:
    """Turns a control's ValueError (a BehaviorError too) into InvalidRequest."""
    try:
        yield
    except ValueError as exc:
        raise InvalidRequest(str(exc)) from exc
