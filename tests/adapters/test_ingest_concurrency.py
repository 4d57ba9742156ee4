"""I3 under concurrency: concurrent first messages from one person create exactly one customer.

Consumers run in threads, each with its own ``Ingest``, against one emulated DynamoDB. A barrier in a
wrapping store makes every consumer read who holds the keys before any of them writes, so the race
is certain, not hoped for: every consumer decides "nobody holds these keys, create a customer", one
transaction wins and the others must fail on the key conditions, read again and retry.

Moto does not serialise concurrent requests (in-process or ``ThreadedMotoServer``): its
``TransactWriteItems`` checks, writes and rolls back on a deep copy of the table without a lock, so
two threads both pass the same condition. DynamoDB itself applies each request atomically. The
server here is moto's ``ThreadedMotoServer`` with one lock around each request: requests are atomic,
as in DynamoDB, while the interleaving between requests (read, read, write, write) stays as racy
as the barrier makes it.
"""

from __future__ import annotations

import logging
import threading
import time
import urllib.request
from collections.abc import Iterable, Iterator, Sequence
from datetime import UTC, datetime, timedelta
from typing import Any

import boto3
import pytest
from moto.moto_server.threaded_moto_server import (
    DomainDispatcherApplication,
    MotoRequestHandler,
    create_backend_app,
)
from moto.server import ThreadedMotoServer
from werkzeug.serving import make_server

from crossroute.identity.model import Customer, Key
from crossroute.inbound import InboundMessage, Person
from crossroute.ingest import ATTEMPTS, Ingest, Ingested
from crossroute.ports import Conflict
from crossroute.replies import Offer
from crossroute.store.identity_store import DynamoIdentityStore, to_customer
from crossroute.store.tables import CustomerItem, IdentityEventItem, KeyItem, MessageItem, TableItem, bind
from infra.local.provision import Provisioner
from infra.template import load_template
from tests.fakes import RecordingPublisher
from tests.support import REPO

T0 = datetime(2026, 11, 1, tzinfo=UTC)
WA_NUMBER, SMS_NUMBER = "100000000000001", "+15550100002"
PHONE, BSUID = "+16505551234", "US.13491208655302741918"


class SerialMotoServer(ThreadedMotoServer):
    """``ThreadedMotoServer`` answering one request at a time: each request atomic, as in DynamoDB."""

    def _server_entry(self) -> None:
        app = DomainDispatcherApplication(create_backend_app)
        lock = threading.Lock()

        def atomic(environ: dict[str, Any], start_response: Any) -> list[bytes]:
            with lock:
                return list(app(environ, start_response))

        self._server = make_server(
            self._ip_address, self._port, atomic, True, request_handler=MotoRequestHandler
        )
        self._server_ready_event.set()
        self._server.serve_forever()


@pytest.fixture(scope="module")
def moto_endpoint() -> Iterator[str]:
    logging.getLogger("werkzeug").setLevel(logging.ERROR)
    server = SerialMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    yield f"http://{host}:{port}"
    server.stop()


@pytest.fixture
def dynamo(aws_env: None, moto_endpoint: str, monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    """template.yaml's identity table on the shared server, reset first; PynamoDB pointed at it."""
    monkeypatch.setenv("AWS_ENDPOINT_URL", moto_endpoint)
    reset = urllib.request.Request(moto_endpoint + "/moto-api/reset", method="POST")  # noqa: S310
    urllib.request.urlopen(reset).close()  # noqa: S310 - loopback
    provisioner = Provisioner(load_template(REPO / "template.yaml"), lambda service: boto3.client(service))
    name = str(provisioner.ref("IdentityTable"))
    bind(name)
    DynamoIdentityStore().holders("demo", [Key("bsuid", "US.0")])  # one client, made before the threads
    yield name
    TableItem._connection = None  # the next test's fixture binds its own (moto in-process) client


class RacingStore:
    """The real store; the first ``holders`` read of each consumer waits until all have read."""

    def __init__(self, barrier: threading.Barrier) -> None:
        self._store = DynamoIdentityStore()
        self._barrier = barrier
        self._raced = False

    def holders(self, tenant: str, keys: Sequence[Key]) -> dict[Key, Customer]:
        return self._race(self._store.holders(tenant, keys))

    def holders_and_offer(
        self, tenant: str, keys: Sequence[Key], phone: str
    ) -> tuple[dict[Key, Customer], Offer | None]:
        """An SMS short enough to answer numbered options is read with the offer (R13): same race."""
        found, offer = self._store.holders_and_offer(tenant, keys, phone)
        return self._race(found), offer

    def _race(self, found: dict[Key, Customer]) -> dict[Key, Customer]:
        if not self._raced:
            self._raced = True
            assert not found, "the race is about first messages"
            self._barrier.wait(timeout=30)
        return found

    def __getattr__(self, name: str) -> Any:  # commit, apply_status, published: the real ones
        return getattr(self._store, name)


def whatsapp(n: int, *, phone: str | None = None) -> InboundMessage:
    sender = Person(phone=phone, bsuid=BSUID, name="Ana")
    at = T0 + timedelta(seconds=n)
    return InboundMessage("demo", "meta", "whatsapp", f"wamid.C{n}", WA_NUMBER, sender, at, "text", "hi")


def sms(n: int) -> InboundMessage:
    at = T0 + timedelta(seconds=n)
    return InboundMessage(
        "demo", "twilio", "sms", f"SMC{n}", SMS_NUMBER, Person(phone=PHONE), at, "text", "hi"
    )


def race(messages: Sequence[InboundMessage]) -> tuple[list[Ingested], list[RecordingPublisher]]:
    """One consumer thread per message, all reading before any writes."""
    barrier = threading.Barrier(len(messages))
    outcomes: list[Ingested | BaseException | None] = [None] * len(messages)
    buses = [RecordingPublisher() for _ in messages]

    def consume(i: int) -> None:
        ingest = Ingest(RacingStore(barrier), buses[i], sleep=time.sleep)  # type: ignore[arg-type]
        try:
            for delivery in range(1, 4):
                try:
                    outcome = ingest.handle([messages[i]])
                except Conflict:  # still contended after every attempt: SQS would deliver it again
                    if delivery == 3:
                        raise
                    continue
                outcome.retries += (delivery - 1) * (ATTEMPTS - 1)
                outcomes[i] = outcome
                break
        except BaseException as exc:  # reported below, with the others
            outcomes[i] = exc

    threads = [threading.Thread(target=consume, args=(i,)) for i in range(len(messages))]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
    failed = [o for o in outcomes if not isinstance(o, Ingested)]
    assert not failed, failed
    return outcomes, buses  # type: ignore[return-value]


def one_customer(keys: Iterable[Key], message_ids: Iterable[str]) -> Customer:
    """Exactly one customer exists (no loser's creation got through); it holds ``keys`` and has the
    messages; every key item names it; one ``created`` identity event."""
    items = list(TableItem.scan(consistent_read=True))
    customers = [to_customer(i) for i in items if isinstance(i, CustomerItem)]
    assert len(customers) == 1, [c.keys for c in customers]
    (customer,) = customers
    assert customer.live and set(keys) <= set(customer.keys)
    assert customer.current_bsuid() == BSUID
    owners = {i.pk: i.customer_id for i in items if isinstance(i, KeyItem)}
    assert set(owners.values()) == {customer.id} and len(owners) == len(customer.keys)
    stored = {i.message_id: i.customer_id for i in items if isinstance(i, MessageItem)}
    assert stored == dict.fromkeys(message_ids, customer.id)
    kinds = [i.kind for i in items if isinstance(i, IdentityEventItem)]
    assert kinds.count("created") == 1 and "merged" not in kinds
    return customer


def assert_losers_retried(outcomes: Sequence[Ingested]) -> None:
    retries = sorted(o.retries for o in outcomes)
    assert retries[0] == 0, retries  # the winner committed at once
    assert all(r >= 1 for r in retries[1:]), retries  # every loser's first write failed and was retried
    assert all(o.handled == ["InboundMessage"] and o.duplicates == 0 for o in outcomes)


def test_two_consumers_first_messages_from_one_bsuid_make_one_customer(dynamo: str) -> None:
    outcomes, buses = race([whatsapp(1), whatsapp(2)])
    one_customer([Key("bsuid", BSUID)], ["wamid.C1", "wamid.C2"])
    assert sorted(o.retries for o in outcomes) == [0, 1]
    created = [e for bus in buses for e in bus.of("IdentityChanged") if e["change"] == "created"]
    assert len(created) == 1  # the loser's discarded decision was never published


def test_sms_and_whatsapp_from_one_phone_at_once_make_one_customer(dynamo: str) -> None:
    """The SMS claims the phone, the WhatsApp message the phone and the BSUID: whichever wins, the
    loser joins it (a BSUID joins the phone's BSUID-less customer, I4; an SMS refreshes the phone)."""
    outcomes, _ = race([sms(1), whatsapp(2, phone=PHONE)])
    customer = one_customer([Key("bsuid", BSUID), Key("phone", PHONE)], ["SMC1", "wamid.C2"])
    assert customer.current_phones() == [PHONE]
    assert sorted(o.retries for o in outcomes) == [0, 1]


@pytest.mark.parametrize("mixed", [False, True], ids=["bsuid", "sms+whatsapp"])
def test_eight_consumers_make_one_customer(dynamo: str, mixed: bool) -> None:
    if mixed:
        messages = [sms(n) if n % 2 else whatsapp(n, phone=PHONE) for n in range(8)]
        keys = [Key("bsuid", BSUID), Key("phone", PHONE)]
    else:
        messages = [whatsapp(n) for n in range(8)]
        keys = [Key("bsuid", BSUID)]
    outcomes, buses = race(messages)
    one_customer(keys, [m.message_id for m in messages])
    assert_losers_retried(outcomes)
    received = [e["message_id"] for bus in buses for e in bus.of("MessageReceived")]
    assert sorted(received) == sorted(m.message_id for m in messages)


def test_a_conflict_that_never_clears_fails_the_event_after_bounded_retries(dynamo: str) -> None:
    """The other side of retrying: an event whose writes always conflict is not retried forever; it
    raises, and the queue redelivers it (then the DLQ, see test_ingest_faults.py)."""

    class AlwaysConflicting(DynamoIdentityStore):
        def commit(self, *args: Any, **kwargs: Any) -> bool:
            raise Conflict("always")

    ingest = Ingest(AlwaysConflicting(), RecordingPublisher(), sleep=lambda _: None)
    with pytest.raises(Conflict):
        ingest.handle([whatsapp(1)])
    assert not list(TableItem.scan(consistent_read=True))
