"""docs/openapi.yaml describes the contacts and send-request API as it is: a valid OpenAPI 3.1 document,
whose every example fits its schema, whose ``SendRequest`` accepts what ``parse_send_request`` accepts
(and refuses what it refuses, but for what only the server can tell), and which names every route the API
function serves (``functions/contacts_and_messages_api/app.py``, the template's ``HttpApi`` events) and
no other. What the running API answers is checked against it by tests/e2e/test_openapi_conformance.py.
"""

from __future__ import annotations

import ast
import re
from collections.abc import Iterator
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from openapi_spec_validator import validate

from crossroute.routing.request import InvalidRequest, parse_send_request
from infra.template import load_template
from tests.support import REPO, TENANT, openapi_document, openapi_schema_validator

DOCUMENT = openapi_document()
METHODS = ("get", "put", "post", "delete", "patch", "head", "options", "trace")
SEND_REQUEST = "/components/schemas/SendRequest"
CUSTOMER = "3f1c2a9e5b7d4c1e8a6f0b2d4e6a8c0e"
TEMPLATE = {"name": "order_shipped", "language": "en_US", "category": "utility", "components": []}


def schema_errors(pointer: str, instance: Any) -> list[str]:
    errors = openapi_schema_validator(DOCUMENT, pointer).iter_errors(instance)
    return [f"{'/'.join(map(str, e.absolute_path))}: {e.message}" for e in errors]


def parser_problems(doc: Any) -> list[str]:
    """What ``parse_send_request`` finds wrong with ``doc`` (no default tenant: as the bus and queue)."""
    try:
        parse_send_request(doc)
    except InvalidRequest as exc:
        return exc.problems
    return []


# ------------------------------------------------------------------------------------------ the document


def test_the_document_is_valid_openapi_3_1() -> None:
    assert DOCUMENT["openapi"].startswith("3.1.")
    validate(DOCUMENT)  # raises with the first problem


def _escape(segment: str) -> str:
    return segment.replace("~", "~0").replace("/", "~1")


def examples(node: Any, pointer: str = "") -> Iterator[tuple[str, str, Any]]:
    """(where the example is, the pointer of the schema it must fit, the example) for every ``example``
    and ``examples`` of the document: of schemas, of media types and of parameters."""
    if isinstance(node, list):
        for i, item in enumerate(node):
            yield from examples(item, f"{pointer}/{i}")
        return
    if not isinstance(node, dict):
        return
    has_schema = "schema" in node  # a media type or a parameter: its examples fit its schema
    target = f"{pointer}/schema" if has_schema else pointer
    if "example" in node:
        yield f"{pointer}/example", target, node["example"]
    shown = node.get("examples")
    if isinstance(shown, list):  # JSON Schema's examples: instances of this schema
        for i, value in enumerate(shown):
            yield f"{pointer}/examples/{i}", target, value
    elif isinstance(shown, dict):  # OpenAPI's named Example objects
        for name, example in shown.items():
            yield f"{pointer}/examples/{_escape(name)}", target, example.get("value")
    for key, value in node.items():
        if key not in ("example", "examples"):
            yield from examples(value, f"{pointer}/{_escape(key)}")


def test_the_document_has_examples_of_its_main_shapes() -> None:
    targets = {target for _, target, _ in examples(DOCUMENT)}
    for name in ("Contact", "SendRequestBody", "SendStatus", "BatchAnswer", "ConflictProblem"):
        assert f"/components/schemas/{name}" in targets, name
    assert len(targets) >= 20


@pytest.mark.parametrize(("where", "target", "example"), list(examples(DOCUMENT)), ids=lambda v: str(v)[:60])
def test_every_example_fits_its_schema(where: str, target: str, example: Any) -> None:
    assert schema_errors(target, example) == [], where


def responses() -> Iterator[tuple[str, str, str, dict[str, Any]]]:
    """(path, method, status, response) of every operation, ``$ref``s to shared responses followed."""
    shared = DOCUMENT["components"]["responses"]
    for path, item in DOCUMENT["paths"].items():
        for method in METHODS:
            for status, response in item.get(method, {}).get("responses", {}).items():
                if "$ref" in response:
                    response = shared[response["$ref"].rsplit("/", 1)[1]]
                yield path, method, status, response


def test_every_error_is_a_problem_document() -> None:
    errors = [(p, m, s, r) for p, m, s, r in responses() if s.startswith(("4", "5"))]
    assert errors
    for path, method, status, response in errors:
        assert set(response.get("content", {})) == {"application/problem+json"}, (path, method, status)
    operations = {(p, m) for p, m, _, _ in responses()}
    for operation in operations:  # what any route may answer: a bad tenant, a fault, no registry
        statuses = {s for p, m, s, _ in responses() if (p, m) == operation}
        assert {"400", "404", "500", "503"} <= statuses, operation


def test_retry_after_and_location_are_promised() -> None:
    for path, method, status, response in responses():
        headers = response.get("headers", {})
        if status == "503":
            assert headers["Retry-After"]["required"] is True, (path, method)
        if status == "202":
            assert headers["Location"]["required"] is True, (path, method)


# -------------------------------------------------------------------------- the routes of the function


def document_routes() -> set[tuple[str, str]]:
    return {(m.upper(), path) for path, item in DOCUMENT["paths"].items() for m in METHODS if m in item}


def app_routes() -> set[tuple[str, str]]:
    """What ``app.py`` registers with Powertools (``@app.get("/contacts/<customer_id>")``)."""
    source = (REPO / "functions" / "contacts_and_messages_api" / "app.py").read_text()
    routes = set()
    for node in ast.walk(ast.parse(source)):
        if not isinstance(node, ast.FunctionDef):
            continue
        for decorator in node.decorator_list:
            call = decorator if isinstance(decorator, ast.Call) else None
            func = call.func if call else None
            if isinstance(func, ast.Attribute) and func.attr in METHODS and isinstance(func.value, ast.Name):
                assert call is not None and isinstance(call.args[0], ast.Constant)
                path = re.sub(r"<(\w+)>", r"{\1}", str(call.args[0].value))
                routes.add((func.attr.upper(), path))
    return routes


def template_events() -> list[dict[str, Any]]:
    resources = load_template(REPO / "template.yaml")["Resources"]
    events = resources["ContactsAndMessagesApiFunction"]["Properties"]["Events"].values()
    return [e["Properties"] for e in events if e["Type"] == "HttpApi"]


def test_the_document_names_every_route_of_the_api_function_and_no_other() -> None:
    template = {(e["Method"].upper(), e["Path"]) for e in template_events()}
    assert ("POST", "/messages") in template
    assert document_routes() == app_routes(), "docs/openapi.yaml vs app.py"
    assert document_routes() == template, "docs/openapi.yaml vs template.yaml"


def test_deployed_routes_are_iam_authorised_as_the_document_says() -> None:
    scheme = DOCUMENT["components"]["securitySchemes"]["sigv4"]
    assert scheme["x-amazon-apigateway-authtype"] == "awsSigv4"
    assert {"sigv4": []} in DOCUMENT["security"]
    assert all(e["Auth"]["Authorizer"] == "AWS_IAM" for e in template_events())
    assert not any("security" in item.get(m, {}) for item in DOCUMENT["paths"].values() for m in METHODS)


def test_no_webhook_or_local_route_is_in_the_document() -> None:
    assert not [p for p in DOCUMENT["paths"] if p.startswith(("/webhooks", "/_local", "/_sandbox"))]


# ----------------------------------------------------------------- SendRequest vs parse_send_request


def request(**fields: Any) -> dict[str, Any]:
    """A send request of the local tenant to a customer, with ``fields`` (None: the field left out)."""
    doc = {"tenant": TENANT, "idempotency_key": "order-42", "to": {"customer_id": CUSTOMER}, "text": "hi"}
    doc.update(fields)
    return {k: v for k, v in doc.items() if v is not None}


VALID = [
    request(),
    request(to={"phone": "+15550123456"}),
    request(to={"phone": "(650) 555-0123"}),  # national, read in the tenant's region
    request(to={"bsuid": "US.13491208655302741918", "customer_id": None}),
    request(to={"bsuid": "whatsapp:US.1"}),
    request(text=None, template=TEMPLATE),
    request(template={**TEMPLATE, "content_sid": "HX" + "0a" * 16, "variables": {"1": "Alex"}}),
    request(template={"name": "hello", "language": "en", "category": "marketing"}),
    request(channels=["sms", "whatsapp"], reply_to="wamid.1", fallback_after=600),
    request(**{"from": "+15550100002", "fallback_after": 5, "channels": None}),
    request(idempotency_key="order:42/shipped@2026+v=1", text="x" * 4096, unknown="ignored"),
]

INVALID = [
    [],
    request(tenant=""),
    {k: v for k, v in request().items() if k != "tenant"},
    request(idempotency_key="has space"),
    request(idempotency_key="k" * 129),
    {k: v for k, v in request().items() if k != "idempotency_key"},
    request(to={}),
    request(to={"customer_id": ""}),
    request(to="+15550123456"),
    request(to={"customer_id": CUSTOMER, "bsuid": "not-a-bsuid"}),
    request(text=None),
    request(text="   "),
    request(text="x" * 4097),
    request(text=5),
    request(text=None, template={"name": "hello", "language": "en", "category": "promo"}),
    request(template={**TEMPLATE, "components": None}),
    request(template={**TEMPLATE, "content_sid": "HX123"}),
    request(template={**TEMPLATE, "variables": {"1": 2}}),
    request(template="order_shipped"),
    request(channels=[]),
    request(channels=["whatsapp", "whatsapp"]),
    request(channels=["email"]),
    request(channels="sms"),
    request(reply_to=""),
    request(**{"from": "  "}),
    request(**{"from": "x" * 65}),
    request(fallback_after=4),
    request(fallback_after=86_401),
    request(fallback_after=True),
    request(fallback_after="600"),
]

# Only the server can tell: whether a string is a phone number (the phone-number library decides).
PARSER_ONLY = [request(to={"customer_id": CUSTOMER, "phone": "not a phone"})]


@pytest.mark.parametrize("doc", VALID, ids=lambda d: str(d)[:80])
def test_a_request_the_parser_accepts_fits_the_schema(doc: Any) -> None:
    assert parser_problems(doc) == []
    assert schema_errors(SEND_REQUEST, doc) == []


@pytest.mark.parametrize("doc", INVALID, ids=lambda d: str(d)[:80])
def test_a_request_the_parser_refuses_the_schema_refuses(doc: Any) -> None:
    assert parser_problems(doc) != []
    assert schema_errors(SEND_REQUEST, doc) != []


@pytest.mark.parametrize("doc", PARSER_ONLY, ids=lambda d: str(d)[:80])
def test_what_only_the_server_can_tell(doc: Any) -> None:
    assert parser_problems(doc) != []
    assert schema_errors(SEND_REQUEST, doc) == []


# Values both the parser and the schema take, and values both refuse, field by field. ``ABSENT``: the
# field left out. A string that is not a phone is left out on purpose: only the server can tell.
ABSENT = object()
VALID_VALUES: dict[str, list[Any]] = {
    "tenant": [TENANT],
    "idempotency_key": ["k-1", "order:42/shipped@2026+v=1", "k" * 128],
    "to": [
        {"customer_id": CUSTOMER},
        {"phone": "+15550123456"},
        {"bsuid": "US.1"},
        {"bsuid": "whatsapp:US.13491208655302741918", "customer_id": CUSTOMER},
    ],
    "text": ["hi", "x" * 4096],
    "template": [TEMPLATE, {"name": "hello", "language": "en", "category": "marketing"}, ABSENT],
    "channels": [["whatsapp"], ["sms", "whatsapp"], ABSENT],
    "reply_to": ["wamid.1", ABSENT],
    "from": ["+15550100002", "x" * 64, ABSENT],
    "fallback_after": [5, 600, 86_400, ABSENT],
}
INVALID_VALUES: dict[str, list[Any]] = {
    "tenant": ["", 5, ABSENT],
    "idempotency_key": ["a b", "", "k" * 129, 7, ABSENT],
    "to": [{"bsuid": "bad"}, {"customer_id": ""}, {"customer_id": 5}, {}, "x", ABSENT],
    "text": ["", " ", "x" * 4097, 7],
    "template": [{**TEMPLATE, "category": "other"}, {**TEMPLATE, "variables": []}, {}, "t"],
    "channels": [[], ["sms", "sms"], ["fax"], "sms"],
    "reply_to": ["", 3],
    "from": [" ", "x" * 65, 9],
    "fallback_after": [4, 86_401, True, "60", 5.5],
}


def present(doc: dict[str, Any]) -> dict[str, Any]:
    return {name: value for name, value in doc.items() if value is not ABSENT}


@st.composite
def valid_documents(draw: st.DrawFn) -> dict[str, Any]:
    return present({name: draw(st.sampled_from(values)) for name, values in VALID_VALUES.items()})


@st.composite
def documents_with_one_bad_field(draw: st.DrawFn) -> tuple[str, dict[str, Any]]:
    """A valid document with one field swapped for a value both refuse, and that field's name."""
    doc = {name: draw(st.sampled_from(values)) for name, values in VALID_VALUES.items()}
    name = draw(st.sampled_from(sorted(INVALID_VALUES)))
    doc[name] = draw(st.sampled_from(INVALID_VALUES[name]))
    return name, present(doc)


def names(field: str, error: str) -> bool:
    """Whether a schema error is about ``field``: under it, or (a missing required field, an unmatched
    ``oneOf`` at the top) naming it in its message."""
    where, _, message = error.partition(": ")
    return where.split("/")[0] == field or (where == "" and f"'{field}'" in message)


@settings(max_examples=300, deadline=None)
@given(valid_documents())
def test_a_generated_valid_request_is_accepted_by_both(doc: dict[str, Any]) -> None:
    assert parser_problems(doc) == []
    assert schema_errors(SEND_REQUEST, doc) == []


@settings(max_examples=300, deadline=None)
@given(documents_with_one_bad_field())
def test_one_bad_field_is_refused_by_both_and_named_by_both(case: tuple[str, dict[str, Any]]) -> None:
    field, doc = case
    parsed, checked = parser_problems(doc), schema_errors(SEND_REQUEST, doc)
    assert parsed, f"the parser took a bad {field}: {doc}"
    assert checked, f"the schema took a bad {field}: {doc}"
    assert all(p.startswith((f"{field}:", f"{field}.")) for p in parsed), parsed
    assert any(names(field, e) for e in checked), checked


def test_a_post_body_may_leave_tenant_and_key_to_the_deployment_and_the_header() -> None:
    body = {"to": {"phone": "+15550123456"}, "text": "hi"}
    assert schema_errors("/components/schemas/SendRequestBody", body) == []
    assert schema_errors(SEND_REQUEST, body) != []
    assert parse_send_request({**body, "idempotency_key": "k"}, default_tenant=TENANT).tenant == TENANT
