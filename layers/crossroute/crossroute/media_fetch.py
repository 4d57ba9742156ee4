"""Downloads of inbound attachments from the providers (``media.MediaSource``), over urllib3 as the
provider clients do (``channels.meta``), streamed: nothing is read before the bucket asks for it.

- Meta: ``GET <graph>/<version>/<media id>`` with the tenant's access token answers ``{url, mime_type,
  sha256, file_size}``; the ``url`` (valid about 5 minutes) is fetched with the same token. A media id
  Meta no longer knows (webhook media ids expire after 7 days) is refused for good.
- Twilio: a ``MediaUrlN`` is fetched with HTTP basic auth (account SID and auth token), only when it is
  a media resource of the tenant's own account on Twilio's API: the credentials go nowhere else.
  Twilio answers with a redirect to the file, followed without the credentials (urllib3 drops
  ``Authorization`` on a redirect to another host).

The local stack points both at its sandbox providers (``META_GRAPH_BASE_URL``, ``TWILIO_API_BASE_URL``).
"""

from __future__ import annotations

import base64
import json
import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from crossroute.channels.meta import GRAPH_BASE_URL, GRAPH_VERSION
from crossroute.media import MediaJob, Refused
from crossroute.tenants import Tenant

TWILIO_BASE_URL = "https://api.twilio.com"
_TWILIO_MEDIA = re.compile(
    r"/2010-04-01/Accounts/(AC[0-9a-fA-F]{32})/Messages/(MM|SM)[0-9a-fA-F]{32}/Media/ME[0-9a-fA-F]{32}"
)
_GONE = frozenset({400, 404, 410})  # Meta: an unknown or expired media id (code 100)


class Unavailable(RuntimeError):
    """The provider did not give the file now (an HTTP status, no answer): the job is retried."""


@dataclass
class _Download:
    """``media.Download`` over a streamed urllib3 response."""

    response: Any
    mime_type: str | None
    size: int | None
    sha256: str | None = None

    def read(self, amount: int = -1) -> bytes:
        return bytes(self.response.read(amount if amount > 0 else None))

    def close(self) -> None:
        self.response.release_conn()


class ProviderMedia:
    def __init__(
        self,
        tenants: Callable[[str], Tenant | None],
        *,
        graph_base_url: str = "",
        graph_version: str = "",
        twilio_base_url: str = "",
        http: Any = None,
        timeout: tuple[float, float] = (3, 30),
    ) -> None:
        import urllib3

        self._tenants = tenants
        self._graph = f"{(graph_base_url or GRAPH_BASE_URL).rstrip('/')}/{graph_version or GRAPH_VERSION}"
        self._twilio = (twilio_base_url or TWILIO_BASE_URL).rstrip("/")
        self._http = http or urllib3.PoolManager(num_pools=4, maxsize=4, retries=False)
        self._timeout = urllib3.Timeout(connect=timeout[0], read=timeout[1])
        self._retries = urllib3.Retry(total=None, connect=0, read=0, status=0, other=0, redirect=3)

    def open(self, job: MediaJob) -> _Download:
        tenant = self._tenants(job.tenant)
        if tenant is None:
            raise Refused("unknown_tenant")
        if job.provider == "meta":
            return self._meta(tenant, job)
        return self._twilio_media(tenant, job)

    def _meta(self, tenant: Tenant, job: MediaJob) -> _Download:
        token = tenant.meta.access_token if tenant.meta else ""
        if not token or not job.media_id:
            raise Refused("no_credentials")
        auth = {"Authorization": f"Bearer {token}"}
        answer = self._get(f"{self._graph}/{job.media_id}", auth, stream=False)
        if answer.status in _GONE:
            raise Refused("not_found")
        _ok(answer)
        doc = json.loads(answer.data)
        url = doc.get("url") if isinstance(doc, dict) else None
        if not isinstance(url, str) or not url.startswith(("https://", self._graph.split("/")[0] + "//")):
            raise Unavailable("no download url")
        file = self._get(url, auth, stream=True)
        _ok(file)
        size = _int(doc.get("file_size"))
        announced = doc.get("mime_type") if isinstance(doc.get("mime_type"), str) else None
        sha256 = doc.get("sha256") if isinstance(doc.get("sha256"), str) else job.sha256
        return _Download(file, announced or file.headers.get("Content-Type"), size, sha256)

    def _twilio_media(self, tenant: Tenant, job: MediaJob) -> _Download:
        twilio = tenant.twilio
        path = (job.url or "").removeprefix(TWILIO_BASE_URL)
        match = _TWILIO_MEDIA.fullmatch(path)
        if twilio is None or match is None or match.group(1) != twilio.account_sid:
            raise Refused("not_a_media_url")  # never send the account's credentials elsewhere
        basic = base64.b64encode(f"{twilio.account_sid}:{twilio.auth_token}".encode()).decode()
        headers = {"Authorization": f"Basic {basic}", "Accept": job.mime_type or "*/*"}
        file = self._get(self._twilio + path, headers, stream=True)
        if file.status in (404, 410):
            raise Refused("not_found")
        _ok(file)
        return _Download(file, file.headers.get("Content-Type"), _int(file.headers.get("Content-Length")))

    def _get(self, url: str, headers: dict[str, str], *, stream: bool) -> Any:
        try:
            return self._http.request(
                "GET",
                url,
                headers=headers,
                preload_content=not stream,
                timeout=self._timeout,
                retries=self._retries,
            )
        except Exception as exc:  # no answer: connection, TLS, timeout
            raise Unavailable(type(exc).__name__) from None


def _ok(response: Any) -> None:
    if not 200 <= response.status < 300:
        response.release_conn()
        raise Unavailable(f"HTTP {response.status}")


def _int(value: Any) -> int | None:
    """A size Meta may send as a string."""
    text = str(value) if isinstance(value, int | str) and not isinstance(value, bool) else ""
    return int(text) if text.isascii() and text.isdigit() else None
