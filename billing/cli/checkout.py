"""``billing checkout-params``: what a merchant's page passes to ``IMP.request_pay`` so that
the customer issues a billing key for a plan (KCP ``kcp_billing``, amount 0: no payment).

The customer_uid is the one given: it names the key at PortOne, so it must be the one the
merchant later gives to ``billing customers add`` and ``billing subscriptions create``. When
that customer is already known, its name, e-mail and phone fill the buyer fields. The
merchant_uid is fresh on every call: it names this one key-issuing request.
"""

from __future__ import annotations

import json
import secrets
from typing import Any

import click

from billing.cli.output import emit_json, json_option
from billing.cli.runtime import Runtime
from billing.errors import ConfigError
from billing.services import catalog as catalog_service
from billing.services.customers import check_customer_uid, find_customer

NAME_MAX = 40  # PortOne V1 `name`
NAME_SUFFIX = " 정기결제 등록"
REDIRECT_URL = "https://merchant.example/billing/return"  # placeholder for mobile redirects
IMP_CODE = "imp00000000"  # placeholder: the merchant's own PortOne code (가맹점 식별코드)


def issue_merchant_uid() -> str:
    """``issue-`` and 20 random hex digits: unique, and never the shape of a charge's."""
    return f"issue-{secrets.token_hex(10)}"


def order_name(plan_name: str) -> str:
    """``베이직 월간 구독 정기결제 등록``, the plan name cut so the whole fits 40 characters."""
    return plan_name[: NAME_MAX - len(NAME_SUFFIX)] + NAME_SUFFIX


def checkout_params_for(
    site_code: str, customer_uid: str, plan_name: str, merchant_uid: str,
    buyer: tuple[str | None, str | None, str | None],
) -> dict[str, Any]:  # fmt: skip
    """The ``IMP.request_pay`` parameters (pure)."""
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
        "m_redirect_url": REDIRECT_URL,
    }


def js_snippet(params: dict[str, Any]) -> str:
    """A ready-to-paste page script: IMP.init, then IMP.request_pay with a callback."""
    literal = json.dumps(params, ensure_ascii=False, indent=2)
    return "\n".join([
        f"IMP.init({json.dumps(IMP_CODE)});  // your PortOne merchant code (가맹점 식별코드)",
        f"IMP.request_pay({literal}, function (rsp) {{",
        "  if (!rsp.success) { alert(rsp.error_msg); return; }",
        "  // The billing key is issued. Tell your server; it verifies the key with PortOne",
        "  // (GET /subscribe/customers/{customer_uid}) before subscribing the customer.",
        "  fetch('/billing/key-issued', {",
        "    method: 'POST', headers: {'Content-Type': 'application/json'},",
        "    body: JSON.stringify({customer_uid: rsp.customer_uid, imp_uid: rsp.imp_uid,",
        "                          merchant_uid: rsp.merchant_uid}),",
        "  });",
        "});",
    ])  # fmt: skip


@click.command("checkout-params")
@click.option("--customer", "customer_uid", required=True, help="customer_uid to issue the key as.")
@click.option("--plan", "plan_id", required=True, help="Plan id from the catalog.")
@json_option
@click.pass_obj
def checkout_params(runtime: Runtime, customer_uid: str, plan_id: str, as_json: bool) -> None:
    """Print the IMP.request_pay parameters that issue a billing key for a plan.

    Needs BILLING_PORTONE_SITE_CODE (pg 'kcp_billing.{site code}'). Without --json, a
    ready-to-paste page script. The customer need not exist yet: add it with `billing
    customers add` once the key is issued.
    """
    settings = runtime.settings
    if not settings.site_code:
        raise ConfigError(
            "BILLING_PORTONE_SITE_CODE: not set; checkout parameters need the KCP site code "
            "(pg 'kcp_billing.{site code}')"
        )
    check_customer_uid(customer_uid)
    app = runtime.app
    now = app.clock.now()
    with app.transaction() as session:
        catalog_service.ensure_catalog(session, settings, now)
        plan = catalog_service.current_plan(session, plan_id)
        customer = find_customer(session, customer_uid)
        buyer = (customer.name, customer.email, customer.phone) if customer else (None,) * 3
    params = checkout_params_for(
        settings.site_code, customer_uid, plan.name, issue_merchant_uid(), buyer
    )
    if as_json:
        emit_json(params)
        return
    click.echo(js_snippet(params))
