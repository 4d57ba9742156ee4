"""Inbound media on the local stack: a WhatsApp photo (signed webhook) and a Twilio MMS end up in the
media bucket, copied by the media function from the sandbox providers; the timeline's presigned URL
answers the bytes (moto serves it); erasure deletes the copies."""

from __future__ import annotations

import hashlib
import json
import urllib.parse
import urllib.request
from typing import Any

import pytest

from infra.local import StackClient
from tests.support import (
    REPO,
    contact,
    digits,
    eventually,
    new_bsuid,
    new_phone,
    personal,
    post_meta,
    post_twilio,
    timeline,
)

pytestmark = pytest.mark.e2e


def photo_from(phone: str, bsuid: str, media_id: str) -> bytes:
    """meta_text_phone_and_bsuid.json from someone new, its text turned into a photo with a caption."""
    raw = personal(
        "meta_text_phone_and_bsuid.json", **{"5511987654321": phone[1:], "BR.1502576394655843": bsuid}
    )
    doc = json.loads(raw)
    message = doc["entry"][0]["changes"][0]["value"]["messages"][0]
    del message["text"]
    message.update(type="image", image={"caption": "The box", "mime_type": "image/jpeg", "id": media_id})
    return json.dumps(doc).encode()


def mms_from(phone: str) -> bytes:
    """The MMS fixture (a PNG and a PDF) from ``phone``, with a fresh MessageSid."""
    raw = (REPO / "tests" / "fixtures" / "twilio_mms_inbound.form").read_bytes().rstrip(b"\n")
    raw = raw.replace(b"%2B16505551234", b"%2B" + phone[1:].encode())
    return raw.replace(b"MM6f708192a3b4c5d6e7f8091a2b3c4d5e", f"MM{digits(32)}".encode())


def media_of(stack: StackClient, customer_id: str) -> list[dict[str, Any]]:
    messages = [i for i in timeline(stack, customer_id) if i.get("kind") == "message"]
    return [m for i in messages for m in i.get("attachments") or [i.get("media")] if m]


def copied(stack: StackClient, customer_id: str, count: int) -> list[dict[str, Any]]:
    shown = media_of(stack, customer_id)
    return shown if len(shown) == count and all(m.get("state") == "stored" for m in shown) else []


def objects(stack: StackClient) -> list[str]:
    listed = stack.client("s3").list_objects_v2(Bucket=stack.physical("MediaBucket"), Prefix="media/demo/")
    return [o["Key"] for o in listed.get("Contents", [])]


def test_a_photo_and_an_mms_are_copied_linked_and_erased(local_stack: StackClient) -> None:
    phone, bsuid = "+" + new_phone(), new_bsuid()
    assert post_meta(local_stack, photo_from(phone, bsuid, digits(16))).status == 200
    mms_phone = "+" + new_phone()
    assert post_twilio(local_stack, mms_from(mms_phone)).status == 200

    lena = eventually(lambda: contact(local_stack, bsuid=bsuid))
    (photo,) = eventually(lambda: copied(local_stack, lena["id"], 1))
    sam = eventually(lambda: contact(local_stack, phone=mms_phone))
    png, pdf = eventually(lambda: copied(local_stack, sam["id"], 2))
    assert (photo["mime_type"], png["mime_type"], pdf["mime_type"]) == (
        "image/jpeg",
        "image/png",
        "application/pdf",
    )

    for shown in (photo, png, pdf):
        with urllib.request.urlopen(shown["url"], timeout=5) as answer:  # noqa: S310 - the emulator's URL
            data = answer.read()
        assert len(data) == shown["size"] and hashlib.sha256(data).hexdigest() == shown["sha256"]
    # This test's own objects (another test's media may sit under media/demo/ too): the keys its links name.
    linked = [urllib.parse.urlsplit(shown["url"]).path for shown in (photo, png, pdf)]
    keys = [k for k in objects(local_stack) if any(path.endswith("/" + k) for path in linked)]
    assert sorted(k.rsplit("/", 1)[1] for k in keys) == sorted(
        [photo["url"].split("?")[0].rsplit("/", 1)[1], "0.png", "1.pdf"]
    )

    for customer in (lena, sam):
        assert local_stack.request("DELETE", f"/contacts/{customer['id']}").status == 204
    assert not set(keys) & set(objects(local_stack))
