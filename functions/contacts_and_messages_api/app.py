"""The HTTP API (IAM-authorised when deployed): contacts by phone, BSUID or id, their timeline, erasure
(I10), and ``POST /messages`` - a send request, answered with its ``request_id`` and queued for dispatch."""

import json
from datetime import UTC, datetime
from functools import cache
from typing import TYPE_CHECKING
from uuid import uuid4

import boto3
from aws_lambda_powertools import Logger
from aws_lambda_powertools.event_handler import APIGatewayHttpResolver, Response
from aws_lambda_powertools.event_handler.exceptions import BadRequestError, NotFoundError
from aws_lambda_powertools.utilities.typing import LambdaContext

from crossroute import ids
from crossroute.config import RegistrySource, masking_key, require_env
from crossroute.contacts import contact_view, timeline_entry
from crossroute.identity.model import Customer, Key
from crossroute.routing.request import InvalidRequest, parse_send_request
from crossroute.store import tables
from crossroute.store.identity_store import DynamoIdentityStore
from crossroute.store.sends import DynamoSendStore

if TYPE_CHECKING:
    from mypy_boto3_sqs import SQSClient

logger = Logger()
app = APIGatewayHttpResolver()
tables.bind(require_env("TABLE_NAME"))
store = DynamoIdentityStore(masking_key=masking_key(require_env("MASKING_KEY_SECRET_ID")))
registry = RegistrySource.from_secret(require_env("TENANTS_SECRET_ID"))
sends = DynamoSendStore()


@cache
def _sqs() -> "SQSClient":
    """Only POST /messages queues: reading contacts does not pay for an SQS client at cold start."""
    return boto3.client("sqs")


def _tenant() -> str:
    """The ``tenant`` parameter, or the deployment's only tenant."""
    asked = app.current_event.get_query_string_value("tenant")
    known = [t.id for t in registry.get().tenants]
    if asked:
        if asked not in known:
            raise NotFoundError("unknown tenant")
        return asked
    if len(known) != 1:
        raise BadRequestError("several tenants: say which with ?tenant=")
    return known[0]


def _customer(tenant: str, customer_id: str) -> Customer:
    customer = store.customer(tenant, customer_id)
    if customer is None:
        raise NotFoundError("no such contact")
    return customer


@app.get("/contacts")
def find_contact() -> dict:
    tenant, query = _tenant(), app.current_event.query_string_parameters or {}
    asked = {name: query[name] for name in ("phone", "bsuid", "id") if query.get(name)}
    if len(asked) != 1:
        raise BadRequestError("give exactly one of phone, bsuid, id")
    (name, value), tenant_region = next(iter(asked.items())), _region(tenant)
    try:
        if name == "id":
            return contact_view(_customer(tenant, value))
        key = (
            Key("phone", ids.e164(value, tenant_region))
            if name == "phone"
            else Key("bsuid", ids.bsuid(value))
        )
    except ids.InvalidIdentifier as exc:
        raise BadRequestError(f"{name}: {exc}") from None
    holder = store.holders(tenant, [key]).get(key)
    if holder is None:
        raise NotFoundError("no such contact")
    return contact_view(holder)


@app.get("/contacts/<customer_id>/timeline")
def timeline(customer_id: str) -> dict:
    tenant = _tenant()
    customer = _customer(tenant, customer_id)
    raw_limit = app.current_event.get_query_string_value("limit", "50") or "50"
    if not raw_limit.isdigit() or not 1 <= int(raw_limit) <= 200:
        raise BadRequestError("limit: 1-200")
    before = app.current_event.get_query_string_value("next")
    items, cursor = store.timeline(
        tenant, [customer.id, *customer.merged_from], before=before, limit=int(raw_limit)
    )
    return {"customer_id": customer.id, "items": [timeline_entry(i) for i in items], "next": cursor}


@app.delete("/contacts/<customer_id>")
def erase(customer_id: str) -> Response[str]:
    tenant = _tenant()
    deleted = store.erase(tenant, _customer(tenant, customer_id))
    logger.info("contact erased", extra={"tenant": tenant, "items": deleted})
    return Response(204, "application/json", "")


@app.post("/messages")
def post_message() -> Response[str]:
    """Contract §7: 202 with the request id; the same idempotency key again answers the same id."""
    try:
        doc = json.loads(app.current_event.decoded_body or "")
    except ValueError:
        raise BadRequestError("the body must be a JSON send request") from None
    if isinstance(doc, dict) and not doc.get("tenant"):
        doc = {**doc, "tenant": _tenant()}
    tenant = doc.get("tenant") if isinstance(doc, dict) else None
    if tenant not in {t.id for t in registry.get().tenants}:
        raise NotFoundError("unknown tenant")
    try:
        request = parse_send_request(doc, default_region=_region(str(tenant)))
    except InvalidRequest as exc:
        return Response(
            400, "application/json", json.dumps({"message": "invalid send request", "errors": exc.problems})
        )
    request_id = sends.accept(
        tenant=request.tenant,
        key=request.idempotency_key,
        request_id=uuid4().hex,
        request=request.raw,
        now=datetime.now(UTC),
    )
    # Queued after it is recorded: a retry of this POST queues it again, and dispatch is idempotent.
    _sqs().send_message(QueueUrl=require_env("SEND_QUEUE_URL"), MessageBody=json.dumps(request.raw))
    logger.info("send request queued", extra={"tenant": request.tenant, "request_id": request_id})
    return Response(202, "application/json", json.dumps({"request_id": request_id}))


def _region(tenant: str) -> str:
    return next(t.default_region for t in registry.get().tenants if t.id == tenant)


@logger.inject_lambda_context
def lambda_handler(event: dict, context: LambdaContext) -> dict:
    return app.resolve(event, context)
