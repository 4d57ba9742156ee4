"""The HTTP API (IAM-authorised when deployed): contacts by phone, BSUID or id, their timeline, erasure
(I10), ``POST /messages`` (the send door, ``crossroute.send_door``) and ``GET /messages/{request_id}``.
Every error is an RFC 9457 problem document (``crossroute.api_problems``); docs/openapi.yaml describes it
all."""

import json
from collections import Counter
from functools import cache
from typing import TYPE_CHECKING
from urllib.parse import quote

import boto3
from aws_lambda_powertools import Logger
from aws_lambda_powertools.event_handler import APIGatewayHttpResolver, Response
from aws_lambda_powertools.event_handler.exceptions import NotFoundError
from aws_lambda_powertools.utilities.typing import LambdaContext
from botocore.config import Config

from crossroute import correlation, privacy
from crossroute.api_problems import CONTENT_TYPE, ApiProblem, field_problems
from crossroute.bus import BusEvent, EventBridgePublisher
from crossroute.config import RegistrySource, RegistryUnavailable, masking_key, require_env
from crossroute.contacts import BadQuery, Busy, Contacts, NoSuchContact, RecordAnswer, contact_view
from crossroute.metrics import EmfMetrics
from crossroute.ports import IdempotencyKeyReused
from crossroute.routing.request import InvalidRequest
from crossroute.send_door import SendDoor, UnknownTenant
from crossroute.send_queue import SqsSendQueue
from crossroute.store import tables
from crossroute.store.identity_store import DynamoIdentityStore
from crossroute.store.media_store import S3MediaObjects
from crossroute.store.sends import DynamoSendStore
from crossroute.tenants import Tenant

if TYPE_CHECKING:
    from collections.abc import Sequence

    from mypy_boto3_sqs import SQSClient

logger = Logger()
app = APIGatewayHttpResolver()
tables.bind(require_env("TABLE_NAME"))
# One key, read on first need: the erasure tombstones' keyed hashes, and the fingerprints in log lines.
key = masking_key(require_env("MASKING_KEY_SECRET_ID"))
privacy.configure(key)


@cache
def media_objects() -> S3MediaObjects:
    """The media bucket: the timeline's short-lived links and erasure's deletes (made on first need)."""
    s3 = boto3.client("s3", config=Config(signature_version="s3v4"))
    return S3MediaObjects(s3, require_env("MEDIA_BUCKET_NAME"))


store = DynamoIdentityStore(masking_key=key, media_objects=media_objects)
metrics = EmfMetrics.for_function()
registry = RegistrySource.from_secret(
    require_env("TENANTS_SECRET_ID"), on_invalid=lambda reason: metrics.count("RegistryInvalid")
)


@cache
def _sqs() -> "SQSClient":
    """Only POST /messages queues: reading contacts does not pay for an SQS client at cold start."""
    return boto3.client("sqs")


@cache
def _bus() -> EventBridgePublisher:
    """Only an erasure publishes (``CustomerErased``): reading contacts does not pay for the client."""
    return EventBridgePublisher(boto3.client("events"), require_env("EVENT_BUS_NAME"))


class _Bus:
    def publish(self, events: "Sequence[BusEvent]") -> None:
        _bus().publish(events)


contacts = Contacts(store, events=_Bus(), media_links=lambda k: media_objects().link(k))
door = SendDoor(
    DynamoSendStore(store), SqsSendQueue(lambda: _sqs(), require_env("SEND_QUEUE_URL")), registry.get
)


def _tenant(named: object = None) -> Tenant:
    """The tenant ``named`` (a body's ``tenant``), else the ``tenant`` parameter's, else the deployment's
    only tenant."""
    asked = named if isinstance(named, str) and named else app.current_event.get_query_string_value("tenant")
    tenants = registry.get().tenants
    if asked:
        tenant = registry.get().by_id(asked)
        if tenant is None:
            raise ApiProblem("unknown-tenant", "this deployment has no such tenant")
        return tenant
    if len(tenants) != 1:
        raise ApiProblem("tenant-required", "this deployment has several tenants: name one with ?tenant=")
    return tenants[0]


@app.get("/contacts")
def find_contact() -> dict:
    tenant = _tenant()
    query = app.current_event.query_string_parameters or {}
    return contacts.find(tenant.id, query, region=tenant.default_region)


def _json_body(what: str) -> dict:
    try:
        doc = json.loads(app.current_event.decoded_body or "")
    except ValueError:
        doc = None
    if not isinstance(doc, dict):
        problem = f"must be {what} (a JSON object)"
        raise ApiProblem("validation", f"the body {problem}", errors=[{"field": "body", "problem": problem}])
    return doc


@app.post("/contacts")
def upsert_contact() -> Response[str]:
    """I11: 201 created, 200 updated or unchanged (with the contact), 409 naming the other customer."""
    doc = _json_body("a contact record")
    tenant = _tenant(doc.get("tenant"))
    (answer,) = contacts.upsert(tenant.id, [doc], region=tenant.default_region)
    _log_upserts(tenant.id, [answer], dry_run=False)
    body: dict = answer.as_doc()
    if answer.outcome == "invalid":
        raise ApiProblem("validation", "invalid contact record", **body)
    if answer.outcome == "conflict":
        raise ApiProblem("conflict", "a key of the record is held by another customer", **body)
    if answer.customer is not None:
        body["contact"] = contact_view(answer.customer)
    return Response(answer.status, "application/json", json.dumps(body))


@app.post("/contacts/batch")
def upsert_contacts() -> Response[str]:
    """Up to 100 records a request, each as ``POST /contacts`` would: 200 with an answer per record."""
    doc = _json_body('{"records": [...]}')
    records, dry_run = doc.get("records"), doc.get("dry_run", False)
    errors = []
    if not isinstance(records, list):
        errors.append({"field": "records", "problem": "a list of contact records"})
    if not isinstance(dry_run, bool):
        errors.append({"field": "dry_run", "problem": "true or false"})
    if errors:
        raise ApiProblem("validation", "invalid batch of contact records", errors=errors)
    tenant = _tenant(doc.get("tenant"))
    answers = contacts.upsert(tenant.id, records, region=tenant.default_region, dry_run=dry_run)
    _log_upserts(tenant.id, answers, dry_run=dry_run)
    results = [{"index": i, **a.as_doc()} for i, a in enumerate(answers)]
    return Response(200, "application/json", json.dumps({"dry_run": dry_run, "results": results}))


def _log_upserts(tenant: str, answers: list[RecordAnswer], *, dry_run: bool) -> None:
    outcomes = Counter(a.outcome for a in answers)
    logger.info(
        "contact records upserted", extra={"tenant": tenant, "dry_run": dry_run, "outcomes": outcomes}
    )


@app.get("/contacts/<customer_id>/timeline")
def timeline(customer_id: str) -> dict:
    query = app.current_event
    return contacts.timeline(
        _tenant().id,
        customer_id,
        limit=query.get_query_string_value("limit"),
        before=query.get_query_string_value("next"),
    )


@app.delete("/contacts/<customer_id>")
def erase(customer_id: str) -> Response[str]:
    """I10. Logged with the caller (the IAM principal API Gateway authenticated) and counts only."""
    tenant = _tenant().id
    context = app.current_event.raw_event.get("requestContext") or {}
    with correlation.scope(context.get("requestId")):  # in CustomerErased as correlation_id
        erased = contacts.erase(tenant, customer_id)
    caller = ((context.get("authorizer") or {}).get("iam") or {}).get("userArn")
    logger.info(
        "contact erased",
        extra={
            "tenant": tenant,
            "customer_id": erased["customer_id"],
            "merged_from": erased["merged_from"],
            "caller": caller or "unauthenticated (no IAM principal: the local stack)",
            **erased["counts"],
        },
    )
    return Response(204, "application/json", "")


@app.post("/messages")
def post_message() -> Response[str]:
    """202 with the request id and its ``Location``; the same idempotency key (the body's, or the
    ``Idempotency-Key`` header) with the same request again answers the same id, with another: 422."""
    doc = _json_body("a send request")
    try:
        request_id = door.accept(doc, default_tenant=lambda: _tenant().id, key=_idempotency_key_header())
    except UnknownTenant:
        raise ApiProblem("unknown-tenant", "this deployment has no such tenant") from None
    except InvalidRequest as exc:
        raise ApiProblem("validation", "invalid send request", errors=field_problems(exc.problems)) from None
    except IdempotencyKeyReused as exc:
        detail = "this idempotency key was used for a different request: use a new key for a new request"
        raise ApiProblem("idempotency-key-reused", detail, request_id=exc.request_id) from None
    location = f"/messages/{quote(request_id)}"
    if len(registry.get().tenants) > 1:
        location += f"?tenant={quote(doc.get('tenant') or '')}"
    body = json.dumps({"request_id": request_id})
    return Response(202, "application/json", body, headers={"Location": location})


def _idempotency_key_header() -> str | None:
    """The ``Idempotency-Key`` header: a Structured Field string (quoted), or the bare key."""
    value = app.current_event.headers.get("idempotency-key")
    if value is None:
        return None
    value = value.strip()
    return value[1:-1] if len(value) >= 2 and value[0] == value[-1] == '"' else value


@app.get("/messages/<request_id>")
def message_status(request_id: str) -> dict:
    """The send request, its decision (R9), each channel's send and provider status."""
    found = door.progress(_tenant().id, request_id)
    if found is None:
        raise ApiProblem("not-found", "no send request with this id")
    return found


@app.exception_handler(ApiProblem)
def problem(exc: ApiProblem) -> Response[str]:
    return Response(exc.status, CONTENT_TYPE, exc.body(), headers=exc.headers())


@app.not_found
def no_route(exc: NotFoundError) -> Response[str]:
    event = app.current_event
    return problem(ApiProblem("not-found", f"no route {event.http_method} {event.path}"))


@app.exception_handler(NoSuchContact)
def not_found(exc: NoSuchContact) -> Response[str]:
    return problem(ApiProblem("not-found", str(exc)))


@app.exception_handler(Busy)
def busy(exc: Busy) -> Response[str]:
    return problem(ApiProblem("busy", str(exc)))


@app.exception_handler(BadQuery)
def bad_query(exc: BadQuery) -> Response[str]:
    return problem(ApiProblem("validation", str(exc), errors=[{"field": "query", "problem": str(exc)}]))


@app.exception_handler(RegistryUnavailable)
def registry_unavailable(exc: RegistryUnavailable) -> Response[str]:
    """No usable tenant registry (contract §11): 503, so that the caller retries; never a 500."""
    logger.warning("no usable tenant registry: 503", extra={"reason": "registry_unavailable"})
    return problem(ApiProblem("registry-unavailable", "no usable tenant registry is loaded: try again"))


@app.exception_handler(Exception)
def internal(exc: Exception) -> Response[str]:
    """Anything unforeseen: logged with its traceback, answered as a 500 problem (no details)."""
    logger.exception("unhandled error: 500", extra={"error": type(exc).__name__})
    return problem(ApiProblem("internal", "an unexpected error: it is logged; try again later"))


@logger.inject_lambda_context
def lambda_handler(event: dict, context: LambdaContext) -> dict:
    try:
        return app.resolve(event, context)
    finally:
        metrics.flush()
