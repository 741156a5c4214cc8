"""API keys never reach a log line: `billing serve` at DEBUG with its access log, asked with
good, wrong and misplaced keys (in the URL, a body, the Idempotency-Key), logs none of them."""

from __future__ import annotations

import logging
import signal

import httpx

from billing.logs import Redactor
from tests.integration.api.conftest import Api
from tests.integration.test_web import start_serve

WRONG = "bk_" + "Z" * 43


def test_served_logs_carry_no_api_key(api: Api) -> None:
    env = {**api.env, "BILLING_LOG_LEVEL": "DEBUG"}
    process, url = start_serve(env, "--access-log")
    bearer = {"Authorization": f"Bearer {api.key}"}
    try:
        assert httpx.get(url + "/v1/plans", headers=bearer).status_code == 200
        assert (
            httpx.get(url + "/v1/plans", headers={"Authorization": f"Bearer {WRONG}"}).status_code
            == 401
        )
        assert httpx.get(url + f"/v1/plans?api_key={api.key}").status_code == 401
        httpx.post(
            url + "/v1/subscriptions",
            headers={**bearer, "Idempotency-Key": api.key},
            json={"customer_uid": api.key, "plan_id": api.read_only_key},
        )
        httpx.put(url + f"/v1/customers/{api.key}", headers=bearer, json={"name": api.key})
    finally:
        process.send_signal(signal.SIGTERM)
        _out, err = process.communicate(timeout=30)
    assert '"action": "api_auth_refused"' in err and "/v1/plans" in err  # it did log
    for key in (api.key, api.read_only_key, WRONG):
        assert key not in err and key[3:] not in err and key[11:] not in err


def test_the_redactor_hides_api_keys_anywhere(api: Api) -> None:
    record = logging.LogRecord(
        "x",
        logging.INFO,
        "f",
        1,
        "GET /v1/plans?key=%s %s",
        (api.key, f"Authorization: Bearer {api.key}"),
        None,
    )
    record.fields = {"url": f"https://shop/?k={api.key}", "note": api.key}  # type: ignore[attr-defined]
    Redactor().filter(record)
    shown = record.getMessage() + repr(record.fields)  # type: ignore[attr-defined]
    assert api.key not in shown and api.key[3:] not in shown and "[redacted]" in shown
