"""The API function's errors through its real handler (moto, provisioned from template.yaml): the
problems the local stack cannot provoke end to end (several tenants, a crash, a busy record, a route it
does not have) are RFC 9457 documents too, and ``POST /messages`` takes the ``Idempotency-Key`` header.
tests/e2e/test_openapi_conformance.py checks the rest against docs/openapi.yaml over HTTP."""

from __future__ import annotations

import json
import logging
from collections.abc import Iterator
from types import ModuleType, SimpleNamespace
from typing import Any

import pytest
from aws_lambda_powertools.utilities import parameters

from crossroute.contacts import Busy
from infra.local.emulated import emulated_account
from infra.local.gateway import build_http_event
from tests.support import LambdaContext, function_environment, load_handler

PHONE = "+16505550001"
PROBLEM_JSON = "application/problem+json"


@pytest.fixture
def api(monkeypatch: pytest.MonkeyPatch) -> Iterator[ModuleType]:
    with emulated_account("SendQueue", "EventBus", "MaskingKey") as account:
        for name, value in function_environment(account, "ContactsAndMessagesApiFunction").items():
            monkeypatch.setenv(name, value)
        parameters.clear_caches()  # type: ignore[no-untyped-call]
        yield load_handler("contacts_and_messages_api", "problems_api")


def call(
    module: ModuleType,
    method: str,
    path: str,
    *,
    query: str = "",
    body: Any = None,
    headers: tuple[tuple[str, str], ...] = (),
    route: str | None = None,
) -> tuple[int, dict[str, str], Any]:
    event = build_http_event(
        method=method,
        raw_path=path,
        raw_query=query,
        headers=[("host", "127.0.0.1:3000"), ("content-type", "application/json"), *headers],
        body=json.dumps(body).encode() if body is not None else b"",
        route_key=f"{method} {route or path}",
    )
    answer = module.lambda_handler(event, LambdaContext())
    return answer["statusCode"], answer.get("headers") or {}, json.loads(answer["body"] or "null")


def assert_problem(answer: tuple[int, dict[str, str], Any], kind: str, status: int) -> dict[str, Any]:
    got_status, headers, doc = answer
    assert (got_status, headers["Content-Type"]) == (status, PROBLEM_JSON)
    assert (doc["type"], doc["status"]) == (f"urn:crossroute:problem:{kind}", status)
    assert doc["title"] and doc["detail"]
    return doc


def two_tenants(module: ModuleType) -> SimpleNamespace:
    demo = module.registry.get().by_id("demo")
    other = SimpleNamespace(**{**vars(demo), "id": "other"}) if hasattr(demo, "__dict__") else demo
    tenants = [demo, other]
    return SimpleNamespace(
        tenants=tenants, by_id=lambda wanted: next((t for t in tenants if t.id == wanted), None)
    )


def test_several_tenants_and_none_named_is_400_tenant_required(
    api: ModuleType, monkeypatch: pytest.MonkeyPatch
) -> None:
    registry = two_tenants(api)
    monkeypatch.setattr(api.registry, "get", lambda: registry)
    assert_problem(call(api, "GET", "/contacts", query=f"phone={PHONE}"), "tenant-required", 400)
    assert_problem(call(api, "GET", "/contacts", query="phone=x&tenant=nobody"), "unknown-tenant", 404)


def test_a_crash_is_a_500_problem_that_tells_nothing_and_is_logged_with_its_traceback(
    api: ModuleType, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    def crash(*args: Any, **kwargs: Any) -> None:
        raise RuntimeError(f"boom near {PHONE}")

    monkeypatch.setattr(api.contacts, "find", crash)
    caplog.set_level(logging.ERROR)
    doc = assert_problem(call(api, "GET", "/contacts", query=f"phone={PHONE}"), "internal", 500)
    assert PHONE not in json.dumps(doc) and "boom" not in json.dumps(doc)
    (logged,) = [r for r in caplog.records if r.getMessage() == "unhandled error: 500"]
    assert logged.exc_info is not None and logged.exc_info[0] is RuntimeError


def test_a_record_that_keeps_racing_is_503_busy_with_retry_after(
    api: ModuleType, monkeypatch: pytest.MonkeyPatch
) -> None:
    def racing(*args: Any, **kwargs: Any) -> None:
        raise Busy("the record kept racing other writers: try again")

    monkeypatch.setattr(api.contacts, "upsert", racing)
    answer = call(api, "POST", "/contacts", body={"phone": PHONE})
    assert_problem(answer, "busy", 503)
    assert answer[1]["Retry-After"] == "1"


def test_a_route_it_does_not_have_is_a_404_problem(api: ModuleType) -> None:
    doc = assert_problem(call(api, "GET", "/nothing-here"), "not-found", 404)
    assert doc["detail"] == "no route GET /nothing-here"


@pytest.mark.parametrize("header", ['"order-77"', "order-77"])
def test_the_idempotency_key_header_stands_for_the_body_field(api: ModuleType, header: str) -> None:
    request = {"to": {"phone": PHONE}, "text": "Shipped"}
    status, headers, first = call(
        api, "POST", "/messages", body=request, headers=(("Idempotency-Key", header),)
    )
    assert status == 202 and headers["Location"] == f"/messages/{first['request_id']}"
    status, _, again = call(api, "POST", "/messages", body={**request, "idempotency_key": "order-77"})
    assert (status, again) == (202, first)  # the header and the body field name the same key
    status, _, view = call(api, "GET", f"/messages/{first['request_id']}", route="/messages/{request_id}")
    assert (status, view["idempotency_key"], view["status"]) == (200, "order-77", "queued")
    changed = call(
        api, "POST", "/messages", body={**request, "text": "Changed"}, headers=(("Idempotency-Key", header),)
    )
    doc = assert_problem(changed, "idempotency-key-reused", 422)
    assert doc["request_id"] == first["request_id"]


def test_with_several_tenants_the_location_names_the_requests_tenant(
    api: ModuleType, monkeypatch: pytest.MonkeyPatch
) -> None:
    registry = two_tenants(api)
    monkeypatch.setattr(api.registry, "get", lambda: registry)
    body = {"tenant": "demo", "idempotency_key": "k-loc", "to": {"phone": PHONE}, "text": "hi"}
    status, headers, doc = call(api, "POST", "/messages", body=body)
    assert status == 202 and headers["Location"] == f"/messages/{doc['request_id']}?tenant=demo"
