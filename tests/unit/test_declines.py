"""Decline reasons from PortOne / NHN KCP mapped to hard and soft (a table to review)."""

from __future__ import annotations

import pytest

from billing.domain.dunning import DeclineClass, classify_decline

HARD, SOFT = DeclineClass.HARD, DeclineClass.SOFT

CASES = [
    ("잔액부족", SOFT),
    ("[8326] 잔액이 부족합니다 (잔액 부족)", SOFT),
    ("한도초과", SOFT),
    ("[8374] 월 한도 초과", SOFT),
    ("카드사 일시적 장애입니다. 잠시 후 다시 시도해주세요", SOFT),
    ("카드사 시스템 점검 중", SOFT),
    ("Insufficient funds", SOFT),
    ("Exceeds limit", SOFT),
    ("분실신고 카드", HARD),
    ("도난 카드입니다", HARD),
    ("[8325] 분실/도난 카드", HARD),
    ("해지된 카드", HARD),
    ("거래정지 카드", HARD),
    ("유효기간 만료", HARD),
    ("유효하지 않은 카드번호입니다", HARD),
    ("카드번호 오류", HARD),
    ("Lost card, pick up", HARD),
    ("Stolen card", HARD),
    ("Expired card", HARD),
    ("등록되지 않은 customer_uid 입니다", HARD),
    ("존재하지 않는 구매자입니다", HARD),
    ("삭제된 빌링키입니다", HARD),
    ("Do not honor", SOFT),  # unknown to us: retry
    ("", SOFT),
    (None, SOFT),
    ("[9999] 기타 오류", SOFT),
]


@pytest.mark.parametrize(("reason", "expected"), CASES)
def test_decline_class(reason: str | None, expected: DeclineClass) -> None:
    assert classify_decline(reason) == expected
