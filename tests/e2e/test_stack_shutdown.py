"""Stopping the local stack (``python -m infra.local``, ``make run``): SIGTERM or SIGINT (Ctrl-C) ends the
process, and every thread and child process in it, within 5 s: under load (webhooks posted, queued events
being consumed), with invocations that never finish, and while it is still starting."""

from __future__ import annotations

import contextlib
import http.client
import json
import os
import signal
import subprocess
import textwrap
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from infra.local import StackClient, StackProcess
from infra.local.client import http_request
from tests.support import CORE_FIXTURES, fixture_bytes, meta_signature

pytestmark = [
    pytest.mark.e2e,
    pytest.mark.skipif(not Path("/proc/self/stat").exists(), reason="finds child processes in /proc"),
]

STOP_WITHIN = 5.0  # seconds from the signal to the process being gone
REPO_ROOT = Path(__file__).resolve().parents[2]


# --------------------------------------------------------------------------- processes
def _ppids() -> dict[int, int]:
    """pid -> parent pid of every process (from /proc)."""
    parents = {}
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                stat = Path(f"/proc/{entry}/stat").read_text()
            except OSError:  # gone meanwhile
                continue
            parents[int(entry)] = int(stat.rsplit(")", 1)[1].split()[1])
    return parents


def descendants(pid: int) -> set[int]:
    parents = _ppids()
    found: set[int] = set()
    frontier = {pid}
    while frontier:
        frontier = {child for child, parent in parents.items() if parent in frontier} - found
        found |= frontier
    return found


def running(pid: int) -> bool:
    """Does ``pid`` exist and is not a zombie?"""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return stat.rsplit(")", 1)[1].split()[0] != "Z"


def stop_with(proc: subprocess.Popen[bytes], sig: signal.Signals, output: str | Path) -> float:
    """Send ``sig``; assert the process and all its descendants are gone within STOP_WITHIN s. Returns
    the seconds it took. Kills everything left (and fails) otherwise."""
    children = descendants(proc.pid)
    started = time.monotonic()
    proc.send_signal(sig)
    try:
        proc.wait(STOP_WITHIN)
    except subprocess.TimeoutExpired:
        stats = ""
        if running(proc.pid):
            stats = Path(f"/proc/{proc.pid}/status").read_text()
            stats = "\n".join(line for line in stats.splitlines() if line.startswith(("VmRSS", "Threads")))
        for pid in [proc.pid, *descendants(proc.pid)]:
            with contextlib.suppress(OSError):  # gone meanwhile
                os.kill(pid, signal.SIGKILL)
        proc.wait(10)
        text = output if isinstance(output, str) else Path(output).read_text(errors="replace")
        pytest.fail(
            f"still running {STOP_WITHIN:.0f} s after {sig.name} ({stats})\n--- output ---\n{text[-6000:]}"
        )
    elapsed = time.monotonic() - started
    left = sorted(pid for pid in children if running(pid))
    assert not left, f"child processes left running after {sig.name}: {left}"
    assert not Path(f"/proc/{proc.pid}").exists()  # reaped: none of its threads is left
    return elapsed


@contextlib.contextmanager
def launched(env: dict[str, str], log_path: Path) -> Iterator[tuple[subprocess.Popen[bytes], int]]:
    """``python -m infra.local`` on free ports, not waiting for it to be healthy: the process and its
    gateway port. Killed on the way out if a test left it running."""
    stack = StackProcess(env=env, log_path=log_path)
    proc = stack.launch()
    try:
        yield proc, stack.port
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(10)


@contextlib.contextmanager
def started(env: dict[str, str]) -> Iterator[tuple[StackProcess, StackClient, Load]]:
    """A healthy stack, its client and a load generator (not yet running); both stopped on the way out."""
    stack = StackProcess(env=env)
    client = stack.start(timeout=60)
    load = Load(stack.port)
    try:
        yield stack, client, load
    finally:
        load.stop()
        stack.stop()


def output_of(stack: StackProcess) -> str:
    """What the stopped stack printed; its log file removed."""
    output = stack.output()
    stack.log_path.unlink(missing_ok=True)
    return output


def health(port: int) -> int | None:
    try:
        return http_request("GET", f"http://127.0.0.1:{port}/_local/health", timeout=1).status
    except OSError:
        return None


def wait_for(check: Callable[[], bool], timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.02)


# --------------------------------------------------------------------------- load
class Load:
    """Threads posting to the stack over keep-alive connections until :meth:`stop`."""

    def __init__(self, port: int) -> None:
        self.port = port
        self.answers: dict[int, int] = {}
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._threads: list[threading.Thread] = []

    def run(self, requests: Iterator[tuple[str, bytes, dict[str, str]]], threads: int) -> None:
        lock = threading.Lock()

        def next_request() -> tuple[str, bytes, dict[str, str]]:
            with lock:
                return next(requests)

        for i in range(threads):
            thread = threading.Thread(target=self._post, args=(next_request,), name=f"load-{i}", daemon=True)
            thread.start()
            self._threads.append(thread)

    def _post(self, next_request: Callable[[], tuple[str, bytes, dict[str, str]]]) -> None:
        conn: http.client.HTTPConnection | None = None
        while not self._stop.is_set():
            path, body, headers = next_request()
            try:
                if conn is None:
                    conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=10)
                conn.request("POST", path, body=body, headers=headers)
                response = conn.getresponse()
                response.read()
                status = response.status
                if response.will_close:
                    conn.close()
                    conn = None
            except (OSError, http.client.HTTPException):
                status = 0
                conn = None
                self._stop.wait(0.05)
            with self._lock:
                self.answers[status] = self.answers.get(status, 0) + 1

    def ok(self) -> int:
        with self._lock:
            return sum(n for status, n in self.answers.items() if 200 <= status < 300)

    def stop(self) -> None:
        self._stop.set()
        for thread in self._threads:
            thread.join(15)


def webhooks_and_sends() -> Iterator[tuple[str, bytes, dict[str, str]]]:
    """Signed Meta webhooks (the inbound queue's consumer ingests them) and send requests (the send
    queue's consumer sends them through the sandbox providers), interleaved."""
    raws = [fixture_bytes(p.name) for p in sorted(CORE_FIXTURES.glob("meta_*.json"))]
    assert raws, f"no Meta fixtures in {CORE_FIXTURES}"
    n = 0
    while True:
        n += 1
        if n % 3:
            raw = raws[n % len(raws)]
            yield (
                "/webhooks/whatsapp",
                raw,
                {"Content-Type": "application/json", "X-Hub-Signature-256": meta_signature(raw)},
            )
        else:
            body = {
                "idempotency_key": f"stop-{time.time_ns()}-{n}",
                "to": {"phone": f"+5511999{n % 100000:05d}"},
                "text": "stopping soon",
            }
            yield "/messages", json.dumps(body).encode(), {"Content-Type": "application/json"}


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT], ids=lambda s: s.name)
def test_the_stack_stops_within_5_s_under_load(sig: signal.Signals) -> None:
    with started({"CROSSROUTE_SANDBOX_DELAY_MS": "0", "CROSSROUTE_SQS_RETRY_DELAY": "1"}) as (
        stack,
        client,
        load,
    ):
        load.run(webhooks_and_sends(), threads=12)

        def consumed() -> bool:  # the send queue's consumer has sent something through the sandbox
            return load.ok() >= 20 and bool(client.get("/_sandbox/outbox").json())

        wait_for(consumed, 20, "webhooks accepted and queued sends consumed")
        assert stack.proc is not None
        elapsed = stop_with(stack.proc, sig, stack.log_path)
    output = output_of(stack)
    assert stack.proc.returncode == 0, output[-4000:]
    assert "stopped" in output
    print(f"{sig.name} under load: gone after {elapsed:.2f} s ({load.answers})")


# --------------------------------------------------------------------------- a stack that hangs
HANGING_TEMPLATE = """
Resources:
  Work:
    Type: AWS::SQS::Queue
    Properties: {{VisibilityTimeout: 60}}
  Consumer:
    Type: AWS::Serverless::Function
    Properties:
      CodeUri: functions/consumer/
      Handler: app.lambda_handler
      Timeout: 900
      Environment: {{Variables: {{MARKERS: {markers}, QUEUE_URL: !Ref Work}}}}
      Events:
        Work: {{Type: SQS, Properties: {{Queue: !GetAtt Work.Arn, BatchSize: 1}}}}
  Api:
    Type: AWS::Serverless::Function
    Properties:
      CodeUri: functions/api/
      Handler: app.lambda_handler
      Timeout: 900
      Environment: {{Variables: {{MARKERS: {markers}, QUEUE_URL: !Ref Work}}}}
      Events:
        Hang: {{Type: HttpApi, Properties: {{Path: /hang, Method: POST}}}}
        Enqueue: {{Type: HttpApi, Properties: {{Path: /enqueue, Method: POST}}}}
"""

# Handlers that never finish (10 minutes), leaving a marker file when they start.
CONSUMER = """
import os, pathlib, time, uuid

def lambda_handler(event, context):
    pathlib.Path(os.environ["MARKERS"], "consumer-" + uuid.uuid4().hex).touch()
    time.sleep(600)
"""

API = """
import os, pathlib, time, uuid

import boto3

sqs = boto3.client("sqs")

def lambda_handler(event, context):
    if event["rawPath"] == "/enqueue":
        sqs.send_message(QueueUrl=os.environ["QUEUE_URL"], MessageBody="work")
        return {"statusCode": 202}
    pathlib.Path(os.environ["MARKERS"], "api-" + uuid.uuid4().hex).touch()
    time.sleep(600)
    return {"statusCode": 200}
"""

# A handler whose import never finishes: the stack's warm-up (startup) hangs on it.
HANGING_IMPORT = """
import os, pathlib, time

pathlib.Path(os.environ["MARKERS"], "importing").touch()
time.sleep(600)

def lambda_handler(event, context):
    return {"statusCode": 200}
"""

# ... and one that even swallows the signal's interruption: only the watchdog can end that process.
STUBBORN_IMPORT = """
import os, pathlib, time

pathlib.Path(os.environ["MARKERS"], "importing").touch()
while True:
    try:
        time.sleep(600)
    except BaseException:
        pass

def lambda_handler(event, context):
    return {"statusCode": 200}
"""


@pytest.fixture
def hanging_template(tmp_path: Path) -> Path:
    markers = tmp_path / "markers"
    markers.mkdir()
    for name, code in (("consumer", CONSUMER), ("api", API)):
        (tmp_path / "functions" / name).mkdir(parents=True)
        (tmp_path / "functions" / name / "app.py").write_text(textwrap.dedent(code))
    template = tmp_path / "template.yaml"
    template.write_text(HANGING_TEMPLATE.format(markers=markers))
    return template


def count_markers(template: Path, prefix: str) -> int:
    return sum(1 for p in (template.parent / "markers").iterdir() if p.name.startswith(prefix))


@pytest.mark.parametrize("sig", [signal.SIGINT], ids=lambda s: s.name)
def test_invocations_that_never_finish_do_not_hold_the_stop(
    sig: signal.Signals, hanging_template: Path
) -> None:
    with started({"CROSSROUTE_TEMPLATE": str(hanging_template)}) as (stack, client, load):
        assert client.post("/enqueue").status == 202  # the queue's consumer picks it up and hangs
        # More requests than execution environments (4): four hang, the others wait for one.
        load.run(iter(lambda: ("/hang", b"{}", {"Content-Type": "application/json"}), None), threads=6)
        wait_for(lambda: count_markers(hanging_template, "consumer") == 1, 10, "the consumer's invocation")
        wait_for(lambda: count_markers(hanging_template, "api") == 4, 10, "four hanging HTTP invocations")
        assert stack.proc is not None
        elapsed = stop_with(stack.proc, sig, stack.log_path)
    output = output_of(stack)
    assert stack.proc.returncode == 0, output[-4000:]
    assert "abandoned" in output  # the stop says what it did not wait for
    assert "Consumer (SQS" in output and "Api (POST /hang)" in output
    print(f"{sig.name} with hanging invocations: gone after {elapsed:.2f} s")


def test_a_second_ctrl_c_exits_at_once(hanging_template: Path) -> None:
    with started({"CROSSROUTE_TEMPLATE": str(hanging_template)}) as (stack, client, _):
        assert client.post("/enqueue").status == 202
        wait_for(lambda: count_markers(hanging_template, "consumer") == 1, 10, "the consumer's invocation")
        assert stack.proc is not None
        stack.proc.send_signal(signal.SIGINT)  # waits for the hanging invocation (a bounded time) ...
        time.sleep(0.3)
        assert stack.proc.poll() is None
        elapsed = stop_with(stack.proc, signal.SIGINT, stack.log_path)  # ... unless Ctrl-C comes again
    output = output_of(stack)
    assert elapsed < 1.0, output[-4000:]
    assert stack.proc.returncode == 128 + signal.SIGINT
    assert "second SIGINT: exiting now" in output


# --------------------------------------------------------------------------- during startup
@pytest.mark.parametrize("sig", [signal.SIGTERM], ids=lambda s: s.name)
def test_a_signal_during_startup_stops_it_within_5_s(sig: signal.Signals, tmp_path: Path) -> None:
    """The real stack, signalled as soon as its gateway answers (503 ``starting``): provisioning and the
    handlers' imports are under way."""
    log_path = tmp_path / "stack.log"
    with launched({}, log_path) as (proc, port):
        wait_for(lambda: health(port) == 503 or proc.poll() is not None, 60, "the gateway to answer")
        assert proc.poll() is None, log_path.read_text()
        elapsed = stop_with(proc, sig, log_path)
    assert proc.returncode == 0, log_path.read_text()[-4000:]
    print(f"{sig.name} during startup: gone after {elapsed:.2f} s")


@pytest.mark.parametrize("sig", [signal.SIGINT], ids=lambda s: s.name)
def test_a_signal_interrupts_a_startup_that_hangs(sig: signal.Signals, hanging_template: Path) -> None:
    """A handler whose import never returns (the warm-up at startup waits on it): the signal ends it."""
    (hanging_template.parent / "functions" / "api" / "app.py").write_text(textwrap.dedent(HANGING_IMPORT))
    log_path = hanging_template.parent / "stack.log"
    with launched({"CROSSROUTE_TEMPLATE": str(hanging_template)}, log_path) as (proc, port):
        wait_for(
            lambda: count_markers(hanging_template, "importing") == 1 or proc.poll() is not None,
            60,
            "the warm-up to import the handler",
        )
        assert proc.poll() is None and health(port) == 503, log_path.read_text()
        elapsed = stop_with(proc, sig, log_path)
    assert proc.returncode == 0, log_path.read_text()[-4000:]
    print(f"{sig.name} during a hanging startup: gone after {elapsed:.2f} s")


def test_a_stop_that_hangs_is_ended_by_the_watchdog(hanging_template: Path) -> None:
    """Whatever hangs (here the main thread, in an import that swallows the interruption), the process
    is gone within 5 s of the signal, saying what was still running."""
    (hanging_template.parent / "functions" / "api" / "app.py").write_text(textwrap.dedent(STUBBORN_IMPORT))
    log_path = hanging_template.parent / "stack.log"
    with launched({"CROSSROUTE_TEMPLATE": str(hanging_template)}, log_path) as (proc, _):
        wait_for(
            lambda: count_markers(hanging_template, "importing") == 1 or proc.poll() is not None,
            60,
            "the warm-up to import the handler",
        )
        assert proc.poll() is None, log_path.read_text()
        stop_with(proc, signal.SIGTERM, log_path)
    output = log_path.read_text()
    assert proc.returncode == 1, output[-4000:]
    assert "after SIGTERM, exiting anyway" in output and "MainThread in <module> (app.py" in output
