"""The running API answers as docs/openapi.yaml says: every route of it, driven over HTTP on the local stack,
each answer (status, content type, headers, body) validated against the document by openapi-core, the
requests we mean to be valid validated too, and what each answer means asserted besides (the id it names,
the problem it reports). The 503 answers (busy, no registry), the 500 and ``tenant-required`` (the local
stack has one tenant) are not provoked here: the unit tests of the handler cover them.
"""

from __future__ import annotations

import json
import time
from typing import Any

from openapi_core import Config, OpenAPI
from openapi_core.deserializing.media_types.util import json_loads
from openapi_core.testing import MockRequest, MockResponse

from infra.local import StackClient
from infra.local.client import HttpResponse
from tests.support import TENANT, eventually, new_phone, openapi_document

API = OpenAPI.from_dict(
    openapi_document(),
    config=Config(extra_media_type_deserializers={"application/problem+json": json_loads}),
)
PROBLEM = "urn:crossroute:problem:"


def call(
    stack: StackClient,
    method: str,
    path: str,
    status: int,
    *,
    valid_request: bool = True,
    query: dict[str, str] | None = None,
    headers: dict[str, str] | None = None,
    json_body: Any = None,
    body: str | None = None,
) -> HttpResponse:
    """``method path`` on the local stack; the answer must have ``status`` and conform to the document
    (and so must the request, when ``valid_request``)."""
    answer = stack.request(method, path, query=query, headers=headers, json_body=json_body, body=body)
    assert answer.status == status, f"{method} {path}: {answer.status} {answer.text}"
    sent = json.dumps(json_body).encode() if json_body is not None else (body or "").encode()
    request = MockRequest(stack.base_url, method, path, args=query, headers=headers, data=sent)
    if valid_request:
        API.validate_request(request)
    content_type = answer.headers.get("content-type", "")
    response = MockResponse(answer.body, status, headers=answer.headers, content_type=content_type)
    API.validate_response(request, response)  # raises naming what does not conform
    return answer


def problem(answer: HttpResponse, kind: str) -> dict[str, Any]:
    """The problem document of ``answer``, which must be of ``kind``."""
    assert answer.headers["content-type"].split(";")[0] == "application/problem+json"
    doc: dict[str, Any] = answer.json()
    assert doc["type"] == PROBLEM + kind, doc
    assert doc["status"] == answer.status
    return doc


def new_contact(stack: StackClient) -> tuple[str, str]:
    """A contact made from a business record (``POST /contacts``): its id and phone."""
    phone = "+" + new_phone()
    record = {"external_id": f"crm-{time.time_ns()}", "phone": phone, "name": "Alex"}
    created = call(stack, "POST", "/contacts", 201, json_body=record).json()
    return str(created["customer_id"]), phone


# ------------------------------------------------------------------------------------------- contacts


def test_a_record_is_created_then_unchanged_then_found(local_stack: StackClient) -> None:
    phone, external_id = "+" + new_phone(), f"crm-{time.time_ns()}"
    record = {"external_id": external_id, "phone": phone, "name": "Alex", "whatsapp_opt_in": True}
    created = call(local_stack, "POST", "/contacts", 201, json_body=record).json()
    assert created["outcome"] == "created"
    assert created["contact"]["external_id"] == external_id
    assert [p["e164"] for p in created["contact"]["phones"]] == [phone]
    again = call(local_stack, "POST", "/contacts", 200, json_body=record).json()
    assert (again["outcome"], again["customer_id"]) == ("unchanged", created["customer_id"])
    for query in ({"external_id": external_id}, {"phone": phone}, {"id": created["customer_id"]}):
        found = call(local_stack, "GET", "/contacts", 200, query=query).json()
        assert found["id"] == created["customer_id"], query
        assert found["whatsapp_opt_in"]["value"] is True


def test_a_key_held_by_another_customer_is_a_409_conflict(local_stack: StackClient) -> None:
    customer_id, phone = new_contact(local_stack)
    record = {"external_id": f"crm-{time.time_ns()}", "phone": phone}
    doc = problem(call(local_stack, "POST", "/contacts", 409, json_body=record), "conflict")
    assert doc["outcome"] == "conflict"
    assert doc["conflicts"] == [{"field": "phone", "customer_id": customer_id}]


def test_an_invalid_record_lists_every_problem(local_stack: StackClient) -> None:
    record = {"phone": "not a phone", "nickname": "Al"}
    answer = call(local_stack, "POST", "/contacts", 400, json_body=record, valid_request=False)
    doc = problem(answer, "validation")
    assert doc["outcome"] == "invalid"
    assert {(e["field"], e.get("code")) for e in doc["errors"]} == {
        ("phone", "phone.invalid"),
        ("nickname", "field.unknown"),
    }
    body = call(local_stack, "POST", "/contacts", 400, body="{not json", valid_request=False)
    assert problem(body, "validation")["errors"]


def test_lookups_that_find_nothing_or_ask_wrongly(local_stack: StackClient) -> None:
    missing = call(local_stack, "GET", "/contacts", 404, query={"phone": "+" + new_phone()})
    assert problem(missing, "not-found")["detail"]
    for query in ({}, {"phone": "+1555", "bsuid": "US.1"}, {"phone": "not a phone"}):
        problem(call(local_stack, "GET", "/contacts", 400, query=query), "validation")
    unknown = call(local_stack, "GET", "/contacts", 404, query={"tenant": "nobody", "id": "x"})
    problem(unknown, "unknown-tenant")


def test_a_batch_answers_each_record_and_refuses_a_bad_envelope(local_stack: StackClient) -> None:
    records = [{"external_id": f"crm-{time.time_ns()}", "phone": "+" + new_phone()}, {"phone": "nope"}]
    doc = {"dry_run": True, "records": records}
    results = call(local_stack, "POST", "/contacts/batch", 200, json_body=doc).json()["results"]
    assert [(r["index"], r["status"], r["outcome"]) for r in results] == [
        (0, 201, "created"),
        (1, 400, "invalid"),
    ]
    assert results[0]["customer_id"] is None  # a dry run creates nothing
    envelopes: list[dict[str, Any]] = [
        {"records": "x"},
        {"records": [], "dry_run": "yes"},
        {"records": [{}] * 101},
    ]
    for envelope in envelopes:
        answer = call(local_stack, "POST", "/contacts/batch", 400, json_body=envelope, valid_request=False)
        assert problem(answer, "validation")["errors"], envelope


def test_a_timeline_pages_and_an_erased_contact_is_gone(local_stack: StackClient) -> None:
    customer_id, _ = new_contact(local_stack)
    path = f"/contacts/{customer_id}/timeline"
    page = call(local_stack, "GET", path, 200).json()
    assert page["customer_id"] == customer_id
    assert page["items"] and {i["kind"] for i in page["items"]} == {"identity"}  # the record's keys (I9)
    first = call(local_stack, "GET", path, 200, query={"limit": "1"}).json()
    assert len(first["items"]) == 1
    if len(page["items"]) > 1:
        assert first["next"] is not None
        rest = call(local_stack, "GET", path, 200, query={"limit": "200", "next": first["next"]}).json()
        assert first["items"] + rest["items"] == page["items"]
    problem(call(local_stack, "GET", path, 400, query={"limit": "0"}, valid_request=False), "validation")
    call(local_stack, "DELETE", f"/contacts/{customer_id}", 204)
    problem(call(local_stack, "DELETE", f"/contacts/{customer_id}", 404), "not-found")
    problem(call(local_stack, "GET", path, 404), "not-found")


# ------------------------------------------------------------------------------------- send requests


def test_a_send_request_is_accepted_once_under_its_key(local_stack: StackClient) -> None:
    key, request = f"k-{time.time_ns()}", {"to": {"phone": "+" + new_phone()}, "text": "Your order"}
    answer = call(local_stack, "POST", "/messages", 202, headers={"Idempotency-Key": key}, json_body=request)
    request_id = answer.json()["request_id"]
    assert answer.headers["location"] == f"/messages/{request_id}"
    again = call(local_stack, "POST", "/messages", 202, json_body={**request, "idempotency_key": key})
    assert again.json()["request_id"] == request_id
    other = {**request, "text": "Something else"}
    reused = call(local_stack, "POST", "/messages", 422, headers={"Idempotency-Key": key}, json_body=other)
    assert problem(reused, "idempotency-key-reused")["request_id"] == request_id


def test_send_requests_refused(local_stack: StackClient) -> None:
    key = f"k-{time.time_ns()}"
    both = {"idempotency_key": "another", "to": {"phone": "+" + new_phone()}, "text": "hi"}
    clash = call(local_stack, "POST", "/messages", 400, headers={"Idempotency-Key": key}, json_body=both)
    assert [e["field"] for e in problem(clash, "validation")["errors"]] == ["idempotency_key"]
    invalid = {"idempotency_key": key, "to": {}, "channels": ["fax"]}
    answer = call(local_stack, "POST", "/messages", 400, json_body=invalid, valid_request=False)
    fields = {e["field"] for e in problem(answer, "validation")["errors"]}
    assert {"to", "channels"} <= fields
    problem(call(local_stack, "POST", "/messages", 400, body="[1,", valid_request=False), "validation")
    unknown = {**both, "idempotency_key": key, "tenant": "nobody"}
    problem(call(local_stack, "POST", "/messages", 404, json_body=unknown), "unknown-tenant")


def test_a_routed_request_shows_its_decision_and_sends(local_stack: StackClient) -> None:
    customer_id, _ = new_contact(local_stack)
    key = f"k-{time.time_ns()}"
    request = {"idempotency_key": key, "to": {"customer_id": customer_id}, "text": "Your order has shipped"}
    request_id = call(local_stack, "POST", "/messages", 202, json_body=request).json()["request_id"]
    path = f"/messages/{request_id}"

    def routed() -> dict[str, Any] | None:
        status = call(local_stack, "GET", path, 200, query={"tenant": TENANT}).json()
        return status if status["decision"] and status["status"] not in ("queued", "sending") else None

    status = eventually(routed)
    assert (status["request_id"], status["idempotency_key"], status["tenant"]) == (request_id, key, TENANT)
    assert status["customer_id"] == customer_id
    assert status["request"]["text"] == "Your order has shipped"
    # No WhatsApp window with a contact known only from a record: the text goes by SMS (R1, R4).
    assert status["chosen"] == "sms"
    assert status["channels"]["sms"]["state"] == "sent"
    timeline = call(local_stack, "GET", f"/contacts/{customer_id}/timeline", 200).json()["items"]
    decisions = [i for i in timeline if i["kind"] == "decision"]
    assert [d["request_id"] for d in decisions] == [request_id]
    assert any(i["kind"] == "message" and i["direction"] == "out" for i in timeline)
    problem(call(local_stack, "GET", "/messages/no-such-request", 404), "not-found")
