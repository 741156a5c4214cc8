"""Dunning: what a decline means and what happens next (pure).

One place answers "where does a soft decline schedule its retry": the decline classes, the
retry offsets and final action of a policy, the transitions of a declined period, the
card-network cap on declined attempts, and the notice that tells dunning ended.

Decline classes: can retrying the same card succeed? HARD: the card or the billing key
cannot be charged again (lost, stolen, closed, expired, invalid card; unknown or deleted
customer_uid): no automatic retry; the notice asks for a new card. SOFT: the same card may
succeed later (insufficient funds, limit exceeded, temporary issuer or network trouble): the
dunning schedule retries. A reason nobody recognises counts as soft: retrying costs an
attempt, giving up costs a customer. Matching is on PortOne's ``fail_reason`` / ``message``
text, which carries the PG's (NHN KCP) wording and often its code in brackets, in Korean or
English.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, replace
from datetime import datetime, timedelta
from enum import StrEnum

from billing.domain.notices import NoticeKind
from billing.domain.state import BillingState
from billing.domain.statuses import CHARGEABLE_STATUSES, SubscriptionStatus

MAX_DECLINES_PER_CARD = 15  # the card-network rule: declined attempts on one card...
CARD_WINDOW = timedelta(days=30)  # ...in this window


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


class FinalAction(StrEnum):
    CANCEL = "cancel"
    PAUSE = "pause"


@dataclass(frozen=True)
class DunningPolicy:
    """Retry offsets counted from the first failed attempt of a period, then a final action."""

    retry_after: tuple[timedelta, ...] = (timedelta(days=1), timedelta(days=3), timedelta(days=7))
    final_action: FinalAction = FinalAction.CANCEL

    @property
    def max_attempts(self) -> int:
        return len(self.retry_after) + 1

    @property
    def shortest_gap(self) -> timedelta | None:
        """The least time between two attempts of one period on this schedule (None: there
        is never a second attempt). Work older than this may have a later attempt that a
        database restored from a backup has forgotten (``needs_lookup``)."""
        offsets = sorted(self.retry_after)
        pairs = zip([timedelta(0), *offsets], offsets, strict=False)
        gaps = [later - earlier for earlier, later in pairs if later > earlier]
        return min(gaps) if gaps else None


class DeclineAction(StrEnum):
    RETRY = "retry"  # soft decline: the next retry of the schedule is set
    AWAIT_CARD = "await_card"  # hard decline: no retry; the dunning window waits for a new card
    CANCEL = "cancel"  # dunning exhausted, final_action cancel
    PAUSE = "pause"  # dunning exhausted, final_action pause
    NONE = "none"  # the subscription was paused or canceled meanwhile: nothing to schedule


@dataclass(frozen=True)
class Decline:
    state: BillingState
    action: DeclineAction


def record_decline(
    state: BillingState,
    policy: DunningPolicy,
    now: datetime,
    *,
    hard: bool = False,
    card_updated: bool = False,
) -> Decline:
    """A charge of the due period, made at ``now``, was declined: schedule the next retry
    or end dunning.

    Retry times are ``first failure + retry_after[i]``; the next one is the first of those
    still ahead of ``now`` (a retry made early, after a card update, does not use up a slot,
    and slots missed while the scheduler was down are not made up). A hard decline makes no
    retry: the subscription waits, past due, for a new card until the last retry time, when
    the final action applies. ``card_updated``: the card was replaced while this charge was
    in flight, so the new card is tried at once.
    """
    first = state.first_failed_at or now
    failed = replace(state, attempt=state.attempt + 1, first_failed_at=first)
    if state.status not in CHARGEABLE_STATUSES:
        return Decline(failed, DeclineAction.NONE)
    if card_updated:
        at_once = replace(
            failed, status=SubscriptionStatus.PAST_DUE, awaiting_new_card=False, next_charge_at=now
        )
        return Decline(at_once, DeclineAction.RETRY)
    ahead = [first + offset for offset in policy.retry_after if first + offset > now]
    if not ahead:
        return end_dunning(failed, policy)
    if hard:
        waiting = replace(
            failed,
            status=SubscriptionStatus.PAST_DUE,
            awaiting_new_card=True,
            next_charge_at=ahead[-1],
        )
        return Decline(waiting, DeclineAction.AWAIT_CARD)
    retrying = replace(
        failed, status=SubscriptionStatus.PAST_DUE, awaiting_new_card=False, next_charge_at=ahead[0]
    )
    return Decline(retrying, DeclineAction.RETRY)


def end_dunning(state: BillingState, policy: DunningPolicy) -> Decline:
    """Dunning is exhausted (or a hard decline's window closed): cancel or pause."""
    if policy.final_action == FinalAction.PAUSE:
        status, action = SubscriptionStatus.PAUSED, DeclineAction.PAUSE
    else:
        status, action = SubscriptionStatus.CANCELED, DeclineAction.CANCEL
    ended = replace(state, status=status, next_charge_at=None, awaiting_new_card=False)
    return Decline(ended, action)


def card_postponed_until(declines: list[datetime]) -> datetime | None:
    """None when the card's declines in the window allow another attempt; else when the
    oldest decline that keeps the card at the cap leaves the window."""
    recent = sorted(declines)
    if len(recent) < MAX_DECLINES_PER_CARD:
        return None
    return recent[-MAX_DECLINES_PER_CARD] + CARD_WINDOW + timedelta(seconds=1)


def card_busy(declines: int, in_flight: int) -> bool:
    """True when declines and attempts in flight (which may become declines) reach the cap,
    but declines alone do not: the next scheduler pass tries again, once some are answered."""
    return declines < MAX_DECLINES_PER_CARD <= declines + in_flight


def final_notice(action: DeclineAction) -> NoticeKind | None:
    """The notice that tells dunning ended (None: it did not end)."""
    return FINAL_NOTICES.get(action)


FINAL_NOTICES = {
    DeclineAction.CANCEL: NoticeKind.SUBSCRIPTION_CANCELED,
    DeclineAction.PAUSE: NoticeKind.SUBSCRIPTION_PAUSED,
}


def needs_lookup(
    policy: DunningPolicy,
    history_behind: bool,
    since: datetime | None,
    now: datetime,
    *,
    looked_up_lately: bool = False,
) -> str | None:
    """Why an attempt must be looked up at PortOne before it is sent, or None.

    Our database can only have forgotten a later attempt of the period (a restore from a
    backup, a failover that lost commits) when the work is older (``since``: when it was
    due, or when its charge was created) than the shortest time between two attempts of the
    plan's dunning schedule; sending an earlier merchant_uid that PortOne already declined
    could then pay a period twice (if PortOne lets a declined merchant_uid be used again).
    Work on time, the usual case, is sent at once. A subscription whose history PortOne knew
    better is looked up until an attempt is new to PortOne (``reconcile.finish_reconcile``).
    A charge PortOne was asked about within the reconciliation window (``looked_up_lately``:
    it found nothing, so the charge is being sent again) is sent: PortOne has just said it
    knows nothing of it, so no later attempt of its period can exist, and asking again would
    only ask again, forever.
    """
    if looked_up_lately:
        return None
    if history_behind:
        return "PortOne knew an attempt of this subscription that this database did not"
    gap = policy.shortest_gap
    if gap is not None and since is not None and now - since >= gap:
        return f"{now - since} old, at least the {gap} between two attempts of the plan"
    return None
