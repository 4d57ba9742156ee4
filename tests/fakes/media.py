"""In-memory fakes of ``crossroute.media``'s ports: the provider downloads, the bucket, the attachment
states on stored messages, and the media queue."""

from __future__ import annotations

import io
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

from crossroute.media import MediaJob


@dataclass
class FakeDownload:
    data: bytes
    mime_type: str | None
    size: int | None = None
    sha256: str | None = None
    closed: bool = False

    def __post_init__(self) -> None:
        self._stream = io.BytesIO(self.data)

    def read(self, amount: int = -1) -> bytes:
        return self._stream.read(amount)

    def close(self) -> None:
        self.closed = True


@dataclass
class ScriptedMedia:
    """``MediaSource``: each job's answer is the next of ``script`` (a download, or an exception)."""

    script: list[FakeDownload | Exception] = field(default_factory=list)
    opened: list[MediaJob] = field(default_factory=list)

    def open(self, job: MediaJob) -> FakeDownload:
        self.opened.append(job)
        answer = self.script.pop(0)
        if isinstance(answer, Exception):
            raise answer
        return answer


@dataclass
class MemoryObjects:
    """``MediaObjects`` over a dict; ``put`` reads the stream in 64 KiB chunks, as an upload does."""

    objects: dict[str, tuple[bytes, str, str | None]] = field(default_factory=dict)
    deleted: list[str] = field(default_factory=list)

    def stat(self, key: str) -> tuple[int, str | None] | None:
        found = self.objects.get(key)
        return (len(found[0]), found[2]) if found else None

    def put(self, key: str, stream: Any, mime_type: str, sha256: str | None) -> None:
        chunks = []
        while chunk := stream.read(64 * 1024):
            chunks.append(chunk)
        self.objects[key] = (b"".join(chunks), mime_type, sha256)

    def delete(self, keys: Iterable[str]) -> None:
        for key in keys:
            self.deleted.append(key)
            self.objects.pop(key, None)

    def link(self, key: str) -> str:
        return f"https://media.example/{key}?expires=600"


@dataclass
class MemoryMediaStates:
    """``MediaStates``: (tenant, provider, message id) -> attachments by index, as ingest stored them."""

    messages: dict[tuple[str, str, str], dict[str, dict[str, Any]]] = field(default_factory=dict)

    def state(self, job: MediaJob) -> dict[str, Any] | None:
        return self.messages.get((job.tenant, job.provider, job.message_id), {}).get(str(job.index))

    def record(self, job: MediaJob, state: dict[str, Any]) -> bool:
        media = self.messages.get((job.tenant, job.provider, job.message_id))
        if media is None or str(job.index) not in media:
            return False
        media[str(job.index)] = {k: v for k, v in state.items() if v is not None}
        return True


@dataclass
class RecordingMediaJobs:
    """``MediaJobs``: the jobs queued and the backoffs asked for."""

    jobs: list[MediaJob] = field(default_factory=list)
    backoffs: list[tuple[str, int]] = field(default_factory=list)

    def enqueue(self, jobs: Sequence[MediaJob]) -> None:
        self.jobs.extend(jobs)

    def retry_later(self, receipt_handle: str, delay: int) -> None:
        self.backoffs.append((receipt_handle, delay))


__all__ = ["FakeDownload", "MemoryMediaStates", "MemoryObjects", "RecordingMediaJobs", "ScriptedMedia"]
