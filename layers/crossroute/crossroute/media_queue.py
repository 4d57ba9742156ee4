"""The media queue on SQS (``media.MediaJobs``): ingest puts one job per attachment, the media function
backs a failed one off. A standard queue: jobs are idempotent, order does not matter."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING

from crossroute.media import MediaJob

if TYPE_CHECKING:
    from mypy_boto3_sqs import SQSClient

BATCH = 10  # SendMessageBatch's limit


class SqsMediaJobs:
    def __init__(self, client: Callable[[], SQSClient], queue_url: str) -> None:
        self._sqs = client  # made on first need: most events carry no media
        self._url = queue_url

    def enqueue(self, jobs: Sequence[MediaJob]) -> None:
        """Every job on the queue, or raise (the inbound record is then redelivered and queues them again)."""
        for start in range(0, len(jobs), BATCH):
            chunk = jobs[start : start + BATCH]
            answer = self._sqs().send_message_batch(
                QueueUrl=self._url,
                Entries=[{"Id": str(i), "MessageBody": job.body()} for i, job in enumerate(chunk)],
            )
            if answer.get("Failed"):
                raise RuntimeError(f"{len(answer['Failed'])} media jobs not queued")

    def retry_later(self, receipt_handle: str, delay: int) -> None:
        self._sqs().change_message_visibility(
            QueueUrl=self._url, ReceiptHandle=receipt_handle, VisibilityTimeout=delay
        )
