"""template.yaml gives the dispatch function a PUBLIC_BASE_URL even when the PublicBaseUrl parameter is
empty (its default): the HTTP API's own endpoint, so Twilio's SMS status callbacks reach crossroute."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from infra.local.functions import function_specs, merged_environment
from infra.local.intrinsics import Resolver, parameter_values, pseudo_parameters
from infra.template import load_template

TEMPLATE = load_template(Path(__file__).resolve().parents[2] / "template.yaml")
RESOURCES: dict[str, Any] = TEMPLATE["Resources"]
DEFAULT_ENDPOINT = "https://${HttpApi}.execute-api.${AWS::Region}.${AWS::URLSuffix}"
STATUS_PATH = "/webhooks/twilio/status"  # crossroute.tenant_setup: <PUBLIC_BASE_URL>/webhooks/twilio/status
# The functions that read PUBLIC_BASE_URL: the webhooks (crossroute.config.Settings) and dispatch.
READERS = {"WhatsAppWebhookFunction", "TwilioWebhookFunction", "DispatchFunction"}


def _references(node: Any) -> set[str]:
    """Names a template fragment refers to through Ref, Fn::GetAtt or ${...} in Fn::Sub."""
    if isinstance(node, list):
        return set().union(*(_references(n) for n in node))
    if not isinstance(node, dict):
        return set()
    found: set[str] = set()
    for key, value in node.items():
        if key == "Ref":
            found.add(str(value))
        elif key == "Fn::GetAtt":
            found.add(str(value[0]))
        elif key == "Fn::Sub":
            text = value if isinstance(value, str) else value[0]
            found |= {part.split("}")[0].split(".")[0] for part in str(text).split("${")[1:]}
        found |= _references(value)
    return found


def test_condition_is_public_base_url_not_empty() -> None:
    assert TEMPLATE["Parameters"]["PublicBaseUrl"]["Default"] == ""
    assert TEMPLATE["Conditions"]["HasPublicBaseUrl"] == {
        "Fn::Not": [{"Fn::Equals": [{"Ref": "PublicBaseUrl"}, ""]}]
    }
    assert "status callback" in " ".join(TEMPLATE["Parameters"]["PublicBaseUrl"]["Description"].split())


def test_dispatch_falls_back_to_the_http_api_default_endpoint() -> None:
    env = RESOURCES["DispatchFunction"]["Properties"]["Environment"]["Variables"]
    assert env["PUBLIC_BASE_URL"] == {
        "Fn::If": ["HasPublicBaseUrl", {"Ref": "PublicBaseUrl"}, {"Fn::Sub": DEFAULT_ENDPOINT}]
    }
    # The endpoint has no stage path only because the API serves the $default stage.
    assert RESOURCES["HttpApi"]["Properties"].get("StageName", "$default") == "$default"
    # ... and the status callback path is one of that API's routes.
    twilio_events = RESOURCES["TwilioWebhookFunction"]["Properties"]["Events"].values()
    assert {
        (e["Properties"]["Path"], e["Properties"]["Method"], e["Properties"]["ApiId"]["Ref"])
        for e in twilio_events
    } >= {(STATUS_PATH, "POST", "HttpApi")}


def test_no_function_routed_by_the_api_refers_to_it() -> None:
    """HttpApi's definition refers to the functions it routes to; they must not refer back (a cycle)."""
    globals_fn = TEMPLATE["Globals"]["Function"]
    assert "HttpApi" not in _references(globals_fn)
    for logical_id, resource in RESOURCES.items():
        if resource["Type"] != "AWS::Serverless::Function":
            continue
        events = (resource["Properties"].get("Events") or {}).values()
        if any(e["Type"] == "HttpApi" for e in events):
            props = {k: v for k, v in resource["Properties"].items() if k != "Events"}
            assert "HttpApi" not in _references(props), logical_id
    assert "HttpApi" in _references(RESOURCES["DispatchFunction"]["Properties"]["Environment"])


def _specs(public_base_url: str | None) -> list[Any]:
    """Each function's resolved environment (Globals merged) for a deployment in eu-west-1."""
    overrides = {} if public_base_url is None else {"PublicBaseUrl": public_base_url}
    resolver = Resolver(
        TEMPLATE,
        parameters=parameter_values(TEMPLATE, overrides),
        ref=lambda name: "a1b2c3d4e5" if name == "HttpApi" else f"physical-{name}",
        get_att=lambda name, attribute: f"physical-{name}.{attribute}",
        pseudo=pseudo_parameters(region="eu-west-1"),
    )
    return function_specs(TEMPLATE, resolver.resolve, Path("."), name_for=str)


def _environments(public_base_url: str | None) -> dict[str, dict[str, str]]:
    return {spec.logical_id: spec.environment for spec in _specs(public_base_url)}


def test_default_deployment_sends_status_callbacks_to_the_api() -> None:
    envs = _environments(None)
    assert (
        envs["DispatchFunction"]["PUBLIC_BASE_URL"]
        == "https://a1b2c3d4e5.execute-api.eu-west-1.amazonaws.com"
    )
    # The webhooks keep the empty value: they derive their URL from the request's host.
    assert envs["TwilioWebhookFunction"]["PUBLIC_BASE_URL"] == ""
    assert envs["WhatsAppWebhookFunction"]["PUBLIC_BASE_URL"] == ""


@pytest.mark.parametrize("base", ["https://hooks.example.com", "https://hooks.example.com/crossroute"])
def test_a_set_public_base_url_is_used_by_every_function_that_reads_it(base: str) -> None:
    envs = _environments(base)
    assert {name for name, env in envs.items() if "PUBLIC_BASE_URL" in env} >= READERS
    assert {env["PUBLIC_BASE_URL"] for env in envs.values() if "PUBLIC_BASE_URL" in env} == {base}
    # The local stack sets PublicBaseUrl to its own URL and runs every handler in one process, where
    # the functions' environments must agree (EnvironmentConflict otherwise).
    assert merged_environment(_specs(base))["PUBLIC_BASE_URL"] == base
