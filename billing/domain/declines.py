"""Decline classes: can retrying the same card succeed?

HARD: the card or the billing key cannot be charged again (lost, stolen, closed, expired,
invalid card; unknown or deleted customer_uid): no automatic retry; the notice asks for a new
card. SOFT: the same card may succeed later (insufficient funds, limit exceeded, temporary
issuer or network trouble): the dunning schedule retries. A reason nobody recognises counts
as soft: retrying costs an attempt, giving up costs a customer.

Matching is on PortOne's ``fail_reason`` / ``message`` text, which carries the PG's (NHN KCP)
wording and often its code in brackets, in Korean or English.
"""

from __future__ import annotations

import re
from enum import StrEnum


class DeclineClass(StrEnum):
    HARD = "hard"
    SOFT = "soft"


# Checked in order; the first match wins. Soft patterns come first where a hard word could
# appear in a soft message ("한도초과" never means the card is dead).
_RULES: tuple[tuple[re.Pattern[str], DeclineClass], ...] = tuple(
    (re.compile(pattern, re.IGNORECASE), decline_class)
    for pattern, decline_class in (
        (r"잔액\s*부족|잔고\s*부족|insufficient|not\s+sufficient|funds", DeclineClass.SOFT),
        (r"한도\s*(초과|부족)|limit\s+exceeded|exceeds?\s+(the\s+)?limit", DeclineClass.SOFT),
        (r"일시적|잠시\s*후|재시도|temporar|timeout|time\s*out|try\s+again", DeclineClass.SOFT),
        (r"시스템\s*(장애|오류|점검)|통신\s*(장애|오류)|카드사\s*(장애|점검)", DeclineClass.SOFT),
        (r"분실|도난|lost|stolen", DeclineClass.HARD),
        (r"해지|폐기|closed|cancell?ed\s+card", DeclineClass.HARD),
        (r"(거래|사용)\s*정지|정지\s*카드|suspended|restricted|blocked", DeclineClass.HARD),
        (r"유효\s*기간|기간\s*(만료|경과)|expired", DeclineClass.HARD),
        (r"유효하지\s*않은\s*카드|카드\s*번호\s*(오류|불일치)|invalid\s+card", DeclineClass.HARD),
        (r"customer_uid|빌링\s*키|billing\s*key|등록되지\s*않은", DeclineClass.HARD),
        (r"존재하지\s*않는\s*(구매자|고객)", DeclineClass.HARD),
        (r"삭제된|deleted", DeclineClass.HARD),
    )
)


def classify_decline(reason: str | None) -> DeclineClass:
    """The class of a decline or refusal from its reason text; unknown reasons are soft."""
    text = reason or ""
    for pattern, decline_class in _RULES:
        if pattern.search(text):
            return decline_class
    return DeclineClass.SOFT
