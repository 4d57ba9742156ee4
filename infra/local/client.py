"""Talk to a running local stack: HTTP requests, boto3 clients on the emulator, physical names.

The physical names come from ``GET /_local/outputs`` (see ``stack.py``), so nothing here repeats the
template: ``client.physical("InboundQueue")`` is whatever ``Ref InboundQueue`` resolved to.
"""

from __future__ import annotations

import json
import time
import urllib.error
import urllib.request
from collections.abc import Mapping
from dataclasses import dataclass
from functools import cached_property
from typing import Any
from urllib.parse import urlencode

import boto3

from .aws import DUMMY_CREDENTIALS, REGION

__all__ = ["HttpResponse", "StackClient", "wait_healthy"]


@dataclass
class HttpResponse:
    status: int
    headers: dict[str, str]  # lower-case names
    body: bytes

    @property
    def text(self) -> str:
        return self.body.decode("utf-8")

    def json(self) -> Any:
        return json.loads(self.body)


def http_request(
    method: str,
    url: str,
    *,
    body: bytes | None = None,
    headers: Mapping[str, str] | None = None,
    timeout: float = 30,
) -> HttpResponse:
    request = urllib.request.Request(url, data=body, method=method.upper(), headers=dict(headers or {}))  # noqa: S310
    try:
        with urllib.request.urlopen(request, timeout=timeout) as resp:  # noqa: S310 - loopback URLs
            return HttpResponse(resp.status, {k.lower(): v for k, v in resp.headers.items()}, resp.read())
    except urllib.error.HTTPError as err:
        with err:
            return HttpResponse(err.code, {k.lower(): v for k, v in err.headers.items()}, err.read())


def wait_healthy(base_url: str, timeout: float = 30, *, alive: Any = None) -> None:
    """Poll ``/_local/health`` until it answers 200; ``alive()`` returning False aborts early."""
    deadline = time.monotonic() + timeout
    last = "no answer"
    while time.monotonic() < deadline:
        if alive is not None and not alive():
            raise RuntimeError("the local stack exited during startup")
        try:
            resp = http_request("GET", base_url + "/_local/health", timeout=2)
            if resp.status == 200:
                return
            last = f"HTTP {resp.status}"
        except OSError as exc:
            last = str(exc)
        time.sleep(0.1)
    raise TimeoutError(f"{base_url}/_local/health not healthy after {timeout:.0f} s ({last})")


class StackClient:
    """A running local stack, seen from outside (tests, scripts)."""

    def __init__(self, base_url: str) -> None:
        self.base_url = base_url.rstrip("/")
        resp = http_request("GET", self.base_url + "/_local/outputs")
        if resp.status != 200:
            raise RuntimeError(f"GET /_local/outputs answered {resp.status}: {resp.text}")
        self.outputs: dict[str, Any] = dict(resp.json())
        self.process: Any = None  # the StackProcess that runs it, when started by one

    # ------------------------------------------------------------------ names
    @property
    def aws_endpoint(self) -> str:
        return str(self.outputs["aws_endpoint"])

    @property
    def resources(self) -> dict[str, dict[str, Any]]:
        return dict(self.outputs["resources"])

    def physical(self, logical_id: str) -> Any:
        """What ``Ref <logical_id>`` resolved to (table name, queue URL, bus name, secret ARN, ...)."""
        try:
            return self.outputs["resources"][logical_id]["ref"]
        except KeyError:
            raise KeyError(f"no resource {logical_id!r} in the local stack") from None

    def attribute(self, logical_id: str, name: str) -> Any:
        """What ``Fn::GetAtt <logical_id>.<name>`` resolved to."""
        return self.outputs["resources"][logical_id][name]

    def queue_urls(self) -> dict[str, str]:
        return {lid: r["ref"] for lid, r in self.resources.items() if r["type"] == "AWS::SQS::Queue"}

    @property
    def table_name(self) -> str:
        return str(self.physical("IdentityTable"))

    @property
    def inbound_queue_url(self) -> str:
        return str(self.physical("InboundQueue"))

    @property
    def dead_letter_queue_url(self) -> str:
        return str(self.physical("InboundDeadLetterQueue"))

    @property
    def event_bus_name(self) -> str:
        return str(self.physical("EventBus"))

    @property
    def tenants_secret_arn(self) -> str:
        return str(self.physical("TenantsSecret"))

    # ------------------------------------------------------------------ AWS
    @cached_property
    def session(self) -> boto3.session.Session:
        return boto3.session.Session(
            aws_access_key_id=DUMMY_CREDENTIALS["aws_access_key_id"],
            aws_secret_access_key=DUMMY_CREDENTIALS["aws_secret_access_key"],
            region_name=REGION,
        )

    def client(self, service: str) -> Any:
        """A boto3 client on the emulator, e.g. ``client("sqs")``."""
        return self.session.client(service, endpoint_url=self.aws_endpoint)  # type: ignore[call-overload]

    def purge_queues(self, *logical_ids: str) -> None:
        """Empty the given queues (all of the stack's queues when none are given)."""
        sqs = self.client("sqs")
        urls = self.queue_urls()
        for lid in logical_ids or tuple(urls):
            sqs.purge_queue(QueueUrl=urls[lid])

    def drain_queue(
        self, logical_id: str = "InboundQueue", *, wait_seconds: float = 1.0
    ) -> list[dict[str, Any]]:
        """Receive and delete every message of a queue until it stays empty for ``wait_seconds``.

        Returns the messages (``Body``, ``Attributes`` incl. ``MessageGroupId``, ``MessageAttributes``),
        oldest first. Note: an SQS event source on the same queue competes for the messages.
        """
        sqs = self.client("sqs")
        url = self.queue_urls()[logical_id]
        messages: list[dict[str, Any]] = []
        deadline = time.monotonic() + wait_seconds
        while True:
            got = sqs.receive_message(
                QueueUrl=url,
                MaxNumberOfMessages=10,
                WaitTimeSeconds=0,
                AttributeNames=["All"],
                MessageSystemAttributeNames=["All"],
                MessageAttributeNames=["All"],
            ).get("Messages", [])
            if got:
                sqs.delete_message_batch(
                    QueueUrl=url,
                    Entries=[{"Id": str(i), "ReceiptHandle": m["ReceiptHandle"]} for i, m in enumerate(got)],
                )
                messages.extend(got)
                deadline = time.monotonic() + wait_seconds
            elif time.monotonic() >= deadline:
                break
            else:
                time.sleep(0.05)
        return messages

    # ------------------------------------------------------------------ HTTP
    def request(
        self,
        method: str,
        path: str,
        *,
        body: bytes | str | None = None,
        json_body: Any = None,
        form: Mapping[str, str] | None = None,
        query: Mapping[str, str] | str | None = None,
        headers: Mapping[str, str] | None = None,
        timeout: float = 30,
    ) -> HttpResponse:
        """A request to the local gateway. ``form`` sends ``application/x-www-form-urlencoded``."""
        hdrs = dict(headers or {})
        data: bytes | None
        if json_body is not None:
            data = json.dumps(json_body).encode()
            hdrs.setdefault("Content-Type", "application/json")
        elif form is not None:
            data = urlencode(form).encode()
            hdrs.setdefault("Content-Type", "application/x-www-form-urlencoded")
        else:
            data = body.encode() if isinstance(body, str) else body
        url = self.base_url + path
        if query:
            url += "?" + (query if isinstance(query, str) else urlencode(query))
        return http_request(method, url, body=data, headers=hdrs, timeout=timeout)

    def get(self, path: str, **kwargs: Any) -> HttpResponse:
        return self.request("GET", path, **kwargs)

    def post(self, path: str, **kwargs: Any) -> HttpResponse:
        return self.request("POST", path, **kwargs)
