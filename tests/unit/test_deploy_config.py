"""samconfig.toml deploys template.yaml: each environment's values are ones CloudFormation accepts, the
SAM transform renders the stack with them (offline: no AWS call), and the README documents every parameter.

The transform is aws-sam-translator's, the library ``sam deploy`` hands the template to (through
CloudFormation's ``AWS::Serverless`` transform). The template is first "packaged" the way ``sam deploy``
does it (local code folders become ``s3://`` locations), then transformed with a managed-policy loader
that knows no policy; botocore is blocked meanwhile, so any AWS call fails the test. What the rendered
stack creates is then decided as CloudFormation would: a resource or output with a false ``Condition``
is not created.
"""

from __future__ import annotations

import copy
import json
import re
import subprocess
import tomllib
from pathlib import Path
from typing import Any

import pytest

from infra.template import load_template

ROOT = Path(__file__).resolve().parents[2]
SAMCONFIG: dict[str, Any] = tomllib.loads((ROOT / "samconfig.toml").read_text())
TEMPLATE: dict[str, Any] = load_template(ROOT / "template.yaml")
PARAMETERS: dict[str, Any] = TEMPLATE["Parameters"]
RESOURCES: dict[str, Any] = TEMPLATE["Resources"]
ENVIRONMENTS = ("default", "prod")
SAM_PYTHON = ROOT / ".venv-sam" / "bin" / "python"

DOMAIN_RESOURCES = {
    "CustomDomain": "AWS::ApiGatewayV2::DomainName",
    "CustomDomainMapping": "AWS::ApiGatewayV2::ApiMapping",
}
DOMAIN_OUTPUTS = {"CustomDomainTarget", "CustomDomainHostedZoneId"}
A_DOMAIN = {
    "CustomDomainName": "api.example.com",
    "CustomDomainCertificateArn": "arn:aws:acm:us-east-1:123456789012:certificate/0a1b2c3d-4e5f-6789",
}


# ------------------------------------------------------------------ reading samconfig.toml


def deploy_settings(env: str) -> dict[str, Any]:
    """What ``sam deploy --config-env <env>`` reads: the global parameters, then the deploy ones."""
    sections = SAMCONFIG[env]
    return {**sections.get("global", {}).get("parameters", {}), **sections["deploy"]["parameters"]}


def overrides(env: str) -> dict[str, str]:
    """``parameter_overrides`` as ``Key=Value`` strings (a value may be double-quoted, "" is empty)."""
    found: dict[str, str] = {}
    for entry in deploy_settings(env)["parameter_overrides"]:
        key, sep, value = entry.partition("=")
        assert sep and re.fullmatch(r"[A-Za-z0-9]+", key), f"{env}: not Key=Value: {entry!r}"
        if len(value) >= 2 and value[0] == value[-1] == '"':
            value = value[1:-1]
        assert key not in found, f"{env}: {key} given twice"
        found[key] = value
    return found


def values(env: str, extra: dict[str, str] | None = None) -> dict[str, str]:
    """Every parameter's value in ``env``: its override, else its default."""
    given = {**overrides(env), **(extra or {})}
    return {name: str(given.get(name, spec.get("Default", ""))) for name, spec in PARAMETERS.items()}


# ------------------------------------------------------------------ conditions, as CloudFormation decides


def evaluate(node: Any, params: dict[str, str], conditions: dict[str, Any]) -> Any:
    """The value of a condition expression (``Fn::Equals``, ``Fn::Not``, ``Fn::And``, ``Fn::Or``,
    ``Condition``, ``Ref`` to a parameter)."""
    if isinstance(node, dict) and len(node) == 1:
        ((key, arg),) = node.items()
        if key == "Ref":
            return params[arg]
        if key == "Condition":
            return evaluate(conditions[arg], params, conditions)
        if key == "Fn::Equals":
            return str(evaluate(arg[0], params, conditions)) == str(evaluate(arg[1], params, conditions))
        if key == "Fn::Not":
            return not evaluate(arg[0], params, conditions)
        if key == "Fn::And":
            return all(evaluate(a, params, conditions) for a in arg)
        if key == "Fn::Or":
            return any(evaluate(a, params, conditions) for a in arg)
        raise AssertionError(f"not a condition function this test evaluates: {key}")
    return node


def created(items: dict[str, Any], params: dict[str, str], conditions: dict[str, Any]) -> dict[str, Any]:
    """The resources (or outputs) of ``items`` that CloudFormation creates with ``params``."""
    return {
        name: item
        for name, item in items.items()
        if "Condition" not in item or evaluate({"Condition": item["Condition"]}, params, conditions)
    }


# ------------------------------------------------------------------ the transform, offline


def packaged(template: dict[str, Any]) -> dict[str, Any]:
    """The template as ``sam deploy`` packages it: code folders uploaded, referred to by S3 location."""
    doc = copy.deepcopy(template)
    for resource in doc["Resources"].values():
        properties = resource.get("Properties") or {}
        for key in ("CodeUri", "ContentUri"):
            if isinstance(properties.get(key), str) and not properties[key].startswith("s3://"):
                properties[key] = f"s3://crossroute-artifacts/{properties[key].strip('/')}.zip"
    return doc


class NoManagedPolicies:
    """The managed-policy loader: the template names no managed policy, so nothing is looked up."""

    def load(self) -> dict[str, str]:
        return {}


def no_aws_call(*args: Any, **kwargs: Any) -> Any:
    raise AssertionError(f"the transform called AWS: {args[1:2]}")


def render(env: str, monkeypatch: pytest.MonkeyPatch, extra: dict[str, str] | None = None) -> dict[str, Any]:
    """template.yaml through the SAM transform with ``env``'s parameter values."""
    transform = pytest.importorskip("samtranslator.translator.transform").transform
    import botocore.client

    monkeypatch.setattr(botocore.client.BaseClient, "_make_api_call", no_aws_call)
    monkeypatch.delenv("AWS_PROFILE", raising=False)
    region = deploy_settings(env)["region"]
    monkeypatch.setenv("AWS_DEFAULT_REGION", region)  # the translator reads the region from a boto3 session
    given = {**overrides(env), **(extra or {}), "AWS::Region": region}
    return transform(packaged(TEMPLATE), given, NoManagedPolicies())


# ------------------------------------------------------------------ samconfig.toml itself


def test_both_environments_deploy_their_own_stack() -> None:
    assert SAMCONFIG["version"] == 0.1
    assert set(ENVIRONMENTS) <= set(SAMCONFIG)
    names = {deploy_settings(env)["stack_name"] for env in ENVIRONMENTS}
    assert len(names) == len(ENVIRONMENTS)
    for env in ENVIRONMENTS:
        settings = deploy_settings(env)
        assert re.fullmatch(r"[a-z]{2}(-gov)?-[a-z]+-\d", settings["region"]), env
        assert settings["capabilities"] == "CAPABILITY_IAM", env  # unnamed IAM roles, no nested apps
        assert settings["resolve_s3"] is True, env
        assert settings["s3_prefix"] == settings["stack_name"], env
    assert deploy_settings("prod")["confirm_changeset"] is True
    assert deploy_settings("default")["confirm_changeset"] is False


def test_nothing_is_configured_for_sam_build() -> None:
    """``make build`` passes its own options; a build section here would change them behind its back."""
    for env in ENVIRONMENTS:
        assert "build" not in SAMCONFIG[env]
        assert "parameter_overrides" not in SAMCONFIG[env].get("global", {}).get("parameters", {})


@pytest.mark.parametrize("env", ENVIRONMENTS)
def test_overrides_name_template_parameters_with_values_cloudformation_accepts(env: str) -> None:
    given = overrides(env)
    assert set(given) <= set(PARAMETERS), f"{env}: not template parameters: {set(given) - set(PARAMETERS)}"
    for name, value in values(env).items():
        assert_accepted(name, value, env)
    assert_rules_hold(values(env), env)


def assert_accepted(name: str, value: str, env: str) -> None:
    spec = PARAMETERS[name]
    where = f"{env}: {name}={value!r}"
    if "AllowedPattern" in spec:
        assert re.fullmatch(spec["AllowedPattern"], value), where
    if "AllowedValues" in spec:
        assert value in [str(v) for v in spec["AllowedValues"]], where
    if spec["Type"] == "Number":
        number = float(value)
        assert number >= float(spec.get("MinValue", number)), where
        assert number <= float(spec.get("MaxValue", number)), where


def assert_rules_hold(params: dict[str, str], env: str) -> None:
    conditions = TEMPLATE.get("Conditions", {})
    for name, rule in TEMPLATE.get("Rules", {}).items():
        if evaluate(rule.get("RuleCondition", True), params, conditions):
            for assertion in rule["Assertions"]:
                assert evaluate(assertion["Assert"], params, conditions), f"{env}: rule {name}"


def test_the_custom_domain_example_is_accepted_and_the_rules_refuse_half_of_it() -> None:
    for name, value in A_DOMAIN.items():
        assert_accepted(name, value, "example")
    assert_rules_hold(values("prod", A_DOMAIN), "example")
    for half in A_DOMAIN:
        with pytest.raises(AssertionError, match="rule"):
            assert_rules_hold(values("prod", {half: A_DOMAIN[half]}), half)


# ------------------------------------------------------------------ the rendered stack


def functions() -> list[str]:
    return sorted(n for n, r in RESOURCES.items() if r["Type"] == "AWS::Serverless::Function")


def of_type(kind: str) -> list[str]:
    return sorted(n for n, r in RESOURCES.items() if r["Type"] == kind)


def routes() -> set[tuple[str, str]]:
    """(path, method) of every HttpApi event of every function."""
    found = set()
    for name in functions():
        for event in (RESOURCES[name]["Properties"].get("Events") or {}).values():
            if event["Type"] == "HttpApi":
                found.add((event["Properties"]["Path"], event["Properties"]["Method"].lower()))
    return found


def assert_the_stack(rendered: dict[str, Any], params: dict[str, str]) -> dict[str, Any]:
    """The resources created with ``params``, after checking the ones every deployment needs."""
    conditions = rendered.get("Conditions", {})
    made = created(rendered["Resources"], params, conditions)
    kinds = {name: resource["Type"] for name, resource in made.items()}
    assert len(functions()) == 6
    for name in functions():
        assert kinds.get(name) == "AWS::Lambda::Function", name
        assert made[name]["Properties"]["Architectures"] == ["arm64"]
    assert kinds.get("IdentityTable") == "AWS::DynamoDB::Table"
    assert made["IdentityTable"]["DeletionPolicy"] == "Retain"
    queues = of_type("AWS::SQS::Queue")
    assert {"InboundQueue", "InboundDeadLetterQueue", "SendQueue", "SendDeadLetterQueue"} <= set(queues)
    assert all(kinds.get(queue) == "AWS::SQS::Queue" for queue in queues)
    consumers = {
        r["Properties"]["FunctionName"]["Ref"]: r["Properties"]
        for r in made.values()
        if r["Type"] == "AWS::Lambda::EventSourceMapping"
    }
    assert set(consumers) == {"IngestFunction", "DispatchFunction", "MediaFunction"}
    concurrency = consumers["DispatchFunction"]["ScalingConfig"]["MaximumConcurrency"]
    assert evaluate(concurrency, params, conditions) == params["DispatchConcurrency"]
    assert kinds.get("HttpApi") == "AWS::ApiGatewayV2::Api"
    paths = made["HttpApi"]["Properties"]["Body"]["paths"]
    assert {(path, method) for path, methods in paths.items() for method in methods} >= routes()
    assert {"TenantsSecret", "MaskingKey", "EventBus"} <= set(made)
    return made


@pytest.mark.parametrize("env", ENVIRONMENTS)
def test_the_transform_renders_each_environment(env: str, monkeypatch: pytest.MonkeyPatch) -> None:
    rendered = render(env, monkeypatch)
    params = values(env)
    made = assert_the_stack(rendered, params)
    has_domain = params["CustomDomainName"] != ""
    domain = {n: made[n]["Type"] for n in DOMAIN_RESOURCES if n in made}
    assert domain == (DOMAIN_RESOURCES if has_domain else {})
    outputs = created(rendered["Outputs"], params, rendered.get("Conditions", {}))
    assert {"ApiUrl", "TenantsSecretArn"} <= set(outputs)
    assert DOMAIN_OUTPUTS & set(outputs) == (DOMAIN_OUTPUTS if has_domain else set())


def test_the_custom_domain_is_created_only_when_it_is_set(monkeypatch: pytest.MonkeyPatch) -> None:
    rendered = render("prod", monkeypatch, A_DOMAIN)
    params = values("prod", A_DOMAIN)
    made = assert_the_stack(rendered, params)
    assert {n: made[n]["Type"] for n in DOMAIN_RESOURCES} == DOMAIN_RESOURCES
    domain = made["CustomDomain"]["Properties"]
    assert domain["DomainName"] == {"Ref": "CustomDomainName"}
    (configuration,) = domain["DomainNameConfigurations"]
    assert configuration["CertificateArn"] == {"Ref": "CustomDomainCertificateArn"}
    assert configuration["EndpointType"] == "REGIONAL"
    mapping = made["CustomDomainMapping"]["Properties"]
    assert mapping["ApiId"] == {"Ref": "HttpApi"}
    assert mapping["DomainName"] == {"Ref": "CustomDomain"}
    assert "ApiMappingKey" not in mapping  # at the root: the paths Twilio signs stay /webhooks/...
    stage = made[mapping["Stage"]["Ref"]]  # the API's $default stage, which SAM names
    assert stage["Type"] == "AWS::ApiGatewayV2::Stage"
    assert stage["Properties"]["StageName"] == "$default"
    outputs = created(rendered["Outputs"], params, rendered.get("Conditions", {}))
    assert set(outputs) >= DOMAIN_OUTPUTS
    # ... and without the parameters, the same render creates none of it.
    bare = created(rendered["Resources"], values("prod"), rendered.get("Conditions", {}))
    assert not set(DOMAIN_RESOURCES) & set(bare)


@pytest.mark.skipif(not SAM_PYTHON.exists(), reason="no .venv-sam (make cfn-lint or make build creates it)")
@pytest.mark.parametrize("env", ENVIRONMENTS)
def test_sam_cli_reads_what_this_test_reads(env: str) -> None:
    """The SAM CLI's own reader of samconfig.toml and of parameter_overrides agrees with the above."""
    script = (
        "import json, sys\n"
        "from samcli.lib.config.samconfig import SamConfig\n"
        "from samcli.cli.types import CfnParameterOverridesType\n"
        "settings = SamConfig(sys.argv[1]).get_all(['deploy'], 'parameters', env=sys.argv[2])\n"
        "settings['parameter_overrides'] = CfnParameterOverridesType().convert(\n"
        "    settings['parameter_overrides'], None, None)\n"
        "print(json.dumps(settings))\n"
    )
    answer = subprocess.run(
        [str(SAM_PYTHON), "-c", script, str(ROOT), env],
        capture_output=True,
        text=True,
        check=True,
        timeout=120,
        env={"SAM_CLI_TELEMETRY": "0", "PATH": "/usr/bin:/bin"},
    )
    settings = json.loads(answer.stdout)
    assert settings.pop("parameter_overrides") == overrides(env)
    ours = deploy_settings(env)
    ours.pop("parameter_overrides")
    assert settings == ours


# ------------------------------------------------------------------ the README documents every parameter


def readme_parameter_rows() -> dict[str, tuple[str, str]]:
    """Parameter -> (default, what it does) from the table in the README's "Deploying" section."""
    text = (ROOT / "README.md").read_text()
    section = text[text.index("\n## Deploying\n") :]
    section = section[: section.index("\n## ", 1)]
    table = next(block for block in section.split("\n\n") if block.lstrip().startswith("| parameter |"))
    rows = {}
    for line in table.strip().splitlines()[2:]:
        cells = [cell.strip() for cell in line.strip().strip("|").split(" | ")]
        name = re.fullmatch(r"`([A-Za-z0-9]+)`", cells[0])
        assert name, line
        rows[name.group(1)] = (cells[1], cells[2])
    return rows


def test_the_readme_documents_every_template_parameter_and_its_default() -> None:
    rows = readme_parameter_rows()
    assert sorted(rows) == sorted(PARAMETERS), "README 'Deploying' parameter table vs template.yaml"
    for name, (default, what) in rows.items():
        expected = str(PARAMETERS[name].get("Default", ""))
        assert default == (f"`{expected}`" if expected else "empty"), name
        assert len(what) > 20, f"{name}: say what it does"
