"""How long the WhatsApp webhook takes to answer a POST that fans out into N queued events (N senders).

The webhook queues one event per sender (its FIFO group) before it answers, in parallel lanes of
SendMessageBatch calls (crossroute.inbound_queue). This section starts the local stack with its
consumers off (in AWS the queue and the consumers are elsewhere), posts signed batches of N distinct
senders, and reports the median answer time of three posts per N, and the largest N answered within
the goal. Above ``MAX_QUEUED_EVENTS`` the webhook refuses the POST with 413.
"""

from __future__ import annotations

import json
import statistics
import time

from infra.bench import Context, Row, Table
from infra.local import StackProcess

GOAL_SECONDS = 3.0
SIZES = (1, 10, 100, 300, 1000, 1500)


def fanout(context: Context) -> Table:
    from crossroute.webhooks.meta import MAX_QUEUED_EVENTS
    from tests.support import meta_from_senders, post_meta

    table = Table(
        "Webhook answer time for one POST with N senders (local stack, consumers off, median of 3)",
        ["senders", "answer", "median s", "max s"],
    )
    stack = StackProcess(env={"CROSSROUTE_EVENT_SOURCES": "off", "CROSSROUTE_LOG_LEVEL": "WARNING"})
    client = stack.start(timeout=60)
    largest = 0
    try:
        run = 0
        for senders in (*SIZES, MAX_QUEUED_EVENTS + 1):
            times, codes = [], set()
            for _ in range(3):
                run += 1
                raw = json.dumps(meta_from_senders(senders, run)).encode()
                started = time.perf_counter()
                codes.add(post_meta(client, raw).status)
                times.append(time.perf_counter() - started)
            median = statistics.median(times)
            ok = codes == {200}
            if ok and median <= GOAL_SECONDS:
                largest = max(largest, senders)
            table.rows.append(
                Row(
                    [str(senders), "/".join(map(str, sorted(codes))), f"{median:.2f}", f"{max(times):.2f}"],
                    goal=f"<= {GOAL_SECONDS:.0f} s" if senders <= MAX_QUEUED_EVENTS else "413",
                    met=(ok and median <= GOAL_SECONDS) if senders <= MAX_QUEUED_EVENTS else codes == {413},
                )
            )
    finally:
        stack.stop()
    table.notes.append(
        f"largest N answered within {GOAL_SECONDS:.0f} s: {largest} (cap: {MAX_QUEUED_EVENTS})"
    )
    return table
