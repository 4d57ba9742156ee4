"""End-to-end fixtures: the real local stack (``python -m infra.local``) as a subprocess.

``local_stack`` (session scope) is an :class:`infra.local.StackClient`:

- ``base_url`` (``http://127.0.0.1:<free port>``), ``aws_endpoint``, ``region``;
- ``session`` (boto3 session with dummy credentials) and ``client("sqs")`` etc. on the emulator;
- physical names resolved from template.yaml: ``physical("InboundQueue")`` (= ``Ref``),
  ``attribute("InboundQueue", "Arn")`` (= ``Fn::GetAtt``), ``table_name``, ``inbound_queue_url``,
  ``dead_letter_queue_url``, ``event_bus_name``, ``tenants_secret_arn``, ``queue_urls()``;
  the whole ``GET /_local/outputs`` document is ``outputs``;
- HTTP helpers ``request(method, path, body=/json_body=/form=, query=, headers=)``, ``get``, ``post``
  returning ``HttpResponse(status, headers, body)`` with ``.text`` / ``.json()``;
- queue helpers ``purge_queues(*logical_ids)``, ``drain_queue("InboundQueue")`` (receive+delete,
  returns the messages);
- ``process.output()``: everything the stack (and the handlers) printed.

``clean_sandbox`` empties the sandbox outbox and recipient settings; ``probe`` is a
:class:`tests.support.Probe` on the stack's bus (closed after the test).

The stack runs with ``CROSSROUTE_SQS_RETRY_DELAY=1``: failed SQS records reappear after 1 s.
``fresh_queues`` (function scope) purges every queue of the stack before the test.
Every test under ``tests/e2e`` is marked ``e2e``; a failing test that used the stack gets the stack's
log lines from its run attached to the report.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Generator, Iterator
from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parents[2]
if str(REPO_ROOT) not in sys.path:
    sys.path.insert(0, str(REPO_ROOT))

from infra.local import StackClient, StackProcess  # noqa: E402
from tests.support import Probe  # noqa: E402

_LOG_OFFSET = pytest.StashKey[int]()
_STACK = pytest.StashKey[StackClient]()


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    here = Path(__file__).parent
    for item in items:
        if here in Path(str(item.fspath)).parents:
            item.add_marker(pytest.mark.e2e)


@pytest.fixture(scope="session")
def local_stack(request: pytest.FixtureRequest) -> Iterator[StackClient]:
    timeout = float(os.environ.get("CROSSROUTE_E2E_START_TIMEOUT", "30"))
    # Failed SQS records come back after 1 s instead of the queue's visibility timeout (180 s for the
    # inbound queue), so retry -> DLQ paths finish within a test.
    stack = StackProcess(env={"CROSSROUTE_LOG_LEVEL": "INFO", "CROSSROUTE_SQS_RETRY_DELAY": "1"})
    client = stack.start(timeout=timeout)  # raises with the stack's output when it does not start
    request.session.stash[_STACK] = client
    try:
        yield client
    finally:
        code = stack.stop()
        if code not in (0, None):
            print(f"\nlocal stack exited with {code}:\n{stack.output()[-5000:]}", file=sys.stderr)
        stack.log_path.unlink(missing_ok=True)


@pytest.fixture
def fresh_queues(local_stack: StackClient) -> StackClient:
    local_stack.purge_queues()
    return local_stack


@pytest.fixture(autouse=True)
def _local_stack_log_marker(request: pytest.FixtureRequest) -> None:
    if "local_stack" in request.fixturenames:
        stack: StackClient = request.getfixturevalue("local_stack")
        request.node.stash[_LOG_OFFSET] = len(stack.process.output()) if stack.process else 0


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(
    item: pytest.Item, call: pytest.CallInfo[None]
) -> Generator[None, pytest.TestReport, pytest.TestReport]:
    report: pytest.TestReport = yield
    offset = item.stash.get(_LOG_OFFSET, None)
    stack = item.session.stash.get(_STACK, None)
    if report.failed and offset is not None and stack is not None and stack.process is not None:
        report.sections.append(("local stack log", stack.process.output()[offset:][-20000:]))
    return report


@pytest.fixture
def clean_sandbox(local_stack: StackClient) -> None:
    """An empty sandbox outbox and no recipient settings (modules that read the outbox use it)."""
    local_stack.request("DELETE", "/_sandbox/outbox")
    local_stack.request("DELETE", "/_sandbox/recipients")


@pytest.fixture
def probe(local_stack: StackClient) -> Iterator[Probe]:
    """What crossroute publishes on its bus during the test (``Probe.events``)."""
    watching = Probe(local_stack)
    try:
        yield watching
    finally:
        watching.close()
