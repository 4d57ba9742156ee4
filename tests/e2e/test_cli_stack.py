"""The deployed path of the CLI (``crossroute --stack NAME``), tested against the emulator: the local
stack registers its outputs and parameters as the CloudFormation stack ``crossroute-local`` in the
emulator (``infra/local/cloudformation.py``), and the CLI runs with ``AWS_ENDPOINT_URL`` pointing there
(botocore honours it for every client), so it reads the stack with ``DescribeStacks`` exactly as it
reads a deployed one. The local gateway remembers whether each request was SigV4-signed
(``GET /_local/requests``): the IAM routes must arrive signed for ``execute-api`` with the caller's
credentials, the webhooks unsigned."""

from __future__ import annotations

import secrets
from typing import Any

import pytest

from infra.local import StackClient
from tests.support import cli_environment, contact, eventually, new_bsuid, run_cli

pytestmark = pytest.mark.e2e


def deployed_env(stack: StackClient, access_key: str) -> dict[str, str]:
    """The caller's AWS configuration: its own keys, no local stack port, AWS_ENDPOINT_URL at the emulator."""
    return cli_environment(
        AWS_ENDPOINT_URL=stack.aws_endpoint,
        AWS_ACCESS_KEY_ID=access_key,
        AWS_SECRET_ACCESS_KEY=secrets.token_hex(20),
        AWS_CONFIG_FILE="/dev/null",
        AWS_SHARED_CREDENTIALS_FILE="/dev/null",
    )


def registered(stack: StackClient) -> dict[str, Any]:
    cloudformation = stack.client("cloudformation")
    name = stack.outputs["stack_name"]
    found = eventually(lambda: _described(cloudformation, name), timeout=20)
    return dict(found)


def _described(cloudformation: Any, name: str) -> dict[str, Any] | None:
    try:
        return dict(cloudformation.describe_stacks(StackName=name)["Stacks"][0])
    except cloudformation.exceptions.ClientError:
        return None


def test_the_local_stack_is_a_cloudformation_stack_in_the_emulator(local_stack: StackClient) -> None:
    stack = registered(local_stack)
    assert stack["StackName"] == "crossroute-local"
    outputs = {o["OutputKey"]: o["OutputValue"] for o in stack["Outputs"]}
    expected = {k: v for k, v in local_stack.outputs["outputs"].items() if v}
    assert outputs == expected
    assert outputs["ApiUrl"] == local_stack.base_url
    parameters = {p["ParameterKey"]: p["ParameterValue"] for p in stack["Parameters"]}
    assert parameters == local_stack.outputs["parameters"]
    assert parameters["PublicBaseUrl"] == local_stack.outputs["public_base_url"]


def recent(stack: StackClient) -> list[dict[str, Any]]:
    found: list[dict[str, Any]] = stack.get("/_local/requests").json()["requests"]
    return found


def mark(stack: StackClient) -> int:
    """The number of the last request the gateway saw."""
    return max((r["n"] for r in recent(stack)), default=0)


def requests_since(stack: StackClient, since: int) -> list[dict[str, Any]]:
    return [r for r in recent(stack) if r["n"] > since]


def test_with_stack_the_iam_routes_are_signed_and_the_webhooks_are_not(local_stack: StackClient) -> None:
    registered(local_stack)
    access_key = "AKIA" + secrets.token_hex(8).upper()
    env = deployed_env(local_stack, access_key)
    deployed = ["--stack", "crossroute-local", "--region", "us-east-1"]
    since = mark(local_stack)
    bsuid = new_bsuid()

    written = run_cli(
        *deployed, "simulate", "whatsapp", "--bsuid", bsuid, "--text", "hi", "--wait", "--json", env=env
    )
    assert written.code == 0, written.stderr
    customer_id = written.json()["customer_id"]
    found = run_cli(*deployed, "contacts", "get", "--bsuid", bsuid, "--json", env=env)
    assert found.code == 0, found.stderr
    sent = run_cli(*deployed, "send", "--to-id", customer_id, "--text", "signed", "--wait", "--json", env=env)
    assert sent.code == 0, sent.stderr
    assert sent.json()["outcome"] == "sent"  # polled from GET /messages/{request_id}, signed
    shown = run_cli(*deployed, "tenants", "show", "--json", env=env)
    assert shown.code == 0, shown.stderr
    assert list(shown.json()["tenants"]) == ["demo"]

    seen = requests_since(local_stack, since)
    signed = {r["route_key"] for r in seen if r["sigv4"]}
    assert signed == {
        "GET /contacts",
        "GET /contacts/{customer_id}/timeline",
        "POST /messages",
        "GET /messages/{request_id}",
    }
    for request in seen:
        if request["sigv4"] is None:
            assert request["route_key"] == "POST /webhooks/whatsapp"
            continue
        key, _date, region, service, terminator = request["sigv4"]["credential"].split("/")
        assert (key, region, service, terminator) == (access_key, "us-east-1", "execute-api", "aws4_request")
        assert "host" in request["sigv4"]["signed_headers"].split(";")
    assert any(r["route_key"] == "POST /webhooks/whatsapp" for r in seen)
    assert found.json() == contact(local_stack, bsuid=bsuid)  # (this test's own request is not signed)


def test_the_local_path_signs_nothing(local_stack: StackClient) -> None:
    since = mark(local_stack)
    done = run_cli("contacts", "get", "--bsuid", new_bsuid(), stack=local_stack)
    assert done.code == 1
    (request,) = [r for r in requests_since(local_stack, since) if r["route_key"] == "GET /contacts"]
    assert request["sigv4"] is None


def test_an_unknown_stack_exits_1(local_stack: StackClient) -> None:
    env = deployed_env(local_stack, "AKIANOSUCHSTACK")
    done = run_cli(
        "--stack", "no-such-stack", "--region", "us-east-1", "contacts", "get", "--id", "c1", env=env
    )
    assert done.code == 1
    assert "stack no-such-stack" in done.stderr and "does not exist" in done.stderr


def test_a_stack_without_a_region_is_bad_usage(local_stack: StackClient) -> None:
    done = run_cli(
        "--stack", "crossroute-local", "contacts", "get", "--id", "c1", env=deployed_env(local_stack, "AKIA1")
    )
    assert done.code == 2
    assert "--stack needs a region" in done.stderr
