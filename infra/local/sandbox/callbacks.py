"""One worker thread that posts the fake providers' status webhooks / callbacks when they fall due.

Jobs wait in a bounded heap ordered by due time (ties: first scheduled first), so the statuses of one
message go out in order. The body is built (and signed) when a job runs, so its timestamp is the
moment it was "reported". Retries follow the provider: Meta retries anything but a 2xx (with backoff),
Twilio retries once and only when the connection failed.
"""

from __future__ import annotations

import heapq
import itertools
import logging
import threading
import time
import urllib.error
import urllib.request
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from .state import now_iso

__all__ = ["Callback", "CallbackWorker", "Plan", "final_status"]

log = logging.getLogger("infra.local.sandbox")

Build = Callable[[], tuple[bytes, dict[str, str]]]
Plan = list[tuple[str, int | None]]  # the statuses a fake reports for one send, in order, with error codes
POST_TIMEOUT = 10.0  # seconds for one POST
HISTORY_LIMIT = 1_000  # callbacks kept for GET /_sandbox/callbacks


def final_status(plan: Plan) -> str:
    """The last status of ``plan`` with its error code, for the log: ``read``, ``failed 131026``."""
    status, code = plan[-1]
    return status + (f" {code}" if code else "")


@dataclass
class Callback:
    provider: str  # "meta" | "twilio"
    message_id: str
    status: str
    url: str  # the URL as the provider knows it (what a Twilio signature covers)
    deliver_to: str  # the URL actually requested (the stack's own address for its public URL)
    build: Build = field(repr=False)
    retry_delays: tuple[float, ...] = ()  # delay before each further attempt
    retry_http_errors: bool = True  # Meta: any non-2xx is retried; Twilio: only connection failures
    attempt: int = 1


@dataclass(order=True)
class _Job:
    due: float
    seq: int
    callback: Callback = field(compare=False)


class CallbackWorker:
    """Posts callbacks on one daemon thread; at most ``max_pending`` wait (more are dropped, logged)."""

    def __init__(self, *, max_pending: int = 10_000) -> None:
        self.max_pending = max_pending
        self._heap: list[_Job] = []
        self._seq = itertools.count()
        self._cond = threading.Condition()
        self._inflight = 0
        self._stopping = False
        self._thread: threading.Thread | None = None
        self._history: deque[dict[str, Any]] = deque(maxlen=HISTORY_LIMIT)

    # ------------------------------------------------------------------ lifecycle
    def start(self) -> None:
        with self._cond:
            if self._thread is not None and self._thread.is_alive():
                return
            self._stopping = False
            self._thread = threading.Thread(target=self._run, name="sandbox-callbacks", daemon=True)
            self._thread.start()

    def stop(self, timeout: float = 5.0) -> None:
        """Stop after the callback in flight (if any); callbacks not yet due are dropped."""
        with self._cond:
            self._stopping = True
            dropped = len(self._heap)
            self._heap.clear()
            self._cond.notify_all()
            thread, self._thread = self._thread, None
        if thread is not None:
            thread.join(timeout)
        if dropped:
            log.info("sandbox stopped with %d status callbacks not sent", dropped)

    # ------------------------------------------------------------------ queue
    def schedule(self, callback: Callback, at: float) -> bool:
        """Post ``callback`` at monotonic time ``at``; False (and a warning) when the queue is full."""
        with self._cond:
            if self._stopping:
                return False
            if len(self._heap) >= self.max_pending:
                log.warning(
                    "sandbox: %d status callbacks pending, dropping %s %s",
                    len(self._heap),
                    callback.provider,
                    callback.status,
                )
                return False
            heapq.heappush(self._heap, _Job(at, next(self._seq), callback))
            self._cond.notify_all()
        return True

    def pending(self) -> int:
        with self._cond:
            return len(self._heap) + self._inflight

    def wait_idle(self, timeout: float) -> bool:
        """Wait until nothing is pending or in flight; False on timeout."""
        with self._cond:
            return self._cond.wait_for(lambda: not self._heap and not self._inflight, timeout)

    def history(self) -> list[dict[str, Any]]:
        with self._cond:
            return [dict(h) for h in self._history]

    def clear_history(self) -> None:
        with self._cond:
            self._history.clear()

    # ------------------------------------------------------------------ worker
    def _run(self) -> None:
        while True:
            with self._cond:
                while not self._stopping:
                    now = time.monotonic()
                    if self._heap and self._heap[0].due <= now:
                        break
                    self._cond.wait(self._heap[0].due - now if self._heap else None)
                if self._stopping:
                    return
                job = heapq.heappop(self._heap)
                self._inflight += 1
            try:
                self._deliver(job.callback)
            except Exception:  # never let one callback kill the worker
                log.exception("sandbox: %s %s callback failed", job.callback.provider, job.callback.status)
            finally:
                with self._cond:
                    self._inflight -= 1
                    self._cond.notify_all()

    def _deliver(self, cb: Callback) -> None:
        body, headers = cb.build()
        status: int | None = None
        error: str | None = None
        request = urllib.request.Request(cb.deliver_to, data=body, method="POST", headers=headers)  # noqa: S310
        try:
            with urllib.request.urlopen(request, timeout=POST_TIMEOUT) as resp:  # noqa: S310 - the stack itself
                status = resp.status
                resp.read()
        except urllib.error.HTTPError as exc:
            with exc:
                status = exc.code
                exc.read()
        except OSError as exc:
            error = f"{type(exc).__name__}: {exc}"
        with self._cond:
            self._history.append(
                {
                    "provider": cb.provider,
                    "provider_message_id": cb.message_id,
                    "status": cb.status,
                    "url": cb.url,
                    "attempt": cb.attempt,
                    "http_status": status,
                    "error": error,
                    "at": now_iso(),
                }
            )
        ok = status is not None and 200 <= status < 300
        if ok:
            log.debug("sandbox %s %s callback -> %s", cb.provider, cb.status, status)
            return
        retry = error is not None or cb.retry_http_errors
        if retry and cb.attempt <= len(cb.retry_delays):
            delay = cb.retry_delays[cb.attempt - 1]
            log.warning(
                "sandbox %s %s callback for %s: %s; retrying in %.1f s",
                cb.provider,
                cb.status,
                cb.message_id,
                error or f"HTTP {status}",
                delay,
            )
            cb.attempt += 1
            self.schedule(cb, time.monotonic() + delay)
        else:
            log.warning(
                "sandbox %s %s callback for %s: %s; giving up",
                cb.provider,
                cb.status,
                cb.message_id,
                error or f"HTTP {status}",
            )
