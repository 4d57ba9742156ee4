"""``python -m infra.soak.stack``: the local stack of ``python -m infra.local``, on an AWS emulator whose
DynamoDB requests and SQS receives are atomic and whose transactions roll back without copying the
whole table (``infra.soak.emulator``), and with ``$SOAK_INBOUND_POLLERS`` SQS pollers on each FIFO queue
(the local stack runs one per event source: its consumer ingests one batch at a time). The soak starts
it with :func:`soak_stack`."""

from __future__ import annotations

import logging
import os
import sys
import threading
from collections.abc import Callable
from typing import Any

from infra.local.process import StackProcess

__all__ = ["soak_stack"]

MODULE = "infra.soak.stack"


def soak_stack(*, stock: bool = False, **kwargs: Any) -> StackProcess:
    """A :class:`StackProcess` running ``python -m infra.soak.stack`` (``stock=True``: ``-m infra.local``,
    moto as it comes)."""
    return StackProcess(module="infra.local" if stock else MODULE, **kwargs)


POLLERS_ENV = "SOAK_INBOUND_POLLERS"


def _main() -> None:
    from infra.soak.emulator import patch_moto

    patch_moto()
    _more_pollers(int(os.environ.get(POLLERS_ENV) or "1"))
    from infra.local.stack import main

    main()


def _more_pollers(total: int) -> None:
    """``total`` SQS pollers on each FIFO queue instead of the local stack's one, so that several
    batches of the inbound queue are ingested at once, as Lambda's SQS event source does for a FIFO
    queue with many message groups (up to the function's concurrency, ``CROSSROUTE_CONCURRENCY``)."""
    if total <= 1:
        return
    from infra.local.sqs_runner import SqsPoller
    from infra.local.stack import LocalStack

    start = LocalStack.start

    log = logging.getLogger("infra.soak")

    def start_with_pollers(self: LocalStack) -> LocalStack:
        started = start(self)
        fifo = [p for p in self.pollers if p.source.queue_name.endswith(".fifo")]
        extra = [
            SqsPoller(p.sqs, p.source, p.invoke, retry_delay=p.retry_delay, wait_seconds=p.wait_seconds)
            for p in fifo
            for _ in range(total - 1)
        ]
        for poller in [*fifo, *extra]:
            poller.invoke = _counted(poller.invoke, log)
        self.pollers.extend(extra)
        for poller in extra:
            poller.start()
        log.info("soak: %d pollers on each FIFO queue", total)
        return started

    LocalStack.start = start_with_pollers  # type: ignore[method-assign]


PEAK = "soak: batches in flight at once, new peak:"
_flight = {"now": 0, "peak": 0}
_flight_lock = threading.Lock()


def _counted(invoke: Callable[[dict[str, Any]], Any], log: logging.Logger) -> Callable[[dict[str, Any]], Any]:
    """``invoke``, logging each new peak of batches being handled at once (``PEAK``)."""

    def counted(event: dict[str, Any]) -> Any:
        with _flight_lock:
            _flight["now"] += 1
            if _flight["now"] > _flight["peak"]:
                _flight["peak"] = _flight["now"]
                log.info("%s %d", PEAK, _flight["peak"])
        try:
            return invoke(event)
        finally:
            with _flight_lock:
                _flight["now"] -= 1

    return counted


if __name__ == "__main__":
    _main()
    sys.exit(0)
