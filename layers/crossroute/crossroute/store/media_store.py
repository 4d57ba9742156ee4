"""The media bucket (S3) and the attachment states on the stored messages (DynamoDB): the adapters of
``crossroute.media``'s ``MediaObjects`` and ``MediaStates``.

Uploads stream: ``upload_fileobj`` reads the download ``CHUNK`` bytes at a time and sends a multipart
upload once an object passes ``CHUNK``, holding at most ``IN_MEMORY_CHUNKS`` chunks, so a function's
memory does not grow with the object (``python -m infra.bench --section media-memory``).
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any, cast

from botocore.exceptions import ClientError
from pynamodb.exceptions import UpdateError

from crossroute.media import MediaJob
from crossroute.store.tables import MSG, MessageItem, message_pk

CHUNK = 8 * 1024 * 1024  # S3's multipart part size here (its minimum is 5 MiB)
IN_MEMORY_CHUNKS = 2
LINK_SECONDS = 600  # how long a timeline's media URL works


class S3MediaObjects:
    """``MediaObjects`` on one bucket (default encryption, public access blocked, TLS only). ``s3``: a
    boto3 S3 client (SigV4, which presigned URLs need)."""

    def __init__(self, s3: Any, bucket: str, *, link_seconds: int = LINK_SECONDS) -> None:
        self._s3, self._bucket, self._link_seconds = s3, bucket, link_seconds

    def stat(self, key: str) -> tuple[int, str | None] | None:
        try:
            head = self._s3.head_object(Bucket=self._bucket, Key=key)
        except ClientError as exc:
            if exc.response.get("Error", {}).get("Code") in ("404", "NoSuchKey", "NotFound"):
                return None
            raise
        return int(head["ContentLength"]), head.get("Metadata", {}).get("sha256")

    def put(self, key: str, stream: Any, mime_type: str, sha256: str | None) -> None:
        from boto3.s3.transfer import TransferConfig

        config = TransferConfig(
            multipart_threshold=CHUNK, multipart_chunksize=CHUNK, max_concurrency=2, io_chunksize=256 * 1024
        )
        config.max_in_memory_upload_chunks = IN_MEMORY_CHUNKS  # s3transfer's: not in boto3's signature
        extra: dict[str, Any] = {"ContentType": mime_type}
        if sha256:
            extra["Metadata"] = {"sha256": sha256.lower()}  # the provider's: checked once read
        self._s3.upload_fileobj(stream, self._bucket, key, ExtraArgs=extra, Config=config)

    def delete(self, keys: Iterable[str]) -> None:
        wanted = list(dict.fromkeys(keys))
        for start in range(0, len(wanted), 1000):  # DeleteObjects' limit
            chunk = wanted[start : start + 1000]
            answer = self._s3.delete_objects(
                Bucket=self._bucket, Delete={"Objects": [{"Key": k} for k in chunk], "Quiet": True}
            )
            if answer.get("Errors"):
                raise RuntimeError(f"{len(answer['Errors'])} media objects not deleted")

    def link(self, key: str) -> str:
        return str(
            self._s3.generate_presigned_url(
                "get_object", Params={"Bucket": self._bucket, "Key": key}, ExpiresIn=self._link_seconds
            )
        )


class DynamoMediaStates:
    """``MediaStates``: the ``media`` map of a message item, one index at a time."""

    def state(self, job: MediaJob) -> dict[str, Any] | None:
        pk = message_pk(job.tenant, job.provider, job.message_id)
        try:
            item = MessageItem.get(pk, MSG, consistent_read=True, attributes_to_get=["media"])
        except MessageItem.DoesNotExist:
            return None
        media = item.media.as_dict() if item.media is not None else {}
        found = media.get(str(job.index))
        return cast(dict[str, Any], found) if isinstance(found, dict) else None

    def record(self, job: MediaJob, state: dict[str, Any]) -> bool:
        pk = message_pk(job.tenant, job.provider, job.message_id)
        path = MessageItem.media[str(job.index)]
        try:
            MessageItem._get_connection().update_item(
                pk,
                MSG,
                actions=[path.set({k: v for k, v in state.items() if v is not None})],
                condition=path.exists(),
            )
        except UpdateError as exc:
            if exc.cause_response_code == "ConditionalCheckFailedException":
                return False
            raise
        return True
