"""The examples in the served OpenAPI document are the answers a merchant really gets.

One story, told through the served API over real HTTP (a customer, a monthly subscription,
its first charge paid at the sandbox, a partial refund): each documented example must have
the same fields, holding values of the same JSON types (null where the answer has null),
as the real answer, and must validate against its own schema.
"""

from __future__ import annotations

from typing import Any

from billing.api import examples
from tests.integration.api.conftest import Api


def shape(value: Any) -> Any:
    """What a client's parser sees: field names and JSON types, not the values."""
    if isinstance(value, dict):
        return {key: shape(item) for key, item in value.items()}
    if isinstance(value, list):
        return [shape(item) for item in value[:1]]
    if isinstance(value, bool) or value is None:
        return type(value).__name__
    return {int: "number", float: "number", str: "string"}[type(value)]


def answer(api: Api, path: str, status: int = 200) -> dict[str, Any]:
    got = api.get(path)
    assert got.status_code == status, got.text
    body: dict[str, Any] = got.json()
    return body


def test_every_documented_example_has_the_shape_of_the_real_answer(api: Api) -> None:
    api.put("/v1/customers/cust-1", {"name": "홍길동", "email": "c1@example.com"})
    api.issue_key_at_portone("cust-1")
    assert api.post("/v1/customers/cust-1/billing-key/verify").status_code == 200
    sub = api.subscribe("cust-1")
    api.charge_due()
    [charge] = answer(api, f"/v1/charges?subscription_id={sub['id']}")["data"]
    refund = api.post(
        f"/v1/charges/{charge['id']}/refunds", {"amount": 4000, "reason": "partial service"}
    )
    assert refund.status_code == 201, refund.text
    events = answer(api, f"/v1/subscriptions/{sub['id']}/events?limit=100")["data"]
    real = {
        "Subscription": answer(api, f"/v1/subscriptions/{sub['id']}"),
        "Charge": answer(api, f"/v1/charges/{charge['id']}"),
        "Refund": refund.json(),
        "Customer": answer(api, "/v1/customers/cust-1"),
        "Plan": next(p for p in answer(api, "/v1/plans")["data"] if p["id"] == "monthly"),
        "Event": next(e for e in events if e["kind"] == examples.EVENT["kind"]),
        "ErrorBody": answer(api, "/v1/subscriptions/42", 404),
    }
    schemas = api.get("/v1/openapi.json", key=None).json()["components"]["schemas"]
    for name, body in real.items():
        [example] = schemas[name].get("examples", [None])
        assert example is not None, f"{name} has no example in the OpenAPI document"
        assert shape(example) == shape(body), (name, example, body)
