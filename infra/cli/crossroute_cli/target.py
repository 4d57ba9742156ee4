"""Which crossroute the CLI talks to, and how: the local stack or a deployed CloudFormation stack.

- **Local** (default): the local gateway at ``http://127.0.0.1:$CROSSROUTE_PORT`` (3000); its
  ``GET /_local/outputs`` names the AWS emulator, the region and the template's outputs. Every AWS client
  of this process then talks to the emulator with dummy credentials; nothing is signed (the local
  routes are open).
- **Deployed** (``--stack NAME [--region R] [--profile P]``): the stack's outputs and parameters come from
  CloudFormation ``DescribeStacks``; the IAM routes (``/contacts*``, ``/messages``) are signed with SigV4
  (service ``execute-api``) with the caller's credentials. botocore honours ``AWS_ENDPOINT_URL``, which
  is how the deployed path is tested against the emulator (docs/cli.md).

Nothing here prints or logs a phone number, BSUID or body.
"""

from __future__ import annotations

import json
import os
import time
from dataclasses import dataclass
from functools import cached_property
from typing import TYPE_CHECKING, Any
from urllib.parse import urlencode

import urllib3

from .errors import Refused, usage

if TYPE_CHECKING:
    import boto3
    from botocore.credentials import Credentials

    from crossroute.tenants import Tenant, TenantRegistry

__all__ = ["MAX_WORKERS", "Answer", "Settings", "Target", "connect"]

DEFAULT_PORT = 3000
DEFAULT_AWS_PORT = 4566
LOCAL_HOST = "127.0.0.1"
LOCAL_REGION = "us-east-1"
LOCAL_CREDENTIALS = {"AWS_ACCESS_KEY_ID": "local", "AWS_SECRET_ACCESS_KEY": "local"}
IAM_ROUTES = ("/contacts", "/messages")  # IAM-authorised when deployed: signed with SigV4
RETRY_STATUSES = frozenset({429, 502, 503, 504})
RETRIES = 4  # attempts after the first, for the statuses above and refused connections
MAX_WORKERS = 32  # `contacts import --workers` at most: the HTTP connections kept per host


@dataclass(frozen=True)
class Settings:
    """The global options."""

    stack: str | None = None
    region: str | None = None
    profile: str | None = None
    tenant: str | None = None
    json: bool = False


@dataclass(frozen=True)
class Answer:
    """One HTTP answer: status, lower-case headers, body."""

    status: int
    headers: dict[str, str]
    body: bytes

    def json(self) -> Any:
        try:
            return json.loads(self.body or b"null")
        except ValueError:
            return None

    @property
    def message(self) -> str:
        """The error message of an error body: a problem document's ``detail`` (the API's), else a
        ``message`` (API Gateway's own), else the status."""
        doc = self.json()
        for member in ("detail", "message"):
            if isinstance(doc, dict) and isinstance(doc.get(member), str):
                return str(doc[member])
        return f"HTTP {self.status}"


class Target:
    """A crossroute stack: its API base URL, AWS region and outputs, and clients for both."""

    def __init__(
        self,
        settings: Settings,
        *,
        base_url: str,
        public_base_url: str,
        region: str,
        outputs: dict[str, str],
        stack_name: str,
        aws_endpoint: str | None,
        session: boto3.session.Session,
    ) -> None:
        self.settings = settings
        self.base_url = base_url.rstrip("/")
        self.public_base_url = public_base_url.rstrip("/")
        self.region = region
        self.outputs = outputs
        self.stack_name = stack_name
        self.aws_endpoint = aws_endpoint  # the emulator (local); None: AWS (or AWS_ENDPOINT_URL)
        self.session = session
        self._http = urllib3.PoolManager(maxsize=MAX_WORKERS, retries=False)

    @property
    def deployed(self) -> bool:
        return self.settings.stack is not None

    # ------------------------------------------------------------------ outputs and AWS
    def output(self, name: str) -> str:
        value = self.outputs.get(name)
        if not value:
            raise Refused(f"the stack {self.stack_name} has no output {name}", code="not_found")
        return str(value)

    def client(self, service: str) -> Any:
        return self.session.client(service, endpoint_url=self.aws_endpoint)  # type: ignore[call-overload]

    def bind_table(self) -> None:
        """Point crossroute's DynamoDB models at the stack's table (output ``IdentityTableName``)."""
        from crossroute.store import tables

        tables.bind(self.output("IdentityTableName"))
        meta: Any = tables.TableItem.Meta
        meta.region = self.region
        meta.host = self.aws_endpoint
        meta.read_timeout_seconds = 60  # a scan page of the emulator can take seconds
        credentials = self.credentials().get_frozen_credentials()
        meta.aws_access_key_id = credentials.access_key
        meta.aws_secret_access_key = credentials.secret_key
        meta.aws_session_token = credentials.token

    def credentials(self) -> Credentials:
        found = self.session.get_credentials()
        if found is None:
            raise Refused(
                "no AWS credentials found (environment, profile or instance role)", code="unavailable"
            )
        return found

    # ------------------------------------------------------------------ tenants
    @cached_property
    def registry(self) -> TenantRegistry:
        """The tenant registry in the stack's ``TenantsSecret``, validated as the functions do."""
        from crossroute.tenants import RegistryError, TenantRegistry

        text = self.tenants_document()
        try:
            return TenantRegistry.from_json(text)
        except RegistryError as exc:
            raise Refused(
                f"the stored tenant registry is unusable: {exc}", code="registry_unusable"
            ) from None

    def tenants_document(self) -> str:
        from botocore.exceptions import BotoCoreError, ClientError

        arn = self.output("TenantsSecretArn")
        try:
            value = self.client("secretsmanager").get_secret_value(SecretId=arn)
        except (ClientError, BotoCoreError) as exc:
            raise Refused(f"cannot read the tenants secret: {_aws_error(exc)}", code="unavailable") from None
        return str(value.get("SecretString") or "")

    def tenant(self) -> Tenant:
        """``--tenant``'s tenant, or the only tenant of the registry."""
        registry = self.registry
        wanted = self.settings.tenant
        if wanted:
            found = registry.by_id(wanted)
            if found is None:
                raise Refused(f"no tenant {wanted!r} in the registry", code="not_found")
            return found
        if len(registry.tenants) != 1:
            names = ", ".join(t.id for t in registry.tenants) or "none"
            raise usage(f"several tenants ({names}): say which with --tenant")
        return registry.tenants[0]

    def tenant_id(self) -> str:
        return self.settings.tenant or self.tenant().id

    # ------------------------------------------------------------------ HTTP
    def api(
        self,
        method: str,
        path: str,
        *,
        query: dict[str, str] | None = None,
        body: Any = None,
        headers: dict[str, str] | None = None,
        raw: bytes | None = None,
        timeout: float = 30.0,
        retry: frozenset[int] = RETRY_STATUSES,
    ) -> Answer:
        """A request to the stack's API. ``body`` is sent as JSON, ``raw`` as is; ``tenant=`` is added to
        the query of the IAM routes when ``--tenant`` was given. Retries the ``retry`` statuses (429,
        502, 503, 504) and refused connections with backoff (every route the CLI calls is idempotent)."""
        signed = any(path == r or path.startswith(r + "/") for r in IAM_ROUTES)
        url = self._url(path, dict(query or {}), signed=signed)
        hdrs = dict(headers or {})
        data = raw
        if body is not None:
            data = json.dumps(body, separators=(",", ":")).encode()
            hdrs.setdefault("Content-Type", "application/json")
        answer: Answer | None = None
        for attempt in range(RETRIES + 1):
            answer = self._send(method, url, data, hdrs, signed=signed and self.deployed, timeout=timeout)
            if answer is not None and answer.status not in retry:
                return answer
            if attempt < RETRIES:
                time.sleep(_backoff(attempt, answer))
        if answer is None:
            raise Refused(f"the API at {self.base_url} does not answer", code="unavailable")
        return answer

    def _url(self, path: str, query: dict[str, str], *, signed: bool) -> str:
        if signed and self.settings.tenant and "tenant" not in query:
            query["tenant"] = self.settings.tenant
        return self.base_url + path + ("?" + urlencode(query) if query else "")

    def _send(
        self,
        method: str,
        url: str,
        data: bytes | None,
        headers: dict[str, str],
        *,
        signed: bool,
        timeout: float,
    ) -> Answer | None:
        if signed:
            headers = self._signed_headers(method, url, data, headers)
        try:
            resp = self._http.request(
                method, url, body=data, headers=headers, timeout=timeout, redirect=False
            )
        except urllib3.exceptions.HTTPError:
            return None
        return Answer(resp.status, {k.lower(): v for k, v in resp.headers.items()}, resp.data)

    def _signed_headers(
        self, method: str, url: str, data: bytes | None, headers: dict[str, str]
    ) -> dict[str, str]:
        """SigV4 (botocore's ``SigV4Auth``, service ``execute-api``) with the caller's credentials."""
        from botocore.auth import SigV4Auth
        from botocore.awsrequest import AWSRequest

        request = AWSRequest(method=method, url=url, data=data or b"", headers=dict(headers))
        SigV4Auth(self.credentials(), "execute-api", self.region).add_auth(request)
        return {k: str(v) for k, v in request.headers.items()}


def _backoff(attempt: int, answer: Answer | None) -> float:
    after = answer.headers.get("retry-after", "") if answer is not None else ""
    if after.isdigit():
        return min(float(after), 10.0)
    return min(0.25 * 2.0**attempt, 4.0)


def _aws_error(exc: Exception) -> str:
    response = getattr(exc, "response", None)
    if isinstance(response, dict):
        error = response.get("Error") or {}
        return f"{error.get('Code', 'error')}: {error.get('Message', '')}".strip()
    return type(exc).__name__


# ---------------------------------------------------------------------- connecting
def connect(settings: Settings) -> Target:
    """The deployed stack named by ``--stack``, else the local stack."""
    return _deployed(settings) if settings.stack else _local(settings)


def _local(settings: Settings) -> Target:
    import boto3

    port = os.environ.get("CROSSROUTE_PORT", "").strip() or str(DEFAULT_PORT)
    base_url = f"http://{LOCAL_HOST}:{port}"
    doc = _local_outputs(base_url)
    aws_port = os.environ.get("CROSSROUTE_AWS_PORT", "").strip() or str(DEFAULT_AWS_PORT)
    endpoint = str(doc.get("aws_endpoint") or f"http://{LOCAL_HOST}:{aws_port}")
    region = str(doc.get("region") or LOCAL_REGION)
    _use_emulator(endpoint, region)
    session = boto3.session.Session(region_name=region)
    return Target(
        settings,
        base_url=str(doc.get("base_url") or base_url),
        public_base_url=str(doc.get("public_base_url") or base_url),
        region=region,
        outputs={k: str(v) for k, v in (doc.get("outputs") or {}).items()},
        stack_name=str(doc.get("stack_name") or "the local stack"),
        aws_endpoint=endpoint,
        session=session,
    )


def _local_outputs(base_url: str) -> dict[str, Any]:
    hint = "start it with `make run`, or name a deployed stack with --stack"
    try:
        resp = urllib3.request("GET", base_url + "/_local/outputs", timeout=5.0, retries=False)
    except urllib3.exceptions.HTTPError:
        raise Refused(f"no local stack answers at {base_url} ({hint})", code="unavailable") from None
    if resp.status != 200:
        raise Refused(f"the local stack at {base_url} is not ready (HTTP {resp.status})", code="unavailable")
    doc = json.loads(resp.data)
    return doc if isinstance(doc, dict) else {}


def _use_emulator(endpoint: str, region: str) -> None:
    """Every AWS client of this process (boto3, PynamoDB) talks to the emulator, with dummy keys."""
    for key in [k for k in os.environ if k.startswith("AWS_ENDPOINT_URL_")]:
        del os.environ[key]  # a service-specific endpoint would win over AWS_ENDPOINT_URL
    for key in ("AWS_SESSION_TOKEN", "AWS_PROFILE", "AWS_DEFAULT_PROFILE"):
        os.environ.pop(key, None)
    os.environ.update(
        {
            "AWS_ENDPOINT_URL": endpoint,
            "AWS_REGION": region,
            "AWS_DEFAULT_REGION": region,
            **LOCAL_CREDENTIALS,
        }
    )


def _deployed(settings: Settings) -> Target:
    import boto3
    from botocore.exceptions import BotoCoreError, ClientError, ProfileNotFound

    try:
        session = boto3.session.Session(profile_name=settings.profile, region_name=settings.region)
    except ProfileNotFound:
        raise usage(f"no AWS profile {settings.profile!r}") from None
    region = session.region_name
    if not region:
        raise usage("--stack needs a region: --region, AWS_REGION or the profile's region")
    try:
        found = session.client("cloudformation").describe_stacks(StackName=settings.stack)["Stacks"]
    except ClientError as exc:
        raise Refused(f"stack {settings.stack}: {_aws_error(exc)}", code="not_found") from None
    except BotoCoreError as exc:
        raise Refused(f"stack {settings.stack}: {exc}", code="unavailable") from None
    stack = found[0]
    outputs = {o["OutputKey"]: o.get("OutputValue", "") for o in stack.get("Outputs") or []}
    parameters = {p["ParameterKey"]: p.get("ParameterValue", "") for p in stack.get("Parameters") or []}
    if not outputs.get("ApiUrl"):
        raise Refused(
            f"stack {settings.stack} has no ApiUrl output: is it a crossroute stack?", code="not_found"
        )
    return Target(
        settings,
        base_url=outputs["ApiUrl"],
        public_base_url=parameters.get("PublicBaseUrl") or outputs["ApiUrl"],
        region=region,
        outputs=outputs,
        stack_name=str(settings.stack),
        aws_endpoint=None,
        session=session,
    )
