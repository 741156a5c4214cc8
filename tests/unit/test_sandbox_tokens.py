"""Access tokens of the sandbox: reuse before expiry, expiry, revocation."""

from __future__ import annotations

from billing.sandbox.tokens import TokenStore


class Clock:
    def __init__(self, now: float = 1_700_000_000.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


def test_asking_again_before_expiry_returns_the_same_token() -> None:
    clock = Clock()
    store = TokenStore(1800, clock)
    first = store.issue()
    clock.now += 1000
    second = store.issue()
    assert second.access_token == first.access_token
    assert second.expired_at == first.expired_at == 1_700_000_000 + 1800
    assert second.now == first.now + 1000


def test_a_token_expires_after_its_ttl_and_a_new_one_is_issued() -> None:
    clock = Clock()
    store = TokenStore(1800, clock)
    first = store.issue()
    clock.now += 1799.5
    assert store.valid(first.access_token)
    clock.now += 0.5
    assert not store.valid(first.access_token)
    second = store.issue()
    assert second.access_token != first.access_token
    assert store.valid(second.access_token)
    assert second.expired_at == int(clock.now) + 1800


def test_revoked_and_unknown_tokens_are_invalid() -> None:
    store = TokenStore(1800, Clock())
    token = store.issue().access_token
    assert not store.valid(None)
    assert not store.valid("")
    assert not store.valid("not-a-token")
    store.revoke(token)
    assert not store.valid(token)
    renewed = store.issue().access_token
    assert renewed != token
    assert store.valid(renewed)


def test_expire_all() -> None:
    store = TokenStore(1800, Clock())
    token = store.issue().access_token
    assert store.expire_all() == 1
    assert not store.valid(token)
    assert store.issue().access_token != token


def test_repr_hides_the_token() -> None:
    issued = TokenStore(1800, Clock()).issue()
    assert issued.access_token not in repr(issued)


def test_a_token_asked_for_in_its_last_minute_is_extended_by_five_minutes() -> None:
    clock = Clock()
    store = TokenStore(1800, clock)
    first = store.issue()
    clock.now += 1800 - 61
    assert store.issue().expired_at == first.expired_at  # not yet its last minute
    clock.now += 2
    later = store.issue()
    assert later.access_token == first.access_token
    assert later.expired_at == first.expired_at + 300
    clock.now += 120  # past the first expiry, within the extension
    assert store.valid(first.access_token)
