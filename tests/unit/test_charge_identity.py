from __future__ import annotations

import pytest

from billing.domain.charges import MERCHANT_UID_PATTERN, merchant_uid


def test_merchant_uid_is_deterministic_and_fits_portone() -> None:
    uid = merchant_uid("abcdefgh1234", 999_999_999, 99)
    assert uid == "sub-abcdefgh1234-999999999-99"
    assert uid == merchant_uid("abcdefgh1234", 999_999_999, 99)
    assert MERCHANT_UID_PATTERN.match(uid) and len(uid) <= 40


def test_each_period_and_attempt_has_its_own_merchant_uid() -> None:
    uids = {merchant_uid("abcdefgh1234", p, a) for p in range(1, 40) for a in range(1, 16)}
    assert len(uids) == 39 * 15


@pytest.mark.parametrize(
    ("key", "period", "attempt"),
    [("short", 1, 1), ("ABCDEFGH1234", 1, 1), ("abcdefgh1234", 0, 1), ("abcdefgh1234", 1, 0)],
)
def test_bad_identity_parts_are_refused(key: str, period: int, attempt: int) -> None:
    with pytest.raises(ValueError):
        merchant_uid(key, period, attempt)
