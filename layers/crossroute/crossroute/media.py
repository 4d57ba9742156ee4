"""Inbound media: attachments of stored messages copied into the media bucket, off the ingest path.

Ingest stores a message with its attachments ``pending`` (``stored_media``) and puts one small job per
attachment on the media queue (``MediaJobs``, ``jobs_for``). The media function takes each job
(``MediaConsumer``): ``MediaCopier`` fetches the attachment from the provider (``MediaSource``: Meta's
two-step download with the tenant's token, Twilio's ``MediaUrlN`` with the account's basic auth),
checks its type and size against what the webhook announced, streams it into the bucket
(``MediaObjects``) while hashing it, and records ``stored`` with its size, SHA-256 and object key on
the message (``MediaStates``). A refusal (too large, a type WhatsApp/Twilio do not deliver, a type other
than the one announced, an expired media id) is recorded as ``failed`` at once; a download that fails
otherwise is retried by the queue with a backoff, and recorded ``failed`` on its last receive before
SQS moves it to the media DLQ. An attachment already stored is never fetched again. docs/media.md.

Object keys hold the tenant, the provider and a digest of the provider message id (a WhatsApp message
id embeds the sender's number in base64), never a phone or BSUID. Nothing here imports an AWS SDK.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable, Iterable, Sequence
from dataclasses import asdict, dataclass
from typing import Any, Protocol

from crossroute.inbound import MediaRef
from crossroute.log import child_logger
from crossroute.ports import Delivery

logger = child_logger(__name__)

MB = 1024 * 1024
# Meta's limits per type (WhatsApp Cloud API, "Supported media types"); Twilio's are lower (MMS: 5 MB
# in all, WhatsApp through Twilio: 16 MB). The function's MEDIA_MAX_MEGABYTES caps them all.
MAX_BYTES = {"image": 5 * MB, "sticker": 500 * 1024, "audio": 16 * MB, "video": 16 * MB, "document": 100 * MB}
DEFAULT_MAX_BYTES = 100 * MB
# The media types WhatsApp and Twilio deliver, per message type ("document": any of the document types).
_DOCUMENTS = {
    "application/pdf",
    "application/msword",
    "application/vnd.ms-excel",
    "application/vnd.ms-powerpoint",
    "application/vnd.openxmlformats-officedocument.wordprocessingml.document",
    "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet",
    "application/vnd.openxmlformats-officedocument.presentationml.presentation",
    "application/rtf",
    "text/plain",
    "text/csv",
    "text/calendar",
    "text/vcard",
    "text/x-vcard",
}
ALLOWED_TYPES: dict[str, frozenset[str]] = {
    "image": frozenset({"image/jpeg", "image/png", "image/gif", "image/webp"}),
    "sticker": frozenset({"image/webp"}),
    "audio": frozenset(
        {"audio/aac", "audio/amr", "audio/mpeg", "audio/mp4", "audio/ogg", "audio/opus", "audio/3gpp"}
    ),
    "video": frozenset({"video/mp4", "video/3gpp", "video/quicktime"}),
    "document": frozenset(_DOCUMENTS | {"image/jpeg", "image/png", "image/gif"}),
}
_ALIASES = {"image/jpg": "image/jpeg", "audio/x-aac": "audio/aac", "text/x-vcalendar": "text/calendar"}
_EXTENSIONS = {
    "image/jpeg": ".jpg", "image/png": ".png", "image/gif": ".gif", "image/webp": ".webp",
    "audio/ogg": ".ogg", "audio/mpeg": ".mp3", "audio/mp4": ".m4a", "audio/aac": ".aac", "audio/amr": ".amr",
    "video/mp4": ".mp4", "video/3gpp": ".3gp", "application/pdf": ".pdf", "text/plain": ".txt",
}  # fmt: skip
# Backoff of a failed download: the job comes back after this many seconds (times 4 each receive).
RETRY_BASE_SECONDS = 30
MAX_RETRY_SECONDS = 900
PENDING, STORED, FAILED, PLACEHOLDER = "pending", "stored", "failed", "placeholder"


class Refused(Exception):
    """The attachment is refused for good (recorded ``failed`` with ``reason``, never retried)."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


class TooLarge(Refused):
    def __init__(self) -> None:
        super().__init__("too_large")


def mime(value: str | None) -> str:
    """A media type as compared: no parameters, lower case, common aliases folded."""
    base = (value or "").split(";")[0].strip().lower()
    return _ALIASES.get(base, base)


def object_key(tenant: str, provider: str, message_id: str, index: int, mime_type: str) -> str:
    """``media/<tenant>/<provider>/<digest of the message id>/<index><ext>``: no phone, no BSUID."""
    digest = hashlib.sha256(message_id.encode()).hexdigest()[:40]
    return f"media/{tenant}/{provider}/{digest}/{index}{_EXTENSIONS.get(mime(mime_type), '')}"


def stored_media(
    tenant: str, provider: str, message_id: str, refs: Sequence[MediaRef]
) -> dict[str, dict[str, Any]]:
    """How a message's attachments are first stored, by index: ``pending`` (with the object key they
    will have), or a history ``placeholder`` (Meta shares no media id: nothing to fetch)."""
    out: dict[str, dict[str, Any]] = {}
    for index, ref in enumerate(refs):
        if ref.placeholder:
            out[str(index)] = {"type": ref.type, "state": PLACEHOLDER}
            continue
        key = object_key(tenant, provider, message_id, index, ref.mime_type)
        out[str(index)] = {"type": ref.type, "mime_type": mime(ref.mime_type), "state": PENDING, "key": key}
    return out


@dataclass(frozen=True)
class MediaJob:
    """One attachment to copy: a media queue message (small; no phone, no BSUID, no content)."""

    tenant: str
    provider: str
    message_id: str
    index: int
    type: str
    mime_type: str
    key: str
    media_id: str | None = None
    url: str | None = None
    sha256: str | None = None

    def body(self) -> str:
        return json.dumps({k: v for k, v in asdict(self).items() if v is not None}, separators=(",", ":"))

    @classmethod
    def from_body(cls, body: str) -> MediaJob:
        doc = json.loads(body)
        return cls(**{k: doc.get(k) for k in cls.__dataclass_fields__})


def jobs_for(tenant: str, provider: str, message_id: str, refs: Sequence[MediaRef]) -> list[MediaJob]:
    """One job per attachment there is something to fetch of (placeholders have none)."""
    return [
        MediaJob(
            tenant,
            provider,
            message_id,
            i,
            ref.type,
            mime(ref.mime_type),
            object_key(tenant, provider, message_id, i, ref.mime_type),
            ref.media_id,
            ref.url,
            ref.sha256,
        )
        for i, ref in enumerate(refs)
        if not ref.placeholder
    ]


def max_bytes(media_type: str, cap: int = DEFAULT_MAX_BYTES) -> int:
    return min(MAX_BYTES.get(media_type, MAX_BYTES["document"]), cap)


def check_type(job: MediaJob, delivered: str | None) -> None:
    """``Refused`` unless the type is one WhatsApp/Twilio deliver for the message type, and the
    provider delivers the type the webhook announced."""
    announced = mime(job.mime_type)
    if announced not in ALLOWED_TYPES.get(job.type, ALLOWED_TYPES["document"]):
        raise Refused("type_not_allowed")
    if delivered is not None and mime(delivered) != announced:
        raise Refused("type_mismatch")


def check_size(job: MediaJob, declared: int | None, cap: int) -> None:
    if declared is not None and declared > max_bytes(job.type, cap):
        raise TooLarge()


def retry_delay(receive_count: int, base: int = RETRY_BASE_SECONDS) -> int:
    """Seconds before a failed job comes back: ``base`` times 4 per receive, at most 15 minutes."""
    return int(min(MAX_RETRY_SECONDS, base * 4 ** max(0, receive_count - 1)))


# ---------------------------------------------------------------------- ports


class Download(Protocol):
    """An open download: what the provider says of it, and its bytes as a stream."""

    mime_type: str | None  # the response's content type
    size: int | None  # declared (Meta's file_size, Content-Length)
    sha256: str | None  # Meta's

    def read(self, amount: int = -1) -> bytes: ...

    def close(self) -> None: ...


class MediaSource(Protocol):
    def open(self, job: MediaJob) -> Download:
        """Start the download; ``Refused`` for good (e.g. an expired media id), anything else: retry."""


class MediaObjects(Protocol):
    """The media bucket."""

    def stat(self, key: str) -> tuple[int, str | None] | None:
        """The object's size and recorded SHA-256, or None when there is no such object."""

    def put(self, key: str, stream: Any, mime_type: str, sha256: str | None) -> None:
        """Stream ``stream`` (``read(n)``) into ``key``: memory flat in the object's size."""

    def delete(self, keys: Iterable[str]) -> None: ...

    def link(self, key: str) -> str:
        """A short-lived URL to GET the object with."""


class MediaStates(Protocol):
    """The attachment states on the stored message."""

    def state(self, job: MediaJob) -> dict[str, Any] | None:
        """The attachment's state; None when the message is gone (erased) or never had it."""

    def record(self, job: MediaJob, state: dict[str, Any]) -> bool:
        """Record the attachment's state; False when the message is gone (erased meanwhile)."""


class MediaJobs(Protocol):
    def enqueue(self, jobs: Sequence[MediaJob]) -> None:
        """Put the jobs on the media queue, or raise."""

    def retry_later(self, receipt_handle: str, delay: int) -> None: ...


# ---------------------------------------------------------------------- the use case


class _Hashing:
    """A stream that hashes and counts what is read through it, refusing more than ``limit`` bytes."""

    def __init__(self, source: Download, limit: int) -> None:
        self._source, self._limit = source, limit
        self.sha256 = hashlib.sha256()
        self.size = 0

    def read(self, amount: int = -1) -> bytes:
        chunk = self._source.read(amount if amount and amount > 0 else 1024 * 1024)
        self.size += len(chunk)
        if self.size > self._limit:
            raise TooLarge()
        self.sha256.update(chunk)
        return chunk


@dataclass(frozen=True)
class Copied:
    """What one job did: ``stored``, ``skipped`` (stored before, or its message erased), ``failed``."""

    outcome: str
    reason: str | None = None


class MediaCopier:
    def __init__(
        self, source: MediaSource, objects: MediaObjects, states: MediaStates, *, cap: int = DEFAULT_MAX_BYTES
    ) -> None:
        self._source, self._objects, self._states, self._cap = source, objects, states, cap

    def copy(self, job: MediaJob) -> Copied:
        """Copy one attachment, once: a stored one (or its object already in the bucket) is not
        fetched again. ``Refused`` is recorded as ``failed``; other errors propagate (retry)."""
        state = self._states.state(job)
        if state is None or state.get("state") in (STORED, PLACEHOLDER):
            return Copied("skipped")
        try:
            done = self._stored_before(job) or self._fetch(job)
        except Refused as refused:
            self._states.record(job, {**_base(job), "state": FAILED, "reason": refused.reason})
            logger.warning("media refused", extra={"reason": refused.reason, "type": job.type})
            return Copied(FAILED, refused.reason)
        if not self._states.record(job, done):  # erased while it was copied: the copy goes too
            self._objects.delete([job.key])
            return Copied("skipped", "erased")
        return Copied(STORED)

    def fail(self, job: MediaJob, reason: str) -> None:
        """Record a job that failed for good (its last receive): ``failed`` unless it was stored."""
        state = self._states.state(job)
        if state is not None and state.get("state") == PENDING:
            self._states.record(job, {**_base(job), "state": FAILED, "reason": reason})

    def _stored_before(self, job: MediaJob) -> dict[str, Any] | None:
        """An object left by an attempt that stopped before recording it: recorded, not fetched again."""
        found = self._objects.stat(job.key)
        if found is None:
            return None
        return {**_base(job), "state": STORED, "size": found[0], "sha256": found[1]}

    def _fetch(self, job: MediaJob) -> dict[str, Any]:
        check_type(job, None)
        download = self._source.open(job)
        try:
            check_type(job, download.mime_type)
            check_size(job, download.size, self._cap)
            reader = _Hashing(download, max_bytes(job.type, self._cap))
            self._objects.put(job.key, reader, mime(job.mime_type), download.sha256)
        finally:
            download.close()
        digest = reader.sha256.hexdigest()
        if download.sha256 and download.sha256.lower() != digest:
            self._objects.delete([job.key])
            raise Refused("sha256_mismatch")
        return {**_base(job), "state": STORED, "size": reader.size, "sha256": digest}


def _base(job: MediaJob) -> dict[str, Any]:
    return {"type": job.type, "mime_type": mime(job.mime_type), "key": job.key}


class MediaConsumer:
    """The media queue's consumer: a job that fails for now comes back after ``retry_delay`` (the record
    is reported failed); on its last receive (``max_receives``, the queue's ``maxReceiveCount``) it is
    recorded ``failed`` (``download_failed``) and made visible at once: SQS moves it to the media DLQ."""

    def __init__(
        self,
        copier: MediaCopier,
        jobs: Callable[[], MediaJobs],
        *,
        max_receives: int,
        retry_base: int = RETRY_BASE_SECONDS,
    ) -> None:
        self._copier, self._jobs = copier, jobs
        self._max_receives, self._retry_base = max_receives, retry_base

    def consume(self, delivery: Delivery) -> Copied:
        job = MediaJob.from_body(delivery.body)
        try:
            return self._copier.copy(job)
        except Exception as exc:
            reason = type(exc).__name__  # never the message: it may quote a URL
            last = delivery.receive_count >= self._max_receives
            # The last time: visible again at once, so that SQS moves it to the DLQ on the next receive.
            delay = 0 if last else retry_delay(delivery.receive_count, self._retry_base)
            if last:
                self._copier.fail(job, "download_failed")
            if delivery.receipt_handle:
                self._jobs().retry_later(delivery.receipt_handle, delay)
            logger.warning("media download failed", extra={"reason": reason, "in": delay, "last": last})
            raise


def timeline_view(stored: dict[str, Any] | None, link: Callable[[str], str] | None) -> dict[str, Any]:
    """The timeline's ``media`` (the first attachment) and ``attachments`` (every one, when there are
    several): ``{type, mime_type, size, sha256, url}`` once stored (``url``: a short-lived link),
    else ``{type, state}`` (``pending``, ``placeholder``, or ``failed`` with its ``reason``)."""
    if not stored:
        return {}
    views = [_view(stored[i], link) for i in sorted(stored, key=int)]
    return {"media": views[0], **({"attachments": views} if len(views) > 1 else {})}


def _view(item: dict[str, Any], link: Callable[[str], str] | None) -> dict[str, Any]:
    view = {k: item[k] for k in ("type", "mime_type", "state", "reason") if item.get(k) is not None}
    if item.get("state") == STORED:
        view.update(size=item.get("size"), sha256=item.get("sha256"))
        view["url"] = link(str(item["key"])) if link else None
    return view


def stored_keys(media: Iterable[dict[str, Any]]) -> tuple[list[str], int]:
    """Every object key of these attachments (pending ones too: a copy may land meanwhile) and how
    many were stored."""
    items = list(media)
    keys = [str(m["key"]) for m in items if m.get("key")]
    return keys, sum(1 for m in items if m.get("state") == STORED)
