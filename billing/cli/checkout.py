"""``billing checkout-params``: the ``IMP.request_pay`` parameters that issue a billing key
for a plan (see ``billing.services.checkout``), as JSON or as a ready-to-paste page snippet.
"""

from __future__ import annotations

import json
from typing import Any

import click

from billing.cli.output import emit_json, json_option
from billing.cli.runtime import Runtime
from billing.config import HTTP_URL
from billing.errors import ConfigError, InvalidInput
from billing.services import checkout as checkout_service

SDK = "https://cdn.iamport.kr/v1/iamport.js"  # PortOne's V1 JS SDK


def page_snippet(params: dict[str, Any], merchant_code: str) -> str:
    """The HTML to paste: the SDK loader, then IMP.init and IMP.request_pay with a callback.
    Parameters without a value (no buyer e-mail, no redirect) are left out."""
    given = {key: value for key, value in params.items() if value is not None}
    literal = json.dumps(given, ensure_ascii=False, indent=2)
    return "\n".join(
        [
            f'<script src="{SDK}"></script>',
            "<script>",
            f"IMP.init({json.dumps(merchant_code)});"
            "  // your PortOne merchant code (가맹점 식별코드)",
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
            "</script>",
        ]
    )


def _merchant_code(runtime: Runtime) -> str:
    code = runtime.settings.merchant_code
    if code is None:
        raise ConfigError(
            "BILLING_PORTONE_MERCHANT_CODE: not set; the page snippet calls IMP.init with your "
            "PortOne merchant code (가맹점 식별코드, imp and digits); --json needs none"
        )
    return code


def _redirect(value: str | None) -> str | None:
    if value is not None and not HTTP_URL.fullmatch(value):
        raise InvalidInput(f"--redirect-url {value!r} must be one http:// or https:// URL")
    return value


@click.command("checkout-params")
@click.option("--customer", "customer_uid", required=True, help="customer_uid to issue the key as.")
@click.option("--plan", "plan_id", required=True, help="Plan id from the catalog.")
@click.option(
    "--redirect-url",
    help="m_redirect_url: where a mobile browser returns (default: "
    "BILLING_CHECKOUT_REDIRECT_URL; none if unset).",
)
@json_option
@click.pass_obj
def checkout_params(
    runtime: Runtime, customer_uid: str, plan_id: str, redirect_url: str | None, as_json: bool
) -> None:
    """Print the IMP.request_pay parameters that issue a billing key for a plan.

    Needs BILLING_PORTONE_SITE_CODE (pg 'kcp_billing.{site code}'). Without --json, the
    HTML to paste into the page (the iamport.js loader, IMP.init with
    BILLING_PORTONE_MERCHANT_CODE, IMP.request_pay). The customer need not exist yet: add it
    with `billing customers add` once the key is issued.
    """
    redirect = _redirect(redirect_url)
    app = runtime.app
    now = app.clocks.billing.now()
    with app.transaction() as session:
        params = checkout_service.checkout_params(
            session, runtime.settings, customer_uid, plan_id, now, redirect
        )
    if as_json:
        emit_json(params)
        return
    click.echo(page_snippet(params, _merchant_code(runtime)))
