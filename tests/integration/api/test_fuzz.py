"""The served OpenAPI document is valid OpenAPI 3.1, and schemathesis, generating requests
from it (valid and invalid), never gets a 5xx, a traceback, or an error outside the envelope.
Every operation is called with a read-write key, against the sandbox over HTTP.

Besides the envelope, schemathesis checks every answer against its documented schema and
status codes, and that invalid requests are refused. It does not hold us to accepting every
schema-valid request (values the services refuse, such as an unknown plan or a time that is
no ISO 8601, are 404 or 422 by design), nor to refusing every schema-violating one (an unknown
query parameter is ignored, as most HTTP APIs do)."""

from __future__ import annotations

import itertools
from typing import Any

import schemathesis
from hypothesis import HealthCheck, given, settings
from openapi_spec_validator import validate
from schemathesis.generation.modes import GenerationMode
from schemathesis.specs.openapi.checks import negative_data_rejection, positive_data_acceptance

from tests.integration.api.conftest import Api

EXAMPLES = 40  # per operation and mode (valid, invalid)
LENIENT = [positive_data_acceptance, negative_data_rejection]


def test_the_served_openapi_document_is_valid(api: Api) -> None:
    document = api.get("/v1/openapi.json", key=None).json()
    assert document["openapi"].startswith("3.1")
    validate(document)
    expected = {
        ("get", "/plans"),
        ("get", "/plans/{plan_id}/preview"),
        ("put", "/customers/{customer_uid}"),
        ("get", "/customers/{customer_uid}"),
        ("post", "/customers/{customer_uid}/billing-key/verify"),
        ("delete", "/customers/{customer_uid}/billing-key"),
        ("get", "/checkout-params"),
        ("post", "/subscriptions"),
        ("get", "/subscriptions"),
        ("get", "/subscriptions/{subscription_id}"),
        ("post", "/subscriptions/{subscription_id}/cancel"),
        ("post", "/subscriptions/{subscription_id}/pause"),
        ("post", "/subscriptions/{subscription_id}/resume"),
        ("post", "/subscriptions/{subscription_id}/change-plan"),
        ("get", "/subscriptions/{subscription_id}/events"),
        ("get", "/charges"),
        ("get", "/charges/{charge_id}"),
        ("post", "/charges/{charge_id}/refunds"),
        ("post", "/test-clock"),
    }
    served = {(m, p) for p, ops in document["paths"].items() for m in ops}
    assert served == expected
    assert document["servers"] == [{"url": "/v1"}]
    for path, operations in document["paths"].items():
        if "post" in operations:  # every POST documents Idempotency-Key
            names = [p["name"] for p in operations["post"].get("parameters", [])]
            assert "Idempotency-Key" in names, path


def envelope(response: Any, where: str) -> None:
    assert response.status_code < 500, where
    if response.status_code >= 400:
        assert response.headers.get("content-type") == ["application/json"], where
        body = response.json()
        assert set(body) == {"error"}, where
        assert set(body["error"]) == {"code", "message"}, where
        assert "Traceback" not in body["error"]["message"], where


def test_no_request_gets_a_5xx_or_leaves_the_envelope(api: Api) -> None:
    """Each operation in turn: valid and invalid requests generated from its schema."""
    loaded = schemathesis.openapi.from_url(api.url + "/v1/openapi.json")
    headers = {"Authorization": f"Bearer {api.key}"}
    operations = [result.ok() for result in loaded.get_all_operations()]
    assert len(operations) == 19

    modes = (GenerationMode.POSITIVE, GenerationMode.NEGATIVE)
    for operation, mode in itertools.product(operations, modes):

        @given(case=operation.as_strategy(mode))
        @settings(
            max_examples=EXAMPLES,
            deadline=None,
            database=None,
            suppress_health_check=list(HealthCheck),
        )
        def call(case: Any) -> None:
            response = case.call(base_url=api.url + "/v1", headers=headers)
            envelope(
                response,
                f"{case.as_curl_command()} -> {response.status_code} {response.text[:300]!r}",
            )
            case.validate_response(response, excluded_checks=LENIENT)

        call()
