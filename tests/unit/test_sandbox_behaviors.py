"""The sandbox's script and fault model: precedence, latency, seeded dice."""

from __future__ import annotations

import pytest

from billing.sandbox.behaviors import (
    Behavior,
    BehaviorError,
    BehaviorKind,
    FaultPlan,
    Script,
    parse_behavior,
    parse_behaviors,
)


def kinds(script: Script, customer_uid: str, n: int) -> list[str]:
    return [str(script.next_for(customer_uid).behavior) for _ in range(n)]


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("approve", Behavior(BehaviorKind.APPROVE)),
        ("decline", Behavior(BehaviorKind.DECLINE)),
        ("decline:분실신고 카드", Behavior(BehaviorKind.DECLINE, "분실신고 카드")),
        ("refuse:한도초과", Behavior(BehaviorKind.REFUSE, "한도초과")),
        ("latency:250", Behavior(BehaviorKind.LATENCY, "250")),
        ("unknown_customer", Behavior(BehaviorKind.UNKNOWN_CUSTOMER)),
        ("error_500", Behavior(BehaviorKind.ERROR_500)),
        ("commit_then_timeout", Behavior(BehaviorKind.COMMIT_THEN_TIMEOUT)),
        ("commit_then_reset", Behavior(BehaviorKind.COMMIT_THEN_RESET)),
        ("token_expired", Behavior(BehaviorKind.TOKEN_EXPIRED)),
    ],
)
def test_parse_behavior(text: str, expected: Behavior) -> None:
    assert parse_behavior(text) == expected
    assert str(parse_behavior(text)) == text


@pytest.mark.parametrize(
    "text", ["", "approved", "latency", "latency:abc", "latency:-5", "error_500:x", "approve:1"]
)
def test_parse_behavior_refuses(text: str) -> None:
    with pytest.raises(BehaviorError):
        parse_behavior(text)


def test_parse_behaviors_is_all_or_nothing() -> None:
    script = Script()
    with pytest.raises(BehaviorError):
        script.queue("c1", parse_behaviors(["decline", "nonsense"]))
    assert kinds(script, "c1", 1) == ["approve"]
    with pytest.raises(BehaviorError):
        parse_behaviors("approve")  # a bare string is not a list


def test_precedence_customer_queue_then_global_queue_then_defaults() -> None:
    script = Script()
    script.queue("c1", parse_behaviors(["decline:A", "refuse:B"]))
    script.queue(None, parse_behaviors(["error_500"]))
    script.set_default("c1", parse_behavior("decline:C"))
    assert kinds(script, "c1", 5) == [
        "decline:A",
        "refuse:B",
        "error_500",
        "decline:C",
        "decline:C",
    ]
    assert kinds(script, "c2", 1) == ["approve"]  # global default


def test_global_queue_is_shared_by_every_customer() -> None:
    script = Script()
    script.queue(None, parse_behaviors(["decline", "refuse"]))
    assert kinds(script, "a", 1) == ["decline"]
    assert kinds(script, "b", 2) == ["refuse", "approve"]


def test_faults_come_after_queues_and_before_defaults() -> None:
    script = Script()
    script.set_default("c1", parse_behavior("decline:default"))
    script.set_faults(FaultPlan.parse({"error_500": 1.0}), seed=1)
    script.queue("c1", parse_behaviors(["approve"]))
    assert kinds(script, "c1", 3) == ["approve", "error_500", "error_500"]
    script.set_faults(FaultPlan(), seed=None)
    assert kinds(script, "c1", 1) == ["decline:default"]


def test_global_default_applies_when_the_customer_has_none() -> None:
    script = Script()
    script.set_default(None, parse_behavior("decline:잔액부족"))
    script.set_default("vip", parse_behavior("approve"))
    assert kinds(script, "anyone", 1) == ["decline:잔액부족"]
    assert kinds(script, "vip", 1) == ["approve"]


@pytest.mark.parametrize(
    ("customer_default", "global_default", "expected", "delay"),
    [
        (None, None, "approve", 300),
        ("decline:X", None, "decline:X", 300),
        (None, "refuse:Y", "refuse:Y", 300),
        ("latency:100", None, "approve", 400),
        ("latency:100", "latency:50", "approve", 450),
    ],
)
def test_latency_then_the_next_default(
    customer_default: str | None, global_default: str | None, expected: str, delay: int
) -> None:
    script = Script()
    if customer_default:
        script.set_default("c1", parse_behavior(customer_default))
    if global_default:
        script.set_default(None, parse_behavior(global_default))
    script.queue("c1", parse_behaviors(["latency:300"]))
    decision = script.next_for("c1")
    assert (str(decision.behavior), decision.delay_ms) == (expected, delay)


def test_a_latency_default_waits_on_every_call() -> None:
    script = Script()
    script.set_default(None, parse_behavior("latency:20"))
    decisions = [script.next_for("c") for _ in range(3)]
    assert [(str(d.behavior), d.delay_ms) for d in decisions] == [("approve", 20)] * 3


def test_seeded_faults_are_reproducible() -> None:
    odds = {"error_500": 0.2, "commit_then_timeout": 0.1, "decline": 0.3, "token_expired": 0.1}

    def run(seed: int) -> list[str]:
        script = Script()
        script.set_faults(FaultPlan.parse(odds), seed=seed)
        return kinds(script, "c", 200)

    first, again, other = run(7), run(7), run(8)
    assert first == again
    assert first != other
    assert {"approve", "error_500", "commit_then_timeout", "decline", "token_expired"} == set(first)


def test_fault_order_in_the_mapping_does_not_change_the_dice() -> None:
    a, b = Script(), Script()
    a.set_faults(FaultPlan.parse({"decline": 0.5, "error_500": 0.25}), seed=3)
    b.set_faults(FaultPlan.parse({"error_500": 0.25, "decline": 0.5}), seed=3)
    assert kinds(a, "c", 50) == kinds(b, "c", 50)


def test_sandbox_seed_seeds_the_dice_when_set_faults_has_none() -> None:
    a, b = Script(seed=11), Script(seed=11)
    for script in (a, b):
        script.set_faults(FaultPlan.parse({"decline": 0.5}), seed=None)
    assert kinds(a, "c", 50) == kinds(b, "c", 50)


def test_fault_rates_roughly_match_the_odds() -> None:
    script = Script()
    script.set_faults(FaultPlan.parse({"decline": 0.1}), seed=42)
    declines = kinds(script, "c", 5000).count("decline")
    assert 400 < declines < 600


@pytest.mark.parametrize(
    "faults",
    [
        {"nonsense": 0.1},
        {"approve": 0.1},
        {"refuse": 0.1},
        {"decline": 1.5},
        {"decline": -0.1},
        {"decline": "0.1"},
        {"decline": True},
        {"decline": 0.6, "error_500": 0.6},
    ],
)
def test_fault_plan_refuses(faults: dict[str, object]) -> None:
    with pytest.raises(BehaviorError):
        FaultPlan.parse(faults)


def test_clear_forgets_queues_defaults_and_faults() -> None:
    script = Script()
    script.queue("c1", parse_behaviors(["decline"]))
    script.set_default(None, parse_behavior("refuse"))
    script.set_faults(FaultPlan.parse({"error_500": 1.0}), seed=1)
    script.clear()
    assert kinds(script, "c1", 2) == ["approve", "approve"]
