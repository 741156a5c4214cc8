"""The bounds on unauthenticated webhooks, on a pinned clock."""

from __future__ import annotations

from billing.services.webhook_guard import RateLimit, RecentlyUnknown


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def test_a_bucket_allows_its_burst_then_its_rate() -> None:
    clock = Clock()
    limit = RateLimit(per_second=2, burst=4, clock=clock)
    assert [limit.take() for _ in range(6)] == [True] * 4 + [False] * 2
    clock.now += 1.0
    assert [limit.take() for _ in range(3)] == [True, True, False]
    clock.now += 60.0  # refills up to the burst, no more
    assert sum(limit.take() for _ in range(10)) == 4


def test_each_source_has_its_own_bucket() -> None:
    limit = RateLimit(per_second=1, burst=1, clock=Clock())
    assert (limit.take("198.51.100.1"), limit.take("198.51.100.1")) == (True, False)
    assert limit.take("198.51.100.2")


def test_an_unknown_imp_uid_is_remembered_for_a_while() -> None:
    clock = Clock()
    unknown = RecentlyUnknown(seconds=30, clock=clock)
    unknown.add("imps_1")
    assert "imps_1" in unknown and "imps_2" not in unknown
    clock.now += 31
    assert "imps_1" not in unknown
