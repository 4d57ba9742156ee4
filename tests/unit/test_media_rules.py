"""Inbound media, the pure parts: what the parsers read of attachments, the jobs ingest queues, the
object keys, the size and type rules, the backoff, the copy over in-memory fakes, and the timeline view."""

from __future__ import annotations

import hashlib
import json
from typing import Any

import pytest

from crossroute import media
from crossroute.inbound import InboundMessage, MediaRef, OutboundEcho, ProviderEvent
from crossroute.inbound_queue import QueuedEvent
from crossroute.media import MediaCopier, MediaJob, Refused, TooLarge
from crossroute.parsing.queued import parse
from crossroute.ports import Delivery
from crossroute.tenants import TenantRegistry
from crossroute.webhooks import meta as meta_webhook
from tests.fakes.media import (
    FakeDownload,
    MemoryMediaStates,
    MemoryObjects,
    RecordingMediaJobs,
    ScriptedMedia,
)
from tests.support import APP_SECRET, REPO, TENANT, registry_document

PHOTO = b"\xff\xd8\xff\xe0" + bytes(range(256)) * 8


def payload(name: str) -> bytes:
    """A provider payload from tests/fixtures (or its core/), Twilio forms without a trailing newline."""
    path = REPO / "tests" / "fixtures" / name
    data = (path if path.is_file() else REPO / "tests" / "fixtures" / "core" / name).read_bytes()
    return data.rstrip(b"\n") if name.endswith(".form") else data


def meta_events(fixture: str) -> list[ProviderEvent]:
    registry = TenantRegistry.from_json(registry_document())
    queued = meta_webhook.split(registry, APP_SECRET, json.loads(payload(fixture)))
    return [event for q in queued for event in parse(q.body).events]


def twilio_message(fixture: str) -> InboundMessage:
    form = payload(fixture).decode()
    body = QueuedEvent.build(tenant=TENANT, sender="x", kind="twilio.message", content={"form": form}).body
    (event,) = parse(body).events
    assert isinstance(event, InboundMessage)
    return event


def photo_job(**fields: Any) -> MediaJob:
    refs = (MediaRef("image", "image/jpeg", media_id="1029384756102938"),)
    (job,) = media.jobs_for(TENANT, "meta", "wamid.HBgLMTQxNTU1NTAxNDIVAgASGBQ=", refs)
    return MediaJob(**{**job.__dict__, **fields})


# --------------------------------------------------------------------------- what the parsers read


def test_every_meta_media_type_names_its_media_id_and_announced_type() -> None:
    found = {e.type: e.media for e in meta_events("meta_message_types.json") if isinstance(e, InboundMessage)}
    assert found["image"] == (
        MediaRef(
            "image",
            "image/jpeg",
            media_id="1029384756102938",
            sha256="3f9d94d399fa61c191bc1d4ca71375a035cd9b9f5b1128e1f0963a415c16b0cc",
        ),
    )
    assert found["audio"][0].mime_type == "audio/ogg"  # "; codecs=opus" dropped
    assert [found[t][0].type for t in ("video", "document", "sticker")] == ["video", "document", "sticker"]
    assert found["text"] == ()


def test_a_history_placeholder_is_shown_as_such_and_an_echo_keeps_its_media() -> None:
    history = [e for e in meta_events("meta_history_chunk.json") if isinstance(e, InboundMessage)]
    placeholders = [e.media for e in history if e.type == "media_placeholder"]
    assert placeholders == [(MediaRef("unknown", "", placeholder=True),)]
    assert media.jobs_for(TENANT, "meta", "wamid.X", placeholders[0]) == []
    echo = next(
        e for e in meta_events("meta_smb_message_echoes.json") if isinstance(e, OutboundEcho) and e.media
    )
    assert echo.media[0].media_id == "2039485761029384"


def test_a_twilio_mms_names_each_media_url_with_its_content_type() -> None:
    mms = twilio_message("twilio_mms_inbound.form")
    assert [(m.type, m.mime_type) for m in mms.media] == [
        ("image", "image/png"),
        ("document", "application/pdf"),
    ]
    assert all(m.url and m.url.startswith("https://api.twilio.com/2010-04-01/Accounts/AC") for m in mms.media)
    assert twilio_message("twilio_sms_inbound.form").media == ()


# --------------------------------------------------------------------------- jobs and keys


def test_a_job_is_small_and_its_key_names_no_phone_bsuid_or_message_id() -> None:
    mms = twilio_message("twilio_mms_inbound.form")
    jobs = media.jobs_for(TENANT, "twilio", mms.message_id, mms.media)
    assert [j.index for j in jobs] == [0, 1]
    assert [j.key.rsplit("/", 1)[1] for j in jobs] == ["0.png", "1.pdf"]
    for job in jobs:
        assert MediaJob.from_body(job.body()) == job
        assert len(job.body()) < 512
        assert mms.message_id not in job.key and "+1650" not in job.body() and "16505551234" not in job.key
    wamid = "wamid.HBgLMTQxNTU1NTAxNDIVAgASGBQ="  # base64 of the sender's number inside
    key = media.object_key(TENANT, "meta", wamid, 0, "image/jpeg")
    assert key == media.object_key(TENANT, "meta", wamid, 0, "image/jpeg")
    assert key.startswith(f"media/{TENANT}/meta/") and "HBgL" not in key


def test_the_stored_message_records_its_attachments_pending() -> None:
    refs = (MediaRef("image", "image/JPEG"), MediaRef("unknown", "", placeholder=True))
    stored = media.stored_media(TENANT, "meta", "wamid.1", refs)
    assert stored["0"]["state"] == "pending" and stored["0"]["mime_type"] == "image/jpeg"
    assert stored["0"]["key"].endswith("/0.jpg")
    assert stored["1"] == {"type": "unknown", "state": "placeholder"}


# --------------------------------------------------------------------------- limits and types


def test_each_type_has_meta_s_limit_under_the_cap() -> None:
    assert media.max_bytes("image") == 5 * media.MB
    assert media.max_bytes("audio") == media.max_bytes("video") == 16 * media.MB
    assert media.max_bytes("document") == 100 * media.MB
    assert media.max_bytes("document", cap=20 * media.MB) == 20 * media.MB
    with pytest.raises(TooLarge):
        media.check_size(photo_job(), 5 * media.MB + 1, media.DEFAULT_MAX_BYTES)
    media.check_size(photo_job(), None, media.DEFAULT_MAX_BYTES)  # unknown: counted while read


@pytest.mark.parametrize(
    ("kind", "announced", "delivered", "reason"),
    [
        ("image", "image/jpeg", "image/jpeg", None),
        ("image", "image/jpg", "image/jpeg", None),  # an alias
        ("audio", "audio/ogg", "audio/ogg; codecs=opus", None),
        ("document", "application/pdf", "application/pdf", None),
        ("image", "image/jpeg", "image/png", "type_mismatch"),
        ("image", "application/x-msdownload", None, "type_not_allowed"),
        ("document", "application/x-sh", None, "type_not_allowed"),
        ("sticker", "image/png", None, "type_not_allowed"),
    ],
)
def test_only_the_types_providers_deliver_and_only_the_announced_one(
    kind: str, announced: str, delivered: str | None, reason: str | None
) -> None:
    job = photo_job(type=kind, mime_type=announced)
    if reason is None:
        media.check_type(job, delivered)
        return
    with pytest.raises(Refused) as refused:
        media.check_type(job, delivered)
    assert refused.value.reason == reason


def test_a_failed_download_backs_off_four_times_longer_each_receive_up_to_15_minutes() -> None:
    assert [media.retry_delay(n) for n in (1, 2, 3, 4, 5)] == [30, 120, 480, 900, 900]


# --------------------------------------------------------------------------- the copy, over fakes


def copier(
    *script: FakeDownload | Exception,
) -> tuple[MediaCopier, ScriptedMedia, MemoryObjects, MemoryMediaStates]:
    source, objects = ScriptedMedia(list(script)), MemoryObjects()
    job = photo_job()
    states = MemoryMediaStates({(job.tenant, job.provider, job.message_id): {"0": {"state": "pending"}}})
    return MediaCopier(source, objects, states), source, objects, states


def test_a_photo_is_copied_once_with_its_size_and_sha256() -> None:
    digest = hashlib.sha256(PHOTO).hexdigest()
    use_case, source, objects, states = copier(FakeDownload(PHOTO, "image/jpeg", len(PHOTO), digest))
    job = photo_job()
    assert use_case.copy(job).outcome == "stored"
    assert objects.objects[job.key] == (PHOTO, "image/jpeg", digest)
    assert states.state(job) == {
        "type": "image", "mime_type": "image/jpeg", "key": job.key, "state": "stored",
        "size": len(PHOTO), "sha256": digest,
    }  # fmt: skip
    assert use_case.copy(job).outcome == "skipped"  # redelivered: not fetched again
    assert len(source.opened) == 1


def test_an_object_left_by_an_attempt_that_stopped_is_recorded_not_fetched_again() -> None:
    use_case, source, objects, states = copier()
    job = photo_job()
    objects.objects[job.key] = (PHOTO, "image/jpeg", "ab" * 32)
    assert use_case.copy(job).outcome == "stored"
    assert source.opened == [] and states.state(job)["size"] == len(PHOTO)  # type: ignore[index]


@pytest.mark.parametrize(
    ("download", "reason"),
    [
        (FakeDownload(PHOTO, "image/png"), "type_mismatch"),
        (FakeDownload(PHOTO, "image/jpeg", size=6 * media.MB), "too_large"),  # declared
        (FakeDownload(b"\xff" * (5 * media.MB + 1), "image/jpeg"), "too_large"),  # counted while read
        (FakeDownload(PHOTO, "image/jpeg", sha256="00" * 32), "sha256_mismatch"),
    ],
)
def test_a_refused_attachment_is_recorded_failed_and_nothing_is_kept(
    download: FakeDownload, reason: str
) -> None:
    use_case, _, objects, states = copier(download)
    job = photo_job()
    assert use_case.copy(job) == media.Copied("failed", reason)
    assert states.state(job)["state"] == "failed" and states.state(job)["reason"] == reason  # type: ignore[index]
    assert job.key not in objects.objects and download.closed


def test_a_copy_whose_message_was_erased_meanwhile_is_deleted() -> None:
    use_case, _, objects, states = copier(FakeDownload(PHOTO, "image/jpeg"))
    job = photo_job()
    erasing = states.record
    states.record = lambda j, s: False  # type: ignore[method-assign]
    assert use_case.copy(job) == media.Copied("skipped", "erased")
    assert objects.objects == {} and objects.deleted == [job.key]
    states.record = erasing  # type: ignore[method-assign]


def test_a_failing_download_is_backed_off_then_recorded_failed_on_its_last_receive() -> None:
    use_case, _, _, states = copier(ConnectionError("reset"), ConnectionError("reset"))
    queue = RecordingMediaJobs()
    consumer = media.MediaConsumer(use_case, lambda: queue, max_receives=2)
    job = photo_job()
    with pytest.raises(ConnectionError):
        consumer.consume(Delivery(job.body(), "m-1", 1, receipt_handle="r1"))
    assert queue.backoffs == [("r1", 30)] and states.state(job)["state"] == "pending"  # type: ignore[index]
    with pytest.raises(ConnectionError):  # raised: SQS moves it to the media DLQ
        consumer.consume(Delivery(job.body(), "m-1", 2, receipt_handle="r2"))
    assert states.state(job) == {**media._base(job), "state": "failed", "reason": "download_failed"}
    assert queue.backoffs[-1] == ("r2", 0)  # visible at once: SQS moves it to the DLQ


# --------------------------------------------------------------------------- the timeline's view


def test_the_timeline_shows_a_link_when_stored_and_the_state_until_then() -> None:
    stored = {"type": "image", "mime_type": "image/jpeg", "state": "stored", "key": "media/k/0.jpg",
              "size": 12, "sha256": "ab"}  # fmt: skip
    view = media.timeline_view({"0": stored}, lambda key: f"https://x/{key}")
    assert view == {"media": {"type": "image", "mime_type": "image/jpeg", "state": "stored", "size": 12,
                              "sha256": "ab", "url": "https://x/media/k/0.jpg"}}  # fmt: skip
    pending = {"0": {"type": "image", "state": "pending", "key": "k"}, "1": {"type": "document",
               "state": "failed", "reason": "too_large", "key": "k2"}}  # fmt: skip
    view = media.timeline_view(pending, None)
    assert view["media"] == {"type": "image", "state": "pending"}
    assert view["attachments"][1] == {"type": "document", "state": "failed", "reason": "too_large"}
    assert media.timeline_view(None, None) == {}
