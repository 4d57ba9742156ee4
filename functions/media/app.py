"""Media queue consumer: each job copies one inbound attachment from the provider into the media bucket
(``crossroute.media.MediaConsumer``: the download, its checks, the backoff and the last receive)."""

from functools import cache
from typing import TYPE_CHECKING

import boto3
from aws_lambda_powertools import Logger
from aws_lambda_powertools.utilities.batch import BatchProcessor, EventType, process_partial_response
from aws_lambda_powertools.utilities.data_classes.sqs_event import SQSRecord
from aws_lambda_powertools.utilities.typing import LambdaContext
from botocore.config import Config

from crossroute.config import RegistrySource, optional_env, require_env
from crossroute.media import RETRY_BASE_SECONDS, MediaConsumer, MediaCopier, MediaJobs
from crossroute.media_fetch import ProviderMedia
from crossroute.media_queue import SqsMediaJobs
from crossroute.metrics import EmfMetrics
from crossroute.ports import Delivery
from crossroute.store import tables
from crossroute.store.media_store import DynamoMediaStates, S3MediaObjects

if TYPE_CHECKING:
    from mypy_boto3_sqs import SQSClient

logger = Logger()
metrics = EmfMetrics.for_function()
# A batch whose every job failed is reported record by record too: a provider down is the jobs' backoff
# and the DLQ's business, not an invocation error (MediaFunctionErrorsAlarm is for crashes).
processor = BatchProcessor(event_type=EventType.SQS, raise_on_entire_batch_failure=False)
tables.bind(require_env("TABLE_NAME"))

registry = RegistrySource.from_secret(
    require_env("TENANTS_SECRET_ID"), on_invalid=lambda reason: metrics.count("RegistryInvalid")
)


@cache
def _sqs() -> "SQSClient":
    """One SQS client per container, made on first need: only a download that failed needs the queue
    (its backoff), not every cold start."""
    return boto3.client("sqs")


@cache
def jobs() -> MediaJobs:
    return SqsMediaJobs(_sqs, require_env("MEDIA_QUEUE_URL"))


copier = MediaCopier(
    ProviderMedia(
        lambda tenant: registry.get().by_id(tenant),
        graph_base_url=optional_env("META_GRAPH_BASE_URL"),
        graph_version=optional_env("GRAPH_API_VERSION"),
        twilio_base_url=optional_env("TWILIO_API_BASE_URL"),
    ),
    S3MediaObjects(
        boto3.client("s3", config=Config(signature_version="s3v4")), require_env("MEDIA_BUCKET_NAME")
    ),
    DynamoMediaStates(),
    cap=int(optional_env("MEDIA_MAX_MEGABYTES", "100")) * 1024 * 1024,
)
consumer = MediaConsumer(
    copier,
    jobs,
    # The media queue's maxReceiveCount (a test checks they agree): on that receive a failing job is
    # recorded failed, then SQS moves it to the media DLQ.
    max_receives=int(optional_env("MEDIA_MAX_RECEIVES", "5")),
    retry_base=int(optional_env("MEDIA_RETRY_BASE_SECONDS", str(RETRY_BASE_SECONDS))),
)


def record_handler(record: SQSRecord) -> None:
    copied = consumer.consume(
        Delivery(
            record.body,
            record.message_id,
            int(record.attributes.approximate_receive_count),
            receipt_handle=record.receipt_handle,
        )
    )
    logger.info("media", extra={"outcome": copied.outcome, "reason": copied.reason})


@logger.inject_lambda_context
def lambda_handler(event: dict, context: LambdaContext) -> dict:
    try:
        return process_partial_response(
            event=event, record_handler=record_handler, processor=processor, context=context
        )
    finally:
        metrics.flush()
