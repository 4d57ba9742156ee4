"""Create the template's stateful resources in the AWS emulator, straight from ``template.yaml``.

Emulated resource types: ``AWS::DynamoDB::Table`` (key schema, attribute definitions, GSIs/LSIs,
billing mode, streams, SSE, point-in-time recovery, then TTL), ``AWS::SQS::Queue`` (every queue
attribute, ``RedrivePolicy`` resolved to the DLQ ARN), ``AWS::Events::EventBus``, ``AWS::Events::Rule``
(targets on SQS, buses and log groups), ``AWS::SecretsManager::Secret`` and ``AWS::SSM::Parameter``.

Physical names are deterministic: the resource's own name property when the template sets one
(resolved), else ``<stack>-<LogicalId>`` (``crossroute-local-InboundQueue.fifo`` for a FIFO queue).
``Ref`` / ``Fn::GetAtt`` give what CloudFormation would: a table name, a queue URL, a bus name, a
secret ARN, ...; resources are created on first reference, so creation follows the dependencies.
Resources of other types (functions, APIs, log groups, layers) are not created; they still resolve to
deterministic names and ARNs.
"""

from __future__ import annotations

import json
import logging
import secrets
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from .aws import ACCOUNT_ID, REGION
from .intrinsics import STACK_NAME, IntrinsicError, Resolver, parameter_values

__all__ = ["PhysicalResource", "ProvisionError", "Provisioner"]

log = logging.getLogger(__name__)

# Rule target services the emulator can deliver to.
_DELIVERABLE_TARGET_SERVICES = frozenset({"sqs", "events", "logs"})


class ProvisionError(RuntimeError):
    """A resource could not be created locally; the message names it."""


@dataclass
class PhysicalResource:
    logical_id: str
    type: str
    ref: Any
    attributes: dict[str, Any] = field(default_factory=dict)
    emulated: bool = False

    def as_json(self) -> dict[str, Any]:
        return {"type": self.type, "ref": self.ref, "emulated": self.emulated, **self.attributes}


class Provisioner:
    """Provisions ``template``'s emulated resources through ``clients`` (service name -> boto3 client)."""

    def __init__(
        self,
        template: Mapping[str, Any],
        clients: Callable[[str], Any],
        *,
        parameter_overrides: Mapping[str, str] | None = None,
        secret_values: Mapping[str, str] | None = None,
        http_api_id: str = "localapi",
        http_api_endpoint: str = "",
    ) -> None:
        self.template = template
        self.clients = clients
        self.http_api_id = http_api_id
        self.http_api_endpoint = http_api_endpoint
        self.secret_values = dict(secret_values or {})
        self.resources: dict[str, PhysicalResource] = {}
        self._in_progress: list[str] = []
        self.parameters = parameter_values(template, parameter_overrides)
        self.resolver = Resolver(
            template,
            parameters=self.parameters,
            ref=self.ref,
            get_att=self.get_att,
        )
        unknown = sorted(set(self.secret_values) - set(self._template_resources()))
        if unknown:
            raise ProvisionError(f"secret value given for unknown resource(s): {', '.join(unknown)}")

    # ------------------------------------------------------------------ public
    def provision_all(self) -> dict[str, PhysicalResource]:
        """Create every emulated resource (in dependency order) and return all physical resources."""
        for logical_id, resource in self._template_resources().items():
            if self.resolver.is_enabled(resource):
                self.physical(logical_id)
        return self.resources

    def physical(self, logical_id: str) -> PhysicalResource:
        existing = self.resources.get(logical_id)
        if existing is not None:
            return existing
        resource = self._template_resources().get(logical_id)
        if resource is None:
            raise IntrinsicError(f"unknown resource {logical_id!r}")
        if not self.resolver.is_enabled(resource):
            raise IntrinsicError(f"resource {logical_id} is disabled by its Condition")
        if logical_id in self._in_progress:
            cycle = " -> ".join([*self._in_progress, logical_id])
            raise ProvisionError(f"circular reference between resources: {cycle}")
        self._in_progress.append(logical_id)
        try:
            rtype = str(resource.get("Type", ""))
            props = resource.get("Properties") or {}
            create = _CREATORS.get(rtype)
            try:
                if create is not None:
                    made = create(self, logical_id, props)
                else:
                    made = self._not_emulated(logical_id, rtype)
            except (IntrinsicError, ProvisionError):
                raise
            except Exception as exc:
                raise ProvisionError(f"could not create {rtype} {logical_id}: {exc}") from exc
        finally:
            self._in_progress.pop()
        self.resources[logical_id] = made
        return made

    def ref(self, logical_id: str) -> Any:
        return self.physical(logical_id).ref

    def get_att(self, logical_id: str, attribute: str) -> Any:
        res = self.physical(logical_id)
        if attribute not in res.attributes:
            raise IntrinsicError(
                f"Fn::GetAtt {logical_id}.{attribute} is not available locally "
                f"(known: {', '.join(sorted(res.attributes)) or 'none'})"
            )
        return res.attributes[attribute]

    def resolve(self, value: Any) -> Any:
        return self.resolver.resolve(value)

    def name_for(self, logical_id: str, suffix: str = "") -> str:
        return f"{STACK_NAME}-{logical_id}{suffix}"

    def arn(self, service: str, resource: str) -> str:
        return f"arn:aws:{service}:{REGION}:{ACCOUNT_ID}:{resource}"

    # ------------------------------------------------------------------ creators
    def _template_resources(self) -> dict[str, Any]:
        return dict(self.template.get("Resources") or {})

    def _props(self, props: Mapping[str, Any]) -> dict[str, Any]:
        resolved = self.resolve(dict(props))
        assert isinstance(resolved, dict)
        return resolved

    def _table(self, logical_id: str, raw: Mapping[str, Any]) -> PhysicalResource:
        p = self._props(raw)
        ddb = self.clients("dynamodb")
        name = p.get("TableName") or self.name_for(logical_id)
        desc = ddb.create_table(**_create_table_args(name, p))["TableDescription"]
        ttl = p.get("TimeToLiveSpecification")
        if ttl and _bool(ttl.get("Enabled", False)):
            ddb.update_time_to_live(
                TableName=name,
                TimeToLiveSpecification={"Enabled": True, "AttributeName": ttl["AttributeName"]},
            )
        pitr = p.get("PointInTimeRecoverySpecification")
        if pitr and _bool(pitr.get("PointInTimeRecoveryEnabled", False)):
            ddb.update_continuous_backups(
                TableName=name, PointInTimeRecoverySpecification={"PointInTimeRecoveryEnabled": True}
            )
        attributes = {"Arn": desc["TableArn"], "Name": name}
        if desc.get("LatestStreamArn"):
            attributes["StreamArn"] = desc["LatestStreamArn"]
        return PhysicalResource(logical_id, "AWS::DynamoDB::Table", name, attributes, emulated=True)

    def _queue(self, logical_id: str, raw: Mapping[str, Any]) -> PhysicalResource:
        p = self._props(raw)
        fifo = _bool(p.get("FifoQueue", False))
        name = p.get("QueueName") or self.name_for(logical_id, ".fifo" if fifo else "")
        attributes: dict[str, str] = {}
        for key, value in p.items():
            if key in ("QueueName", "Tags"):
                continue
            if key == "FifoQueue" and not fifo:
                continue  # SQS rejects FifoQueue=false on create
            if isinstance(value, (dict, list)):
                attributes[key] = json.dumps(value)
            elif isinstance(value, bool):
                attributes[key] = "true" if value else "false"
            else:
                attributes[key] = str(value)
        sqs = self.clients("sqs")
        url = sqs.create_queue(QueueName=name, Attributes=attributes)["QueueUrl"]
        arn = sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]
        return PhysicalResource(
            logical_id,
            "AWS::SQS::Queue",
            url,
            {"Arn": arn, "QueueUrl": url, "QueueName": name},
            emulated=True,
        )

    def _bus(self, logical_id: str, raw: Mapping[str, Any]) -> PhysicalResource:
        p = self._props(raw)
        name = p.get("Name") or self.name_for(logical_id)
        events = self.clients("events")
        if name == "default":
            arn = events.describe_event_bus(Name="default")["Arn"]
        else:
            args: dict[str, Any] = {"Name": name}
            if p.get("Description"):
                args["Description"] = p["Description"]
            arn = events.create_event_bus(**args)["EventBusArn"]
        return PhysicalResource(
            logical_id, "AWS::Events::EventBus", name, {"Arn": arn, "Name": name}, emulated=True
        )

    def _rule(self, logical_id: str, raw: Mapping[str, Any]) -> PhysicalResource:
        p = self._props(raw)
        name = p.get("Name") or self.name_for(logical_id)
        bus = str(p.get("EventBusName") or "default")
        if bus.startswith("arn:"):
            bus = bus.split("event-bus/", 1)[-1]
        events = self.clients("events")
        arn = events.put_rule(**_put_rule_args(name, bus, p))["RuleArn"]
        targets = _deliverable_targets(logical_id, p.get("Targets") or [])
        if targets:
            events.put_targets(Rule=name, EventBusName=bus, Targets=targets)
        ref = name if bus == "default" else f"{bus}|{name}"
        return PhysicalResource(logical_id, "AWS::Events::Rule", ref, {"Arn": arn}, emulated=True)

    def _secret(self, logical_id: str, raw: Mapping[str, Any]) -> PhysicalResource:
        p = self._props(raw)
        name = p.get("Name") or self.name_for(logical_id)
        if logical_id in self.secret_values:
            value = self.secret_values[logical_id]
        elif "SecretString" in p:
            value = str(p["SecretString"])
        else:
            value = _generated_secret(p.get("GenerateSecretString") or {})
        args: dict[str, Any] = {"Name": name, "SecretString": value}
        if p.get("Description"):
            args["Description"] = p["Description"]
        arn = self.clients("secretsmanager").create_secret(**args)["ARN"]
        return PhysicalResource(
            logical_id, "AWS::SecretsManager::Secret", arn, {"Id": arn, "Name": name}, emulated=True
        )

    def _parameter(self, logical_id: str, raw: Mapping[str, Any]) -> PhysicalResource:
        p = self._props(raw)
        name = p.get("Name") or self.name_for(logical_id)
        args: dict[str, Any] = {"Name": name, "Value": str(p["Value"]), "Type": p.get("Type", "String")}
        for key in ("Description", "AllowedPattern", "Tier", "DataType"):
            if key in p:
                args[key] = p[key]
        self.clients("ssm").put_parameter(**args)
        return PhysicalResource(
            logical_id,
            "AWS::SSM::Parameter",
            name,
            {"Type": args["Type"], "Value": args["Value"]},
            emulated=True,
        )

    def _not_emulated(self, logical_id: str, rtype: str) -> PhysicalResource:
        """What Ref / GetAtt of a resource the local stack does not create resolve to."""
        name = self.name_for(logical_id)
        if rtype in ("AWS::Serverless::Function", "AWS::Lambda::Function"):
            return PhysicalResource(logical_id, rtype, name, {"Arn": self.arn("lambda", f"function:{name}")})
        if rtype in ("AWS::Serverless::HttpApi", "AWS::ApiGatewayV2::Api", "AWS::Serverless::Api"):
            endpoint = (
                self.http_api_endpoint or f"https://{self.http_api_id}.execute-api.{REGION}.amazonaws.com"
            )
            return PhysicalResource(
                logical_id, rtype, self.http_api_id, {"ApiEndpoint": endpoint, "ApiId": self.http_api_id}
            )
        if rtype in ("AWS::Serverless::LayerVersion", "AWS::Lambda::LayerVersion"):
            arn = self.arn("lambda", f"layer:{name}:1")
            return PhysicalResource(logical_id, rtype, arn, {"Arn": arn})
        if rtype == "AWS::Logs::LogGroup":
            return PhysicalResource(logical_id, rtype, name, {"Arn": self.arn("logs", f"log-group:{name}:*")})
        service = rtype.split("::")[1].lower() if rtype.count("::") == 2 else "local"
        return PhysicalResource(logical_id, rtype, name, {"Arn": self.arn(service, name)})


_CREATORS: dict[str, Callable[[Provisioner, str, Mapping[str, Any]], PhysicalResource]] = {
    "AWS::DynamoDB::Table": Provisioner._table,
    "AWS::SQS::Queue": Provisioner._queue,
    "AWS::Events::EventBus": Provisioner._bus,
    "AWS::Events::Rule": Provisioner._rule,
    "AWS::SecretsManager::Secret": Provisioner._secret,
    "AWS::SSM::Parameter": Provisioner._parameter,
}


def _create_table_args(name: str, p: Mapping[str, Any]) -> dict[str, Any]:
    """``CreateTable`` arguments from a table's resolved properties (TTL and PITR are set after)."""
    args: dict[str, Any] = {
        "TableName": name,
        "KeySchema": p["KeySchema"],
        "AttributeDefinitions": p["AttributeDefinitions"],
        "BillingMode": p.get("BillingMode", "PROVISIONED"),
    }
    if "ProvisionedThroughput" in p:
        args["ProvisionedThroughput"] = _ints(p["ProvisionedThroughput"])
    for key in ("GlobalSecondaryIndexes", "LocalSecondaryIndexes"):
        if p.get(key):
            args[key] = [_index(index) for index in p[key]]
    stream = p.get("StreamSpecification")
    if stream and stream.get("StreamViewType"):
        args["StreamSpecification"] = {"StreamEnabled": True, "StreamViewType": stream["StreamViewType"]}
    sse = p.get("SSESpecification")
    if sse:
        args["SSESpecification"] = {
            "Enabled": _bool(sse.get("SSEEnabled", False)),
            **{k: sse[k] for k in ("SSEType", "KMSMasterKeyId") if k in sse},
        }
    if "TableClass" in p:
        args["TableClass"] = p["TableClass"]
    if "DeletionProtectionEnabled" in p:
        args["DeletionProtectionEnabled"] = _bool(p["DeletionProtectionEnabled"])
    return args


_INDEX_KEYS = ("IndexName", "KeySchema", "Projection", "ProvisionedThroughput", "OnDemandThroughput")


def _index(index: Mapping[str, Any]) -> dict[str, Any]:
    """A secondary index as ``CreateTable`` takes it."""
    return {k: (_ints(v) if k.endswith("Throughput") else v) for k, v in index.items() if k in _INDEX_KEYS}


def _put_rule_args(name: str, bus: str, p: Mapping[str, Any]) -> dict[str, Any]:
    args: dict[str, Any] = {"Name": name, "EventBusName": bus, "State": p.get("State", "ENABLED")}
    if "EventPattern" in p:
        pattern = p["EventPattern"]
        args["EventPattern"] = pattern if isinstance(pattern, str) else json.dumps(pattern)
    for key in ("ScheduleExpression", "Description", "RoleArn"):
        if key in p:
            args[key] = p[key]
    return args


_TARGET_KEYS = (
    "Id",
    "Arn",
    "RoleArn",
    "Input",
    "InputPath",
    "InputTransformer",
    "SqsParameters",
    "RetryPolicy",
    "DeadLetterConfig",
)


def _deliverable_targets(logical_id: str, targets: list[Mapping[str, Any]]) -> list[dict[str, Any]]:
    """The rule's targets the emulator can deliver to, as ``PutTargets`` takes them; the others are
    logged and dropped."""
    deliverable = []
    for target in targets:
        service = str(target.get("Arn", "")).split(":")[2:3]
        if not service or service[0] not in _DELIVERABLE_TARGET_SERVICES:
            log.warning(
                "rule %s: target %s (%s) is not emulated locally; events matching it are dropped",
                logical_id,
                target.get("Id"),
                target.get("Arn"),
            )
            continue
        deliverable.append({k: v for k, v in target.items() if k in _TARGET_KEYS})
    return deliverable


def _bool(value: Any) -> bool:
    if isinstance(value, str):
        return value.strip().lower() == "true"
    return bool(value)


def _ints(mapping: Mapping[str, Any]) -> dict[str, Any]:
    return {k: int(v) if isinstance(v, str) and v.isdigit() else v for k, v in mapping.items()}


def _generated_secret(spec: Mapping[str, Any]) -> str:
    """``GenerateSecretString``: a random value, placed under ``GenerateStringKey`` of the template."""
    length = int(spec.get("PasswordLength", 32))
    value = secrets.token_urlsafe(length)[:length]
    template, key = spec.get("SecretStringTemplate"), spec.get("GenerateStringKey")
    if template and key:
        doc = json.loads(str(template))
        doc[str(key)] = value
        return json.dumps(doc)
    return value
