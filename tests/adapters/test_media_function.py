"""The media function end to end against moto (table, media queue and DLQ, bucket provisioned from
template.yaml) and the sandbox providers on a real local HTTP server: ingest stores a message and queues
its attachments; the real handler copies them with Meta's two-step download (the tenant's token) and
Twilio's basic auth, refuses what is too large or of another type, retries a failing download and
dead-letters it, never fetches a stored one twice; erasure deletes the copies."""

from __future__ import annotations

import base64
import copy
import json
import urllib.error
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from types import ModuleType
from typing import Any

import boto3
import pytest
from aws_lambda_powertools.utilities import parameters
from botocore.config import Config

from crossroute.contacts import Contacts
from crossroute.inbound_queue import QueuedEvent
from crossroute.ingest import Ingest
from crossroute.media_queue import SqsMediaJobs
from crossroute.parsing.queued import parse
from crossroute.store.identity_store import DynamoIdentityStore
from crossroute.store.media_store import S3MediaObjects
from crossroute.tenants import TenantRegistry
from crossroute.webhooks import meta as meta_webhook
from infra.local.emulated import emulated_account
from infra.local.provision import Provisioner
from infra.local.sandbox import Sandbox
from infra.local.sqs_runner import build_sqs_event
from tests.fakes import RecordingPublisher
from tests.support import (
    APP_SECRET,
    REPO,
    TENANT,
    TWILIO_ACCOUNT,
    TWILIO_TOKEN,
    LambdaContext,
    function_environment,
    load_handler,
    media_environment,
    registry_document,
    sandbox_providers,
)

PHOTO_ID = "1029384756102938"  # the image of meta_message_types.json (announced image/jpeg)
WABA = "100000000000000"
MEDIA_RESOURCES = ("MediaBucket", "MediaBucketPolicy", "MediaQueue", "MediaDeadLetterQueue", "MaskingKey")


def payload(name: str) -> bytes:
    path = REPO / "tests" / "fixtures" / name
    data = (path if path.is_file() else REPO / "tests" / "fixtures" / "core" / name).read_bytes()
    return data.rstrip(b"\n") if name.endswith(".form") else data


def photo_webhook(message_id: str = "wamid.PHOTO1", media_id: str = PHOTO_ID) -> dict[str, Any]:
    """A Meta webhook with one photo of Lena (meta_message_types.json's image)."""
    doc = json.loads(payload("meta_message_types.json"))
    change = doc["entry"][0]["changes"][0]
    image = next(m for m in change["value"]["messages"] if m["type"] == "image")
    image = {**copy.deepcopy(image), "id": message_id}
    image["image"]["id"] = media_id
    change["value"]["messages"] = [image]
    return doc


@dataclass
class World:
    account: Provisioner
    sandbox: Sandbox
    base_url: str
    module: ModuleType
    ingest: Ingest
    store: DynamoIdentityStore

    @property
    def bucket(self) -> str:
        return str(self.account.ref("MediaBucket"))

    def meta(self, doc: dict[str, Any]) -> None:
        registry = TenantRegistry.from_json(registry_document())
        for queued in meta_webhook.split(registry, APP_SECRET, doc):
            self.ingest.handle(parse(queued.body).events)

    def twilio(self, fixture: str) -> None:
        form = payload(fixture).decode()
        body = QueuedEvent.build(
            tenant=TENANT, sender="x", kind="twilio.message", content={"form": form}
        ).body
        self.ingest.handle(parse(body).events)

    def run(self, *, rounds: int = 1) -> list[list[str]]:
        """Receive the media queue's jobs and invoke the real handler, ``rounds`` times; the failures."""
        sqs, url = boto3.client("sqs"), str(self.account.ref("MediaQueue"))
        arn = str(self.account.get_att("MediaQueue", "Arn"))
        failures = []
        for _ in range(rounds):
            messages = sqs.receive_message(
                QueueUrl=url, MaxNumberOfMessages=10, AttributeNames=["All"], WaitTimeSeconds=1
            ).get("Messages", [])
            if not messages:
                break
            answer = self.module.lambda_handler(build_sqs_event(messages, arn), LambdaContext())
            failed = [f["itemIdentifier"] for f in answer["batchItemFailures"]]
            for message in messages:
                if message["MessageId"] not in failed:
                    sqs.delete_message(QueueUrl=url, ReceiptHandle=message["ReceiptHandle"])
            failures.append(failed)
        return failures

    def media(self, provider: str, message_id: str) -> dict[str, Any]:
        item = self.store.message(TENANT, provider, message_id)
        assert item is not None and item.media is not None
        return dict(item.media.as_dict())

    def object(self, key: str) -> bytes:
        return bytes(boto3.client("s3").get_object(Bucket=self.bucket, Key=key)["Body"].read())

    def keys(self) -> list[str]:
        listed = boto3.client("s3").list_objects_v2(Bucket=self.bucket).get("Contents", [])
        return sorted(o["Key"] for o in listed)

    def served(self, media_id: str, mime_type: str) -> bytes:
        return self.sandbox.media.file(media_id, mime_type)


@pytest.fixture
def world(monkeypatch: pytest.MonkeyPatch) -> Iterator[World]:
    with sandbox_providers() as (sandbox, base_url), emulated_account(*MEDIA_RESOURCES) as account:
        env = function_environment(account, "MediaFunction", **media_environment(base_url))
        for name, value in env.items():
            monkeypatch.setenv(name, value)
        parameters.clear_caches()  # type: ignore[no-untyped-call]
        module = load_handler("media")
        sqs = boto3.client("sqs")
        store = DynamoIdentityStore()
        jobs = SqsMediaJobs(lambda: sqs, str(account.ref("MediaQueue")))
        ingest = Ingest(store, RecordingPublisher(), sleep=lambda _: None, media_jobs=jobs)
        yield World(account, sandbox, base_url, module, ingest, store)


# --------------------------------------------------------------------------- copies


def test_a_whatsapp_photo_is_fetched_in_two_steps_with_the_token_and_copied_once(world: World) -> None:
    world.meta(photo_webhook())
    assert world.media("meta", "wamid.PHOTO1")["0"]["state"] == "pending"  # until the copy is done
    assert world.run() == [[]]
    (stored,) = world.media("meta", "wamid.PHOTO1").values()
    photo = world.served(PHOTO_ID, "image/jpeg")
    assert (
        stored["state"] == "stored" and stored["size"] == len(photo) and stored["mime_type"] == "image/jpeg"
    )
    assert world.keys() == [stored["key"]] and world.object(stored["key"]) == photo
    assert "wamid" not in stored["key"] and "14155550142" not in stored["key"]

    # Redelivered (the webhook again, so ingest queues the job again): the provider is not asked again.
    world.sandbox.media.update({PHOTO_ID: {"status": 500}})
    world.meta(photo_webhook())
    assert world.run() == [[]]
    assert world.media("meta", "wamid.PHOTO1")["0"] == stored


def test_a_twilio_mms_is_fetched_with_the_account_s_basic_auth_each_of_its_type(world: World) -> None:
    world.twilio("twilio_mms_inbound.form")
    assert world.run() == [[]]
    media = world.media("twilio", "MM6f708192a3b4c5d6e7f8091a2b3c4d5e")
    assert [(m["type"], m["mime_type"], m["state"]) for _, m in sorted(media.items())] == [
        ("image", "image/png", "stored"),
        ("document", "application/pdf", "stored"),
    ]
    assert world.object(media["1"]["key"]).startswith(b"%PDF")


def test_the_fake_providers_check_auth_as_the_real_ones(world: World) -> None:
    def get(path: str, headers: dict[str, str] | None = None) -> tuple[int, bytes]:
        request = urllib.request.Request(world.base_url + path, headers=headers or {})  # noqa: S310
        try:
            with urllib.request.urlopen(request, timeout=5) as answer:  # noqa: S310 - the local sandbox
                return answer.status, answer.read()
        except urllib.error.HTTPError as error:
            return error.code, error.read()

    assert get(f"/_sandbox/graph/v24.0/{PHOTO_ID}")[0] == 401
    assert get(f"/_sandbox/graph/v24.0/{PHOTO_ID}", {"Authorization": "Bearer nope"})[0] == 401
    status, body = get(f"/_sandbox/graph/v24.0/{PHOTO_ID}", {"Authorization": "Bearer local-access-token"})
    assert status == 200
    url = json.loads(body)["url"].removeprefix(world.base_url)
    assert get(url)[0] == 401  # the short-lived URL needs the token too
    assert get(url, {"Authorization": "Bearer local-access-token"})[0] == 200
    assert get(url.replace("sig=", "sig=0"), {"Authorization": "Bearer local-access-token"})[0] == 404
    mms = f"/_sandbox/twilio/2010-04-01/Accounts/{TWILIO_ACCOUNT}/Messages/MM{'1' * 32}/Media/ME{'2' * 32}"
    assert get(mms)[0] == 401
    basic = base64.b64encode(f"{TWILIO_ACCOUNT}:{TWILIO_TOKEN}".encode()).decode()
    assert get(mms, {"Authorization": f"Basic {basic}", "Accept": "image/png"})[1].startswith(b"\x89PNG")


# --------------------------------------------------------------------------- refusals and failures


@pytest.mark.parametrize(
    ("served", "reason"),
    [
        ({"size": 6 * 1024 * 1024}, "too_large"),  # an image over Meta's 5 MB
        ({"mime_type": "image/png"}, "type_mismatch"),  # the webhook announced image/jpeg
        ({"status": 404}, "not_found"),  # the media id expired (after 7 days)
    ],
)
def test_a_refused_attachment_is_recorded_failed_at_once_and_not_kept(
    world: World, served: dict[str, Any], reason: str
) -> None:
    world.sandbox.media.update({PHOTO_ID: served})
    world.meta(photo_webhook())
    assert world.run() == [[]]  # done: a refusal is not retried
    assert world.media("meta", "wamid.PHOTO1")["0"]["state"] == "failed"
    assert world.media("meta", "wamid.PHOTO1")["0"]["reason"] == reason
    assert world.keys() == []


def test_a_failing_download_is_retried_then_recorded_failed_and_dead_lettered(world: World) -> None:
    world.sandbox.media.update({PHOTO_ID: {"status": 503}})
    world.meta(photo_webhook())
    failures = world.run(rounds=8)
    assert len(failures) == 5 and all(len(f) == 1 for f in failures)  # maxReceiveCount, then SQS moves it
    assert world.media("meta", "wamid.PHOTO1")["0"] == {
        **{k: v for k, v in world.media("meta", "wamid.PHOTO1")["0"].items() if k in ("type", "key")},
        "mime_type": "image/jpeg",
        "state": "failed",
        "reason": "download_failed",
    }
    sqs = boto3.client("sqs")
    dead = sqs.receive_message(QueueUrl=str(world.account.ref("MediaDeadLetterQueue"))).get("Messages", [])
    assert [json.loads(m["Body"])["media_id"] for m in dead] == [PHOTO_ID]


def test_a_history_placeholder_is_kept_as_such_and_nothing_is_fetched(world: World) -> None:
    world.meta(json.loads(payload("meta_history_chunk.json")))
    placeholder = "wamid.HBgLMTQxNTU1NTAxNDIVAgASGBJISVNUMDAwMDAwMDAwMDAzAA=="
    assert world.media("meta", placeholder) == {"0": {"type": "unknown", "state": "placeholder"}}
    assert world.run() == [] and world.keys() == []  # no job was queued


# --------------------------------------------------------------------------- the timeline and erasure


def test_the_timeline_links_the_copy_and_erasure_deletes_it(world: World) -> None:
    world.meta(photo_webhook())
    world.twilio("twilio_whatsapp_inbound_phone_image.form")
    s3 = S3MediaObjects(boto3.client("s3", config=Config(signature_version="s3v4")), world.bucket)
    contacts = Contacts(DynamoIdentityStore(media_objects=lambda: s3), media_links=s3.link)
    lena = world.store.message(TENANT, "meta", "wamid.PHOTO1")
    assert lena is not None and lena.customer_id
    pending = contacts.timeline(TENANT, lena.customer_id, limit=None, before=None)["items"]
    assert next(i["media"] for i in pending if i["kind"] == "message") == {
        "type": "image",
        "mime_type": "image/jpeg",
        "state": "pending",
    }
    world.run()
    items = contacts.timeline(TENANT, lena.customer_id, limit=None, before=None)["items"]
    shown = [i["media"] for i in items if i["kind"] == "message"]
    assert len(shown) == 2 and all(m["state"] == "stored" and "key" not in m for m in shown)
    assert all(m["url"].startswith(f"https://{world.bucket}.s3.amazonaws.com/media/demo/") for m in shown)
    assert "X-Amz-Expires=600" in shown[0]["url"] and len(world.keys()) == 2

    erased = contacts.erase(TENANT, lena.customer_id)
    assert erased["counts"]["media_objects_deleted"] == 2 and world.keys() == []
