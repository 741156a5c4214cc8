"""``billing checkout-params``: the ``IMP.request_pay`` parameters that issue a billing key
for a plan (see ``billing.services.checkout``), as JSON or as a ready-to-paste page script.
"""

from __future__ import annotations

import json
from typing import Any

import click

from billing.cli.output import emit_json, json_option
from billing.cli.runtime import Runtime
from billing.services import checkout as checkout_service

IMP_CODE = "imp00000000"  # placeholder: the merchant's own PortOne code (가맹점 식별코드)


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
    app = runtime.app
    now = app.clock.now()
    with app.transaction() as session:
        params = checkout_service.checkout_params(
            session, runtime.settings, customer_uid, plan_id, now
        )
    if as_json:
        emit_json(params)
        return
    click.echo(js_snippet(params))
