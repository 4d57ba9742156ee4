"""Log tags and FIFO group ids are keyed (HMAC under the stack's masking key), never a bare hash that
enumerating phone numbers would reverse."""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Callable

import pytest

from crossroute import ids, privacy
from crossroute.config import ConfigurationError
from crossroute.inbound_queue import QueuedEvent, QueueUnavailable, group_id
from crossroute.routing.pacing import Pair

PHONE = "+16505551234"
BSUID = "US.20938475610293847"
KEY_A = b"a" * 64
KEY_B = b"b" * 64


def loader(key: bytes) -> tuple[Callable[[], bytes], list[int]]:
    """A key loader that counts its reads."""
    reads: list[int] = []

    def load() -> bytes:
        reads.append(1)
        return key

    return load, reads


def bare_hashes(value: str) -> list[str]:
    """Every unkeyed digest of ``value`` an enumeration would try (hex, as tags are written)."""
    return [
        hashlib.sha256(value.encode()).hexdigest(),
        hashlib.sha256(f'"{value}"'.encode()).hexdigest(),  # ids.content_digest: the JSON string
        ids.content_digest(value, 64),
    ]


def tag_of(masked: str) -> str:
    return masked.rsplit("#", 1)[1]


@pytest.mark.parametrize("value", [PHONE, BSUID, "ana.lima", "5511987654321"])
def test_the_fingerprint_is_no_prefix_of_any_bare_hash(value: str) -> None:
    privacy.configure(lambda: KEY_A)
    tag = privacy.fingerprint(value)
    assert len(tag) == 12 and int(tag, 16) >= 0
    for digest in bare_hashes(value):
        assert tag not in digest  # not sha256(value)[:n], nor any other part of it


def test_an_enumeration_of_numbers_does_not_find_the_masked_number() -> None:
    # What the bare hash allowed: hash every number of a range, look the tag up. 10,000 numbers here.
    privacy.configure(lambda: KEY_A)
    tag = tag_of(privacy.mask(PHONE))
    table = {hashlib.sha256(f"+1650555{n:04d}".encode()).hexdigest()[: len(tag)] for n in range(10_000)}
    assert tag not in table


def test_the_fingerprint_is_stable_for_one_key_and_differs_between_keys() -> None:
    privacy.configure(lambda: KEY_A)
    under_a = privacy.fingerprint(PHONE)
    assert privacy.fingerprint(PHONE) == under_a != privacy.fingerprint("+16505551235")
    privacy.configure(lambda: bytes(KEY_A))  # the same key read again (another container)
    assert privacy.fingerprint(PHONE) == under_a
    privacy.configure(lambda: KEY_B)
    assert privacy.fingerprint(PHONE) != under_a


def test_mask_shows_a_few_characters_and_a_keyed_tag_only() -> None:
    privacy.configure(lambda: KEY_A)
    masked = privacy.mask(PHONE)
    assert masked == f"+16…#{privacy.fingerprint(PHONE)}"
    assert "5551234" not in masked
    assert privacy.mask("short") == f"…#{privacy.fingerprint('short')}"
    assert privacy.mask(None) == privacy.mask("") == "-"


def test_the_key_is_read_on_first_use_once() -> None:
    load, reads = loader(KEY_A)
    privacy.configure(load)
    assert reads == []  # configuring reads nothing: a cold start that masks nothing reads no secret
    privacy.fingerprint(PHONE)
    privacy.mask(BSUID)
    group_id("demo", PHONE)
    assert reads == [1]


def test_without_a_key_tags_are_per_process_marked_and_still_not_bare_hashes() -> None:
    privacy.configure(None)
    tag = privacy.fingerprint(PHONE)
    assert tag.startswith("~") and len(tag) == 13 and privacy.fingerprint(PHONE) == tag
    assert all(tag[1:] not in digest for digest in bare_hashes(PHONE))
    privacy.configure(lambda: KEY_A)
    assert privacy.fingerprint(PHONE) not in (tag, tag[1:])


def test_a_key_that_cannot_be_read_never_breaks_a_log_line_nor_is_retried_at_once() -> None:
    reads: list[int] = []

    def broken() -> bytes:
        reads.append(1)
        raise ConnectionError("Secrets Manager unreachable")

    privacy.configure(broken)
    first = privacy.fingerprint(PHONE)
    assert first.startswith("~") and privacy.fingerprint(PHONE) == first
    assert reads == [1]  # not again before RETRY_AFTER_S


def test_uses_of_the_key_are_unrelated() -> None:
    # A log tag, a group id and an erasure tombstone of one value share nothing.
    privacy.configure(lambda: KEY_A)
    log = privacy.fingerprint(PHONE)
    group = group_id("demo", PHONE).split(":", 1)[1]
    tombstone = privacy.keyed_digest(KEY_A, PHONE)
    assert log not in group and log not in tombstone and group != tombstone
    assert hmac.new(KEY_A, PHONE.encode(), hashlib.sha256).hexdigest()[:12] != log


def test_the_fifo_group_id_is_keyed_stable_per_key_and_per_sender() -> None:
    privacy.configure(lambda: KEY_A)
    group = group_id("demo", PHONE)
    tenant, digest = group.split(":")
    assert tenant == "demo" and len(digest) == 32
    assert group != f"demo:{ids.content_digest(PHONE)}"  # what it was: reversible by enumeration
    assert all(digest not in bare for bare in bare_hashes(PHONE))
    event = QueuedEvent.build(tenant="demo", sender=PHONE, kind="twilio.message", content={"form": "x=1"})
    assert event.group_id == group == group_id("demo", PHONE)
    assert group_id("demo", BSUID) != group != group_id("other", PHONE)
    privacy.configure(lambda: KEY_B)
    assert group_id("demo", PHONE) != group


def test_the_pair_rate_key_of_an_address_is_keyed_and_stable_per_key() -> None:
    privacy.configure(lambda: KEY_A)
    pair = Pair.of("demo", "100000000000001", customer_id=None, address=PHONE)
    digest = pair.user.removeprefix("A:")
    assert len(digest) == 32 and all(digest not in bare for bare in bare_hashes(PHONE))
    assert pair == Pair.of("demo", "100000000000001", customer_id=None, address=PHONE)  # every container
    assert digest not in group_id("demo", PHONE)  # a key of its own use
    privacy.configure(lambda: KEY_B)
    assert Pair.of("demo", "100000000000001", customer_id=None, address=PHONE) != pair


def test_a_group_id_is_never_made_with_another_key_when_the_stack_key_cannot_be_read() -> None:
    # Another key would put the sender's events in another group: nothing is queued instead (503).
    def broken() -> bytes:
        raise ConnectionError("Secrets Manager unreachable")

    privacy.configure(broken)
    with pytest.raises(privacy.KeyUnavailable):
        privacy.stable_tag("inbound-group", PHONE)
    with pytest.raises(QueueUnavailable, match="masking key unavailable"):
        QueuedEvent.build(tenant="demo", sender=PHONE, kind="twilio.message", content={"form": "x=1"})


def test_configure_from_env() -> None:
    privacy.configure_from_env({"MASKING_KEY_SECRET_ID": "arn:aws:secretsmanager:masking"})
    assert privacy.configured()  # and nothing read: masking_key is lazy
    privacy.configure_from_env({})
    assert not privacy.configured()  # tests and scripts: the per-process key
    with pytest.raises(ConfigurationError, match="MASKING_KEY_SECRET_ID"):
        privacy.configure_from_env({"AWS_LAMBDA_FUNCTION_NAME": "crossroute-TwilioWebhookFunction"})
