"""/openapi.json says what the API does, completely and exactly: a valid OpenAPI 3.1 document
whose every `$ref` resolves; problem+json errors; the required Idempotency-Key (printable
ASCII) and signature headers; Retry-After on 429; the server's bounds and patterns on query and
path parameters; required request bodies; public health checks; the create -> get link. And the
error bodies really are problem+json."""

from __future__ import annotations

import re
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st
from openapi_spec_validator import validate
from trio.testing import MockClock

from tests.web.conftest import Api
from web.openapi import IDEMPOTENT_OPERATIONS, PROBLEM_CONTENT_TYPE, complete


async def _document(api: Api) -> dict[str, Any]:
    response = await api.client.get("/openapi.json")
    assert response.status_code == 200
    document: dict[str, Any] = await response.get_json()
    return document


async def test_creating_posts_require_an_idempotency_key(
    api: Api, autojump_clock: MockClock
) -> None:
    paths = (await _document(api))["paths"]
    for path, method in IDEMPOTENT_OPERATIONS:
        parameters = {p["name"]: p for p in paths[path][method]["parameters"]}
        key = parameters["Idempotency-Key"]
        assert key["in"] == "header" and key["required"] is True
        assert key["schema"] == {
            "type": "string",
            "minLength": 1,
            "maxLength": 255,
            "pattern": "^[!-~]+$",
        }
    assert not any(
        p["name"] == "Idempotency-Key" for p in paths["/v1/payments"]["get"].get("parameters", [])
    )


async def test_every_documented_error_is_problem_json(api: Api, autojump_clock: MockClock) -> None:
    paths = (await _document(api))["paths"]
    errors = 0
    for operations in paths.values():
        for operation in operations.values():
            for status, response in operation["responses"].items():
                content = response.get("content", {})
                if int(status) >= 400 and operation.get("security") != []:
                    if int(status) == 503:  # /readyz answers its own JSON report
                        continue
                    assert list(content) == [PROBLEM_CONTENT_TYPE], (status, operation)
                    errors += 1
                if int(status) == 429:
                    assert "Retry-After" in response["headers"]
    assert errors >= 30


async def test_an_error_is_served_with_the_documented_media_type(
    api: Api, autojump_clock: MockClock
) -> None:
    response = await api.client.post("/v1/payments", json={}, headers=api.auth(api.storefront))
    assert response.status_code == 400
    assert response.content_type == PROBLEM_CONTENT_TYPE
    body = await response.get_json()
    assert body["status"] == 400 and body["type"] and body["title"]


_STATUS = st.sampled_from(["200", "201", "400", "404", "429"])


@given(
    statuses=st.lists(_STATUS, min_size=1, max_size=5, unique=True),
    path=st.sampled_from(["/v1/payments", "/v1/other"]),
)
def test_complete_is_pure_and_touches_only_problem_bodies(statuses: list[str], path: str) -> None:
    problem = {"schema": {"title": "Problem", "type": "object"}}
    plain = {"schema": {"title": "PaymentOut", "type": "object"}}
    responses = {
        s: {"content": {"application/json": problem if s >= "400" else plain}} for s in statuses
    }
    document = {"paths": {path: {"post": {"responses": responses}}}}
    before = repr(document)
    done = complete(document)
    assert repr(document) == before  # the input is not mutated
    for status, response in done["paths"][path]["post"]["responses"].items():
        expected = PROBLEM_CONTENT_TYPE if status >= "400" else "application/json"
        assert list(response["content"]) == [expected]
        assert ("Retry-After" in response.get("headers", {})) == (status == "429")
    names = [p["name"] for p in done["paths"][path]["post"].get("parameters", [])]
    assert names == (["Idempotency-Key"] if path == "/v1/payments" else [])


def _refs(node: Any) -> list[str]:
    if isinstance(node, dict):
        found = [node["$ref"]] if isinstance(node.get("$ref"), str) else []
        return found + [ref for value in node.values() for ref in _refs(value)]
    if isinstance(node, list):
        return [ref for value in node for ref in _refs(value)]
    return []


async def test_the_document_is_valid_and_every_ref_resolves(
    api: Api, autojump_clock: MockClock
) -> None:
    document = await _document(api)
    validate(document)  # raises on an invalid OpenAPI 3.1 document
    refs = _refs(document)
    assert len(refs) >= 20
    schemas = document["components"]["schemas"]
    for ref in refs:
        assert ref.startswith("#/components/schemas/"), ref
        assert ref.removeprefix("#/components/schemas/") in schemas, ref
    assert {"OrderIn", "PaymentOut", "FieldError", "Problem"} <= set(schemas)


async def test_constraints_the_server_enforces_are_in_the_schema(
    api: Api, autojump_clock: MockClock
) -> None:
    paths = (await _document(api))["paths"]
    listing = {p["name"]: p for p in paths["/v1/payments"]["get"]["parameters"]}
    assert listing["limit"]["schema"] == {"type": "integer", "minimum": 1, "maximum": 100}
    assert listing["starting_after"]["schema"]["maxLength"] == 128
    entries = paths["/v1/ledger/accounts/{account}/entries"]["get"]
    account = next(p for p in entries["parameters"] if p["name"] == "account")
    assert "merchant_payable" in account["schema"]["pattern"]
    create = paths["/v1/payments"]["post"]
    assert create["requestBody"]["required"] is True
    seller = (await _document(api))["components"]["schemas"]["OrderIn"]["properties"]
    pattern = seller["seller_id"]["pattern"]
    assert re.search(pattern, "ceramics-studio") and not re.search(pattern, "shop:evil")
    for public in ("/healthz", "/readyz"):
        assert paths[public]["get"]["security"] == []
    link = create["responses"]["201"]["links"]["GetPayment"]
    assert link["operationId"] == paths["/v1/payments/{payment_id}"]["get"]["operationId"]
    assert link["parameters"] == {"payment_id": "$response.body#/id"}


async def test_the_reconciliation_upload_body_is_the_file_itself(
    api: Api, autojump_clock: MockClock
) -> None:
    upload = (await _document(api))["paths"]["/v1/reconciliations"]["post"]
    body = upload["requestBody"]
    assert body["required"] is True
    media = body["content"]["application/octet-stream"]
    assert media["schema"] == {"type": "string", "format": "binary"}
    assert media["example"].startswith("balance_transaction_id,")
    assert {p["name"] for p in upload["parameters"]} == {"format", "dry_run"}
    # Any content type is read alike: no 415; an unreadable file is a 422.
    assert "415" not in upload["responses"] and "422" in upload["responses"]
    assert {"200", "201"} <= set(upload["responses"])


@pytest.mark.parametrize(
    ("path", "expected"),
    [
        ("/v1/payments/{payment_id}", {"401", "403", "404", "429"}),
        ("/v1/payments", {"400", "401", "403", "413", "415", "422", "429", "503"}),
    ],
)
async def test_every_status_the_server_can_answer_is_documented(
    api: Api, autojump_clock: MockClock, path: str, expected: set[str]
) -> None:
    paths = (await _document(api))["paths"]
    method = "get" if "{" in path else "post"
    assert expected <= set(paths[path][method]["responses"])
