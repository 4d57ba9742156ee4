"""The chaos run: a fresh local stack, every event posted 1-3 times in a random order from a thread pool,
then, once the inbound queue is drained, the state read back over HTTP as an integrator would."""

from __future__ import annotations

import json
import re
import threading
import time
from collections import Counter
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import quote

from infra.local.client import StackClient, http_request
from tests.support import meta_signature, twilio_signature

from .reference import PAGE, ReadState
from .scenario import META_PATH, Event, Scenario
from .stack import PEAK, POLLERS_ENV, soak_stack

ATTEMPTS = 3  # a webhook that fails (5xx or no answer) is posted again, as a provider would retry


@dataclass
class ChaosResult:
    state: ReadState = field(default_factory=ReadState)
    post_seconds: float = 0.0  # first POST to the last answer
    drain_seconds: float = 0.0  # first POST until the inbound queue stayed empty
    read_seconds: float = 0.0
    drained: bool = False
    latencies_ms: list[float] = field(default_factory=list)
    answers: Counter[int] = field(default_factory=Counter)  # HTTP status -> count (0: no answer)
    transport_errors: list[str] = field(default_factory=list)
    read_errors: list[str] = field(default_factory=list)
    dead_letters: dict[str, int] = field(default_factory=dict)  # DLQ logical id -> messages
    peak_rss_kb: int | None = None
    stack_exit: int | None = None
    log_path: Path | None = None  # the stack's log, until the run decides whether to keep it
    log_figures: dict[str, int] = field(default_factory=dict)


class _Poster:
    def __init__(self, stack: StackClient, result: ChaosResult) -> None:
        self.stack = stack
        self.result = result
        self.lock = threading.Lock()

    def post(self, event: Event) -> None:
        if event.path == META_PATH:
            headers = {"Content-Type": "application/json", "X-Hub-Signature-256": meta_signature(event.body)}
        else:
            signature = twilio_signature(self.stack.base_url + event.path, event.body)
            headers = {"Content-Type": "application/x-www-form-urlencoded", "X-Twilio-Signature": signature}
        for _ in range(ATTEMPTS):
            started = time.perf_counter()
            try:
                answer = http_request(
                    "POST", self.stack.base_url + event.path, body=event.body, headers=headers
                )
                status = answer.status
            except OSError as exc:
                status = 0
                with self.lock:
                    self.result.transport_errors.append(f"{event.kind} #{event.n}: {type(exc).__name__}")
            elapsed = (time.perf_counter() - started) * 1000
            with self.lock:
                self.result.latencies_ms.append(elapsed)
                self.result.answers[status] += 1
            if 200 <= status < 300 or 400 <= status < 500:
                return


def run_chaos(
    scenario: Scenario,
    *,
    concurrency: int,
    pollers: int,
    workers: int,
    stock_emulator: bool,
    drain_timeout: float,
    progress: Callable[[str], None],
) -> ChaosResult:
    result = ChaosResult()
    env = {
        "CROSSROUTE_SQS_RETRY_DELAY": "1",
        "CROSSROUTE_CONCURRENCY": str(concurrency),
        "CROSSROUTE_LOG_LEVEL": "INFO",
        POLLERS_ENV: str(pollers),
    }
    process = soak_stack(env=env, stock=stock_emulator)
    stack = process.start(timeout=60)
    try:
        progress(f"chaos: local stack up at {stack.base_url} (log: {process.log_path})")
        poster = _Poster(stack, result)
        started = time.monotonic()
        waves = [scenario.deliveries[: len(scenario.deliveries) - scenario.late]]
        waves += [scenario.deliveries[len(waves[0]) :]] if scenario.late else []
        with ThreadPoolExecutor(workers, thread_name_prefix="soak-post") as pool:
            for n, wave in enumerate(waves, 1):
                wave_started = time.monotonic()
                for _ in pool.map(poster.post, (scenario.events[i] for i in wave)):
                    pass
                result.post_seconds += time.monotonic() - wave_started
                progress(f"chaos: wave {n}: {len(wave)} deliveries posted; draining")
                result.drained = _wait_drained(stack, drain_timeout)
                if not result.drained:
                    break
        result.drain_seconds = time.monotonic() - started
        state = "drained" if result.drained else "NOT drained"
        progress(f"chaos: inbound queue {state} at {result.drain_seconds:.1f} s")
        read_started = time.monotonic()
        result.state = read_http(stack, scenario, workers, result.read_errors)
        result.read_seconds = time.monotonic() - read_started
        result.dead_letters = _dead_letters(stack)
        result.peak_rss_kb = peak_rss_kb(process.proc.pid if process.proc else None)
    finally:
        result.stack_exit = process.stop(timeout=30)
        result.log_figures = log_figures(process.output())
        result.log_path = Path(process.log_path)
    return result


def _queue_depth(stack: StackClient, url: str) -> int:
    names = [
        "ApproximateNumberOfMessages",
        "ApproximateNumberOfMessagesNotVisible",
        "ApproximateNumberOfMessagesDelayed",
    ]
    attributes = stack.client("sqs").get_queue_attributes(QueueUrl=url, AttributeNames=names)["Attributes"]
    return sum(int(attributes.get(name, "0")) for name in names)


def _wait_drained(stack: StackClient, timeout: float, stable: float = 3.0) -> bool:
    """Until the inbound queue has nothing visible, in flight or delayed for ``stable`` seconds."""
    deadline = time.monotonic() + timeout
    empty_since: float | None = None
    while time.monotonic() < deadline:
        if _queue_depth(stack, stack.inbound_queue_url) == 0:
            empty_since = empty_since or time.monotonic()
            if time.monotonic() - empty_since >= stable:
                return True
        else:
            empty_since = None
        time.sleep(0.25)
    return False


def _dead_letters(stack: StackClient) -> dict[str, int]:
    """Messages on every dead-letter queue of the stack (inbound and send)."""
    return {
        lid: _queue_depth(stack, url)
        for lid, url in sorted(stack.queue_urls().items())
        if "deadletter" in lid.lower() or "dlq" in lid.lower()
    }


def read_http(stack: StackClient, scenario: Scenario, workers: int, errors: list[str]) -> ReadState:
    """GET /contacts?phone= / ?bsuid= for every identifier, then every contact's whole timeline."""
    state = ReadState()
    queries = [("phone", p) for p in scenario.phones()] + [("bsuid", b) for b in scenario.bsuids()]

    def find(query: tuple[str, str]) -> tuple[str, dict[str, Any] | None]:
        name, value = query
        answer = stack.get("/contacts", query={name: value})
        if answer.status not in (200, 404):
            errors.append(f"GET /contacts?{name}=: {answer.status}")
            return value, None
        return value, answer.json() if answer.status == 200 else None

    def timeline(customer_id: str) -> tuple[str, list[dict[str, Any]]]:
        entries: list[dict[str, Any]] = []
        cursor: str | None = None
        while True:
            query = {"limit": str(PAGE), **({"next": cursor} if cursor else {})}
            answer = stack.get(f"/contacts/{quote(customer_id)}/timeline", query=query)
            if answer.status != 200:
                errors.append(f"GET /contacts/{{id}}/timeline: {answer.status}")
                break
            page = answer.json()
            entries.extend(page["items"])
            cursor = page.get("next")
            if not cursor:
                break
        return customer_id, entries

    with ThreadPoolExecutor(workers, thread_name_prefix="soak-read") as pool:
        for value, view in pool.map(find, queries):
            state.found_by[value] = view["id"] if view else None
            if view is not None:
                state.contacts[view["id"]] = view
        for customer_id, entries in pool.map(timeline, sorted(state.contacts)):
            state.timelines[customer_id] = entries
    return state


def peak_rss_kb(pid: int | None) -> int | None:
    """VmHWM (peak resident set) of a process, from /proc (Linux)."""
    if pid is None:
        return None
    try:
        status = Path(f"/proc/{pid}/status").read_text()
    except OSError:
        return None
    match = re.search(r"^VmHWM:\s+(\d+)\s+kB", status, re.MULTILINE)
    return int(match.group(1)) if match else None


def log_figures(log: str) -> dict[str, int]:
    """What the consumers said in the stack's log: records ingested, transaction conflicts retried
    (``retries``), redeliveries found already stored (``duplicates``), batches whose records failed and
    came back, records dead-lettered, handler errors."""
    figures = Counter(
        {
            "records": 0,
            "conflict_retries": 0,
            "duplicates": 0,
            "failed_batches": 0,
            "dead_lettered": 0,
            "errors": 0,
            "peak_batches_in_flight": 0,
        }
    )
    for line in log.splitlines():
        if PEAK in line:
            figures["peak_batches_in_flight"] = int(line.rsplit(" ", 1)[-1])
        if '"ingested"' in line and line.lstrip().startswith("{"):
            try:
                doc = json.loads(line)
            except ValueError:
                continue
            if doc.get("message") == "ingested":
                figures["records"] += 1
                figures["conflict_retries"] += int(doc.get("retries") or 0)
                figures["duplicates"] += int(doc.get("duplicates") or 0)
        elif "will be retried" in line:
            figures["failed_batches"] += 1
        elif "dead-lettered" in line:
            figures["dead_lettered"] += 1
        if '"level":"ERROR"' in line or " ERROR " in line:
            figures["errors"] += 1
    return dict(figures)
