"""The media queue on SQS (``media.MediaJobs``): ingest puts one job per attachment, the media function
backs a failed one off. A standard queue: jobs are idempotent, order does not matter."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING

from crossroute import limits
from crossroute.media import MediaJob

if TYPE_CHECKING:
    from mypy_boto3_sqs import SQSClient


class SqsMediaJobs:
    def __init__(self, client: Callable[[], SQSClient], queue_url: str) -> None:
        self._sqs = client  # made on first need: most events carry no media
        self._url = queue_url

    def enqueue(self, jobs: Sequence[MediaJob]) -> None:
        """Every job on the queue, or raise (the inbound record is then redelivered and queues them again)."""
        bodies = [job.body() for job in jobs]
        packed = limits.packed(
            bodies,
            lambda b: len(b.encode()),
            count=limits.SQS_BATCH_ENTRIES,
            max_bytes=limits.SQS_BATCH_BYTES,
        )
        for chunk in packed:
            answer = self._sqs().send_message_batch(
                QueueUrl=self._url,
                Entries=[{"Id": str(i), "MessageBody": body} for i, body in enumerate(chunk)],
            )
            if answer.get("Failed"):
                raise RuntimeError(f"{len(answer['Failed'])} media jobs not queued")

    def retry_later(self, receipt_handle: str, delay: int) -> None:
        self._sqs().change_message_visibility(
            QueueUrl=self._url, ReceiptHandle=receipt_handle, VisibilityTimeout=delay
        )
