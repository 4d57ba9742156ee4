"""Send queue consumer: send requests (the queue, EventBridge ``SendMessage``, ``POST /messages``) and
failed WhatsApp statuses (EventBridge ``MessageStatusChanged``, for the SMS fallback R7)."""

import json
import os
from functools import cache
from typing import TYPE_CHECKING

import boto3
from aws_lambda_powertools import Logger
from aws_lambda_powertools.utilities.batch import BatchProcessor, EventType, process_partial_response
from aws_lambda_powertools.utilities.data_classes.sqs_event import SQSRecord
from aws_lambda_powertools.utilities.typing import LambdaContext

from crossroute.bus import EventBridgePublisher
from crossroute.channels.setup import tenant_setup
from crossroute.config import RegistrySource, require_env
from crossroute.dispatch import Dispatch, RetryLater, TenantSetup, Unsettled, retry_delay
from crossroute.routing.pacing import Pacer
from crossroute.store import tables
from crossroute.store.identity_store import DynamoIdentityStore
from crossroute.store.sends import DynamoSendStore

if TYPE_CHECKING:
    from mypy_boto3_sqs import SQSClient

logger = Logger()
processor = BatchProcessor(event_type=EventType.SQS)
tables.bind(require_env("TABLE_NAME"))
registry = RegistrySource.from_secret(require_env("TENANTS_SECRET_ID"))
_setups: dict[str, TenantSetup] = {}


@cache
def _sqs() -> "SQSClient":
    """Only a send retried later or carried forward needs the send queue: not every cold start."""
    return boto3.client("sqs")


def setup_of(tenant_id: str) -> TenantSetup | None:
    """The tenant's channels and provider clients, built once per container (clients keep connections)."""
    if tenant_id not in _setups:
        tenant = next((t for t in registry.get().tenants if t.id == tenant_id), None)
        if tenant is None:
            return None
        _setups[tenant_id] = tenant_setup(
            tenant,
            public_base_url=os.environ.get("PUBLIC_BASE_URL", ""),
            graph_version=os.environ.get("GRAPH_API_VERSION", "v24.0"),
            graph_base_url=os.environ.get("META_GRAPH_BASE_URL") or "https://graph.facebook.com",
            twilio_base_url=os.environ.get("TWILIO_API_BASE_URL") or None,
        )
    return _setups[tenant_id]


dispatch = Dispatch(
    DynamoIdentityStore(),
    DynamoSendStore(),
    setup_of,
    EventBridgePublisher(boto3.client("events"), require_env("EVENT_BUS_NAME")),
    # Each container's share of a number's rate: the send queue feeds at most this many at once.
    pacer=Pacer(int(os.environ.get("DISPATCH_CONCURRENCY", "10"))),
)


FOLLOW_UP = "crossroute:settle"  # a follow-up: a settlement to record, then the body to handle again


def record_handler(record: SQSRecord) -> None:
    body = json.loads(record.body)
    if isinstance(body, dict) and FOLLOW_UP in body:
        dispatch.settle(body[FOLLOW_UP])
        body = body["then"]
    try:
        _dispatch(body)
    except RetryLater as exc:
        # Back off with jitter instead of the queue's fixed visibility timeout, then fail this record.
        delay = retry_delay(int(record.attributes.approximate_receive_count), after=exc.after)
        _sqs().change_message_visibility(
            QueueUrl=require_env("SEND_QUEUE_URL"),
            ReceiptHandle=record.receipt_handle,
            VisibilityTimeout=delay,
        )
        logger.info("send refused for now, retried later", extra={"delay_s": delay})
        raise
    except Unsettled as exc:
        # The provider answered but the table did not take it: the follow-up carries the answer, and
        # this record is done. If the follow-up cannot be queued either, this record fails and is retried.
        count = int(record.attributes.approximate_receive_count)
        delay = retry_delay(count, after=exc.after) if exc.later else 0
        try:
            _sqs().send_message(
                QueueUrl=require_env("SEND_QUEUE_URL"),
                MessageBody=json.dumps({FOLLOW_UP: exc.settlement.as_doc(), "then": body}),
                DelaySeconds=min(delay, 900),
            )
        except Exception:
            # Both stores failed: the claim stays "sending" and is never sent again (R8), but what the
            # provider answered is lost. Say so, without personal data.
            settlement = exc.settlement
            logger.error(
                "send outcome could not be recorded nor carried forward",
                extra={
                    "result": settlement.result,
                    "channel": settlement.claim.channel,
                    "attempt": settlement.claim.attempt,
                },
            )
            raise
        logger.warning("send outcome carried forward on the send queue", extra={"delay_s": delay})


def _dispatch(body: dict) -> None:
    kind = body.get("detail-type") if isinstance(body, dict) else None
    if kind == "MessageStatusChanged":  # a failed WhatsApp status (the rule filters): R7
        detail = body["detail"]
        code = next((e.get("code") for e in detail.get("errors") or []), None)
        result = dispatch.fallback(detail["tenant"], detail["provider"], detail["message_id"], code)
    else:
        result = dispatch.send(body["detail"] if kind == "SendMessage" else body)
    logger.info(
        "dispatched",
        extra={
            "request_id": result.request_id,
            "sent": sorted(result.sent),
            "undeliverable": result.undeliverable,
        },
    )


@logger.inject_lambda_context
def lambda_handler(event: dict, context: LambdaContext) -> dict:
    return process_partial_response(
        event=event, record_handler=record_handler, processor=processor, context=context
    )
