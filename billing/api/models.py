"""Every request and answer of the HTTP API as pydantic models (the OpenAPI document).

Answers are the CLI's ``--json`` objects (``billing.views``), validated into these models on
the way out, so that a view and its documented shape cannot drift apart. Times are ISO 8601
text with an offset, exactly as the CLI prints them. Money is whole KRW (JSON integers only).
Requests refuse unknown fields, so that a misspelt field is a 422 and not silently ignored.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    StrictBool,
    StrictInt,
    ValidationInfo,
    WithJsonSchema,
    field_validator,
)

from billing.domain.charges import ChargeStatus
from billing.domain.refunds import RefundStatus
from billing.domain.statuses import SubscriptionStatus
from billing.services.customers import CUSTOMER_UID, EMAIL, PHONE

Time = Annotated[str, WithJsonSchema({"type": "string", "format": "date-time"})]
Reason = Annotated[
    str, Field(min_length=1, max_length=200, description="Why; kept in the history.")
]
Text = Annotated[str, Field(max_length=1000)]


class Request(BaseModel):
    model_config = ConfigDict(extra="forbid")

    @field_validator("*")
    @classmethod
    def _no_nul(cls, value: Any, info: ValidationInfo) -> Any:
        """PostgreSQL can neither store nor compare a NUL character."""
        if isinstance(value, str) and "\x00" in value:
            raise ValueError(f"{info.field_name}: NUL characters are not allowed")
        return value


class Answer(BaseModel):
    model_config = ConfigDict(extra="forbid")


# -- errors --------------------------------------------------------------------------------------


class ErrorDetail(Answer):
    code: str = Field(examples=["not_found"])
    message: str = Field(examples=["no subscription with id 42"])


class ErrorBody(Answer):
    error: ErrorDetail


# -- plans ---------------------------------------------------------------------------------------


class Dunning(Answer):
    retry_after: list[int] = Field(description="Seconds after the first failed attempt.")
    final_action: Literal["cancel", "pause"]


class Plan(Answer):
    id: str
    version: int
    name: str
    amount: int = Field(description="KRW per period.")
    interval: str | None
    cron: str | None
    timezone: str
    trial_days: int
    prorate_first: bool | None
    card_quota: int | None
    dunning: Dunning


class PlanList(Answer):
    data: list[Plan]
    has_more: bool


class PreviewCharge(Answer):
    at: Time
    amount: int


class PreviewList(Answer):
    data: list[PreviewCharge]
    has_more: bool


# -- customers and billing keys ------------------------------------------------------------------


class CustomerIn(Request):
    """All three are replaced: a field left out becomes null."""

    name: Annotated[str, Field(min_length=1, max_length=200)] | None = None
    email: Annotated[str, Field(max_length=254, pattern=EMAIL.pattern)] | None = None
    phone: Annotated[str, Field(max_length=32, pattern=PHONE.pattern)] | None = None


class Card(Answer):
    card_name: str | None
    card_number: str | None = Field(description="Masked: the last four digits only.")
    verified_at: Time


class Customer(Answer):
    customer_uid: str
    name: str | None
    email: str | None
    phone: str | None
    created_at: Time
    billing_key: Card | None = Field(description="What PortOne last showed of its billing key.")


class BillingKeyVerified(Answer):
    customer_uid: str
    billing_key: Literal["verified"]
    card_name: str | None
    card_number: str | None
    retried: list[int] = Field(description="Past-due subscriptions retried at once.")


class BillingKeyDeleted(Answer):
    customer_uid: str
    billing_key: Literal["deleted"]
    card_name: str | None
    card_number: str | None


class CheckoutParams(Answer):
    """The ``IMP.request_pay`` parameters (amount 0: the customer issues a billing key)."""

    pg: str
    pay_method: Literal["card"]
    merchant_uid: str
    name: str
    amount: int
    customer_uid: str
    buyer_name: str | None
    buyer_email: str | None
    buyer_tel: str | None
    m_redirect_url: str | None  # BILLING_CHECKOUT_REDIRECT_URL; null when it is not set


# -- subscriptions -------------------------------------------------------------------------------


class CardIn(Request):
    """Card data for a key-in first payment. Never stored or logged."""

    number: Annotated[str, Field(max_length=32)]
    expiry: Annotated[str, Field(max_length=16, description="YYYY-MM")]
    birth: Annotated[str, Field(max_length=16, description="YYMMDD, or a business number")]
    pwd_2digit: Annotated[str, Field(max_length=4)] | None = None


class SubscriptionIn(Request):
    customer_uid: Annotated[str, Field(pattern=CUSTOMER_UID.pattern)]
    plan_id: Annotated[str, Field(max_length=64)]
    start: Annotated[str, Field(max_length=64, description="ISO 8601; default now")] | None = None
    card: CardIn | None = None


class CancelIn(Request):
    at_period_end: StrictBool = False
    reason: Reason | None = None


class ReasonIn(Request):
    reason: Reason | None = None


class ChangePlanIn(Request):
    plan_id: Annotated[str, Field(max_length=64)]
    reason: Reason | None = None


class Subscription(Answer):
    id: int
    customer_uid: str
    plan_id: str
    plan_version: int
    status: SubscriptionStatus
    current_period_start: Time | None
    current_period_end: Time | None
    next_charge_at: Time | None
    period_no: int
    attempt: int
    trial_end: Time | None
    cancel_at_period_end: bool
    next_plan_id: str | None
    started_at: Time
    canceled_at: Time | None
    paused_at: Time | None
    created_at: Time


class SubscriptionList(Answer):
    data: list[Subscription]
    has_more: bool


class Event(Answer):
    id: int
    at: Time
    kind: str
    charge_id: int | None
    data: dict[str, Any]


class EventList(Answer):
    data: list[Event]
    has_more: bool


# -- charges and refunds -------------------------------------------------------------------------


class Charge(Answer):
    id: int
    subscription_id: int
    merchant_uid: str
    customer_uid: str
    plan_id: str
    amount: int
    status: ChargeStatus
    period_no: int
    attempt: int
    period_start: Time
    period_end: Time
    imp_uid: str | None
    receipt_url: str | None = Field(description="The card sales slip (매출전표) PortOne names")
    fail_reason: str | None
    decline_class: str | None
    sends: int
    refunded_amount: int
    paid_at: Time | None
    created_at: Time


class ChargeList(Answer):
    data: list[Charge]
    has_more: bool


class RefundIn(Request):
    amount: Annotated[StrictInt, Field(gt=0, le=10**12)] | None = Field(
        None, description="KRW; default all that is left to refund."
    )
    reason: Reason


class Refund(Answer):
    id: int
    charge_id: int
    subscription_id: int
    merchant_uid: str
    imp_uid: str | None
    amount: int
    checksum: int
    reason: str
    status: RefundStatus
    fail_reason: str | None
    sends: int
    created_at: Time
    charge_amount: int
    refunded_amount: int
    refundable: int


# -- the test clock ------------------------------------------------------------------------------


class ClockIn(Request):
    now: Annotated[str, Field(max_length=64, description="ISO 8601")] | None = None
    advance: Annotated[str, Field(max_length=32, examples=["3d", "1 month"])] | None = None


class ClockNow(Answer):
    now: Time
