"""Create the template's stateful resources in the AWS emulator, straight from ``template.yaml``.

Emulated resource types, with exactly the properties ``template.yaml`` uses (:data:`_CREATORS`):
``AWS::DynamoDB::Table`` (key schema, attribute definitions, GSIs, billing mode, SSE, point-in-time
recovery, then TTL), ``AWS::SQS::Queue`` (its properties are queue attributes, ``RedrivePolicy``
resolved to the DLQ ARN), ``AWS::Events::EventBus``, ``AWS::Events::Rule`` (SQS targets) and
``AWS::SecretsManager::Secret`` (generated, or the value the stack gives), ``AWS::S3::Bucket``
(encryption, public access block, ownership controls, lifecycle rules) and ``AWS::S3::BucketPolicy``.
Any other property of these
types raises :class:`ProvisionError` naming it, so a template that starts using one learns at once what
to add here.

Physical names are deterministic: ``<stack>-<LogicalId>`` (``crossroute-local-InboundQueue.fifo`` for a
FIFO queue), or the bus's ``Name``. ``Ref`` / ``Fn::GetAtt`` give what CloudFormation would: a table
name, a queue URL, a bus name, a secret ARN, ...; resources are created on first reference, so creation
follows the dependencies. Functions, the API, layers, log groups, the queue policy and the event schemas
(with their registry) are not created: their ``Ref`` is a deterministic name (the API's: its local id),
and they have no attributes. Any other resource type raises :class:`ProvisionError`.
"""

from __future__ import annotations

import json
import secrets
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from .intrinsics import STACK_NAME, IntrinsicError, Resolver, parameter_values

__all__ = ["PhysicalResource", "ProvisionError", "Provisioner"]


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
    ) -> None:
        self.template = template
        self.clients = clients
        self.http_api_id = http_api_id
        self.secret_values = dict(secret_values or {})
        self.resources: dict[str, PhysicalResource] = {}
        self._in_progress: list[str] = []
        self.parameters = parameter_values(template, parameter_overrides)
        self.resolver = Resolver(template, parameters=self.parameters, ref=self.ref, get_att=self.get_att)
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
            made = self._create(logical_id, str(resource.get("Type", "")), resource.get("Properties") or {})
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

    # ------------------------------------------------------------------ creators
    def _template_resources(self) -> dict[str, Any]:
        return dict(self.template.get("Resources") or {})

    def _create(self, logical_id: str, rtype: str, props: Mapping[str, Any]) -> PhysicalResource:
        """The resource created in the emulator, or (a type not emulated) its ``Ref`` only."""
        if rtype in _NOT_EMULATED:
            ref = self.http_api_id if rtype == "AWS::Serverless::HttpApi" else self.name_for(logical_id)
            return PhysicalResource(logical_id, rtype, ref)
        if rtype not in _CREATORS:
            raise ProvisionError(
                f"{logical_id}: resource type {rtype} is not supported by the local stack; "
                "add it to infra/local/provision.py"
            )
        create, supported = _CREATORS[rtype]
        unsupported = sorted(set(props) - supported)
        if unsupported:
            raise ProvisionError(
                f"{rtype} {logical_id}: {', '.join(unsupported)} not supported by the local stack "
                f"(supported: {', '.join(sorted(supported))}); add it to infra/local/provision.py"
            )
        resolved = self.resolve(dict(props))
        try:
            return create(self, logical_id, resolved)
        except (IntrinsicError, ProvisionError):
            raise
        except Exception as exc:
            raise ProvisionError(f"could not create {rtype} {logical_id}: {exc}") from exc

    def _table(self, logical_id: str, p: Mapping[str, Any]) -> PhysicalResource:
        ddb = self.clients("dynamodb")
        name = self.name_for(logical_id)
        args = {k: p[k] for k in ("KeySchema", "AttributeDefinitions", "GlobalSecondaryIndexes") if k in p}
        if "SSESpecification" in p:  # CloudFormation's SSEEnabled is CreateTable's Enabled
            args["SSESpecification"] = {
                ("Enabled" if k == "SSEEnabled" else k): v for k, v in p["SSESpecification"].items()
            }
        billing = p.get("BillingMode", "PROVISIONED")
        desc = ddb.create_table(TableName=name, BillingMode=billing, **args)["TableDescription"]
        ttl = p.get("TimeToLiveSpecification") or {}
        if ttl.get("Enabled"):
            ddb.update_time_to_live(
                TableName=name,
                TimeToLiveSpecification={"Enabled": True, "AttributeName": ttl["AttributeName"]},
            )
        if (p.get("PointInTimeRecoverySpecification") or {}).get("PointInTimeRecoveryEnabled"):
            ddb.update_continuous_backups(
                TableName=name, PointInTimeRecoverySpecification={"PointInTimeRecoveryEnabled": True}
            )
        attributes = {"Arn": desc["TableArn"], "Name": name}
        return PhysicalResource(logical_id, "AWS::DynamoDB::Table", name, attributes, emulated=True)

    def _queue(self, logical_id: str, p: Mapping[str, Any]) -> PhysicalResource:
        """Every property is a queue attribute (as a string; ``RedrivePolicy`` as JSON)."""
        fifo = bool(p.get("FifoQueue"))
        name = self.name_for(logical_id, ".fifo" if fifo else "")
        attributes = {key: _attribute(value) for key, value in p.items() if key != "FifoQueue" or fifo}
        sqs = self.clients("sqs")
        url = sqs.create_queue(QueueName=name, Attributes=attributes)["QueueUrl"]
        arn = sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]
        attrs = {"Arn": arn, "QueueUrl": url, "QueueName": name}
        return PhysicalResource(logical_id, "AWS::SQS::Queue", url, attrs, emulated=True)

    def _bus(self, logical_id: str, p: Mapping[str, Any]) -> PhysicalResource:
        name = p.get("Name") or self.name_for(logical_id)
        arn = self.clients("events").create_event_bus(Name=name)["EventBusArn"]
        attrs = {"Arn": arn, "Name": name}
        return PhysicalResource(logical_id, "AWS::Events::EventBus", name, attrs, emulated=True)

    def _rule(self, logical_id: str, p: Mapping[str, Any]) -> PhysicalResource:
        name = str(p.get("Name") or self.name_for(logical_id))
        bus = str(p.get("EventBusName") or "default")
        targets = list(p.get("Targets") or [])
        for target in targets:
            if not str(target.get("Arn", "")).startswith("arn:aws:sqs:"):
                raise ProvisionError(
                    f"AWS::Events::Rule {logical_id}: target {target.get('Id')} is not an SQS queue; "
                    "the local stack delivers to SQS targets only (add others to infra/local/provision.py)"
                )
        args = {k: p[k] for k in ("Description",) if k in p}
        events = self.clients("events")
        pattern = json.dumps(p["EventPattern"])
        arn = events.put_rule(Name=name, EventBusName=bus, EventPattern=pattern, **args)["RuleArn"]
        if targets:
            events.put_targets(Rule=name, EventBusName=bus, Targets=targets)
        ref = name if bus == "default" else f"{bus}|{name}"
        return PhysicalResource(logical_id, "AWS::Events::Rule", ref, {"Arn": arn}, emulated=True)

    def _bucket(self, logical_id: str, p: Mapping[str, Any]) -> PhysicalResource:
        """A bucket named ``<stack>-<logicalid>`` (lower case, as S3 wants), configured as in the template."""
        s3, name = self.clients("s3"), self.name_for(logical_id).lower()
        s3.create_bucket(Bucket=name)
        if "BucketEncryption" in p:
            s3.put_bucket_encryption(
                Bucket=name, ServerSideEncryptionConfiguration=_sse(p["BucketEncryption"])
            )
        if "PublicAccessBlockConfiguration" in p:
            s3.put_public_access_block(
                Bucket=name, PublicAccessBlockConfiguration=dict(p["PublicAccessBlockConfiguration"])
            )
        if "OwnershipControls" in p:
            s3.put_bucket_ownership_controls(Bucket=name, OwnershipControls=dict(p["OwnershipControls"]))
        if "LifecycleConfiguration" in p:
            rules = [_lifecycle_rule(r) for r in p["LifecycleConfiguration"]["Rules"]]
            s3.put_bucket_lifecycle_configuration(Bucket=name, LifecycleConfiguration={"Rules": rules})
        attrs = {"Arn": f"arn:aws:s3:::{name}", "DomainName": f"{name}.s3.amazonaws.com"}
        return PhysicalResource(logical_id, "AWS::S3::Bucket", name, attrs, emulated=True)

    def _bucket_policy(self, logical_id: str, p: Mapping[str, Any]) -> PhysicalResource:
        """Stored in the emulator, which enforces it, without its TLS-only statements: the emulator
        speaks plain HTTP, so they would refuse every request."""
        document = dict(p["PolicyDocument"])
        document["Statement"] = [st for st in document["Statement"] if not _tls_only(st)]
        if document["Statement"]:
            self.clients("s3").put_bucket_policy(Bucket=p["Bucket"], Policy=json.dumps(document))
        return PhysicalResource(logical_id, "AWS::S3::BucketPolicy", self.name_for(logical_id), emulated=True)

    def _secret(self, logical_id: str, p: Mapping[str, Any]) -> PhysicalResource:
        name = self.name_for(logical_id)
        if logical_id in self.secret_values:
            value = self.secret_values[logical_id]
        else:
            value = _generated_secret(p.get("GenerateSecretString") or {})
        args = {k: p[k] for k in ("Description",) if k in p}
        arn = self.clients("secretsmanager").create_secret(Name=name, SecretString=value, **args)["ARN"]
        attrs = {"Id": arn, "Name": name}
        return PhysicalResource(logical_id, "AWS::SecretsManager::Secret", arn, attrs, emulated=True)


# Resource types the local stack does not create: the functions run in-process, the gateway serves the
# API, and the rest has no local effect.
_NOT_EMULATED = frozenset(
    {
        *("AWS::Serverless::Function", "AWS::Serverless::HttpApi", "AWS::Serverless::LayerVersion"),
        *("AWS::Logs::LogGroup", "AWS::SQS::QueuePolicy"),
        # Operations: nothing to alarm on or archive locally (the metrics are log lines, see README).
        *(
            "AWS::SNS::Topic",
            "AWS::SNS::Subscription",
            "AWS::CloudWatch::Alarm",
            "AWS::CloudWatch::Dashboard",
        ),
        "AWS::Events::Archive",
        # The event schemas are documentation for consumers (docs/events.md); the emulator has no
        # Schema Registry, and nothing in crossroute reads one.
        *("AWS::EventSchemas::Registry", "AWS::EventSchemas::Schema"),
    }
)

Creator = Callable[[Provisioner, str, Mapping[str, Any]], PhysicalResource]

# Resource type -> how it is created, and the properties the local stack supports (template.yaml's).
_CREATORS: dict[str, tuple[Creator, frozenset[str]]] = {
    "AWS::DynamoDB::Table": (
        Provisioner._table,
        frozenset(
            {
                *("AttributeDefinitions", "KeySchema", "BillingMode", "GlobalSecondaryIndexes"),
                *("TimeToLiveSpecification", "PointInTimeRecoverySpecification", "SSESpecification"),
            }
        ),
    ),
    "AWS::SQS::Queue": (  # every property that is a queue attribute (not QueueName, Tags)
        Provisioner._queue,
        frozenset(
            {
                *("ContentBasedDeduplication", "DeduplicationScope", "DelaySeconds", "FifoQueue"),
                *("FifoThroughputLimit", "KmsDataKeyReusePeriodSeconds", "KmsMasterKeyId"),
                *("MaximumMessageSize", "MessageRetentionPeriod", "ReceiveMessageWaitTimeSeconds"),
                *("RedriveAllowPolicy", "RedrivePolicy", "SqsManagedSseEnabled", "VisibilityTimeout"),
            }
        ),
    ),
    "AWS::Events::EventBus": (Provisioner._bus, frozenset({"Name"})),
    "AWS::Events::Rule": (
        Provisioner._rule,
        frozenset({"Name", "Description", "EventBusName", "EventPattern", "Targets"}),
    ),
    "AWS::SecretsManager::Secret": (
        Provisioner._secret,
        frozenset({"Description", "GenerateSecretString"}),
    ),
    "AWS::S3::Bucket": (
        Provisioner._bucket,
        frozenset(
            {
                "BucketEncryption",
                "PublicAccessBlockConfiguration",
                "OwnershipControls",
                "LifecycleConfiguration",
            }
        ),
    ),
    "AWS::S3::BucketPolicy": (Provisioner._bucket_policy, frozenset({"Bucket", "PolicyDocument"})),
}


def _tls_only(statement: Mapping[str, Any]) -> bool:
    """A statement that denies requests not made over TLS."""
    condition = statement.get("Condition") or {}
    return statement.get("Effect") == "Deny" and condition == {"Bool": {"aws:SecureTransport": "false"}}


def _sse(encryption: Mapping[str, Any]) -> dict[str, Any]:
    """CloudFormation's ``BucketEncryption`` as ``PutBucketEncryption`` takes it."""
    renamed = {"ServerSideEncryptionByDefault": "ApplyServerSideEncryptionByDefault"}
    rules = encryption["ServerSideEncryptionConfiguration"]
    return {"Rules": [{renamed.get(k, k): v for k, v in rule.items()} for rule in rules]}


def _lifecycle_rule(rule: Mapping[str, Any]) -> dict[str, Any]:
    """A CloudFormation lifecycle rule as ``PutBucketLifecycleConfiguration`` takes it."""
    out: dict[str, Any] = {"ID": rule.get("Id", ""), "Status": rule["Status"], "Filter": {"Prefix": ""}}
    if "ExpirationInDays" in rule:
        out["Expiration"] = {"Days": int(rule["ExpirationInDays"])}
    if "AbortIncompleteMultipartUpload" in rule:
        days = int(rule["AbortIncompleteMultipartUpload"]["DaysAfterInitiation"])
        out["AbortIncompleteMultipartUpload"] = {"DaysAfterInitiation": days}
    return out


def _attribute(value: Any) -> str:
    """A queue attribute's value as SQS takes it."""
    if isinstance(value, dict | list):
        return json.dumps(value)
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


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
