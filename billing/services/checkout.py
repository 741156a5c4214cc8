"""The checkout: what a merchant's page passes to ``IMP.request_pay`` so that the customer
issues a billing key for a plan (KCP ``kcp_billing``, amount 0: no payment).

The customer_uid is the one given: it names the key at PortOne, so it must be the one the
merchant later subscribes. When that customer is already known, its name, e-mail and phone
fill the buyer fields. The merchant_uid is fresh on every call: it names this one
key-issuing request.
"""

from __future__ import annotations

import secrets
from datetime import datetime
from typing import Any

from sqlalchemy.orm import Session

from billing.config import Settings
from billing.errors import ConfigError
from billing.services import plan_store
from billing.services.customers import check_customer_uid, find_customer

NAME_MAX = 40  # PortOne V1 `name`
NAME_SUFFIX = " 정기결제 등록"


def issue_merchant_uid() -> str:
    """``issue-`` and 20 random hex digits: unique, and never the shape of a charge's."""
    return f"issue-{secrets.token_hex(10)}"


def order_name(plan_name: str) -> str:
    """``베이직 월간 구독 정기결제 등록``, the plan name cut so the whole fits 40 characters."""
    return plan_name[: NAME_MAX - len(NAME_SUFFIX)] + NAME_SUFFIX


def checkout_params_for(
    site_code: str,
    customer_uid: str,
    plan_name: str,
    merchant_uid: str,
    buyer: tuple[str | None, str | None, str | None],
    redirect_url: str | None = None,
) -> dict[str, Any]:
    """The ``IMP.request_pay`` parameters (pure); ``m_redirect_url`` is where a mobile
    browser returns (BILLING_CHECKOUT_REDIRECT_URL), None when the merchant has none."""
    name, email, tel = buyer
    return {
        "pg": f"kcp_billing.{site_code}",
        "pay_method": "card",
        "merchant_uid": merchant_uid,
        "name": order_name(plan_name),
        "amount": 0,
        "customer_uid": customer_uid,
        "buyer_name": name,
        "buyer_email": email,
        "buyer_tel": tel,
        "m_redirect_url": redirect_url,
    }


def checkout_params(
    session: Session,
    settings: Settings,
    customer_uid: str,
    plan_id: str,
    now: datetime,
    redirect_url: str | None = None,
) -> dict[str, Any]:
    """The parameters for ``customer_uid`` and ``plan_id``; ConfigError without a site code."""
    if not settings.site_code:
        raise ConfigError(
            "BILLING_PORTONE_SITE_CODE: not set; checkout parameters need the KCP site code "
            "(pg 'kcp_billing.{site code}')"
        )
    check_customer_uid(customer_uid)
    plan_store.ensure_catalog(session, settings, now)
    plan = plan_store.current_plan(session, plan_id)
    customer = find_customer(session, customer_uid)
    buyer = (customer.name, customer.email, customer.phone) if customer else (None,) * 3
    redirect = redirect_url or settings.checkout_redirect_url
    return checkout_params_for(
        settings.site_code, customer_uid, plan.name, issue_merchant_uid(), buyer, redirect
    )
