"""In-memory fakes of the ports (``crossroute.ports`` and the two ports kept beside their records), one per
port, shared by the tests and the bench (``infra/bench``). Plain classes: no pytest, no AWS."""

from tests.fakes.bus import RecordingPublisher
from tests.fakes.identity_store import KeptUnrecognised, MemoryIdentityStore, StoredMessage
from tests.fakes.queues import (
    Enqueued,
    Parked,
    RecordingDeadLetters,
    RecordingInboundQueue,
    RecordingSendQueue,
)
from tests.fakes.send_store import MemorySendStore
from tests.fakes.senders import FAILURES, ScriptedSender

__all__ = [
    "FAILURES",
    "Enqueued",
    "KeptUnrecognised",
    "MemoryIdentityStore",
    "MemorySendStore",
    "Parked",
    "RecordingDeadLetters",
    "RecordingInboundQueue",
    "RecordingPublisher",
    "RecordingSendQueue",
    "ScriptedSender",
    "StoredMessage",
]
