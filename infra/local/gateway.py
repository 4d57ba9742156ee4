"""A local API Gateway HTTP API: routes from the template, payload format 2.0 events, real handlers.

Routing follows HTTP APIs: an exact path beats a path with ``{param}`` segments, which beats a greedy
``{proxy+}``; a route's own method beats ``ANY``. No match -> 404
``{"message":"Not Found"}``; a handler exception -> 500 ``{"message":"Internal Server Error"}``.

Request bodies are passed the way API Gateway does: text content types (``text/*``, JSON, XML,
JavaScript, GraphQL, and missing content types) as a UTF-8 string when the bytes are valid UTF-8;
everything else (``application/x-www-form-urlencoded`` in particular) base64 with
``isBase64Encoded: true``.

Local-only routes (``/_local/...``, the sandbox providers) are mounted with :meth:`LocalGateway.mount`.

The local routes need no IAM auth. What a request to a template route carried is kept for the last
``RECENT`` requests (:meth:`LocalGateway.recent`, served as ``GET /_local/requests``): its route and
path (never its query, which may hold a phone number) and, when it was signed with SigV4, the
``Authorization`` header's credential scope and signed headers (never the signature): how a test
sees that a caller signs the routes that are IAM-authorised when deployed.

Stopping (:meth:`LocalGateway.refuse_invocations`, then :meth:`LocalGateway.stop`): requests for the
template's routes are answered 503 ``{"message":"Service Unavailable"}`` and every response closes its
connection, while the local routes still answer (the invocations in flight may call the sandbox
providers); :meth:`LocalGateway.wait_idle` waits for the invocations in flight; ``stop`` closes the
listening socket and the connections still open (idle keep-alive ones included).
"""

from __future__ import annotations

import base64
import contextlib
import functools
import itertools
import json
import logging
import re
import socket
import threading
import time
import traceback
import uuid
from collections import deque
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from email.message import Message
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qsl, unquote, urlsplit

from .aws import ACCOUNT_ID

__all__ = [
    "HttpRoute",
    "LocalGateway",
    "LocalRequest",
    "LocalResponse",
    "LocalRouteHandler",
    "Router",
    "build_http_event",
    "http_response",
    "is_text_content_type",
]

log = logging.getLogger(__name__)

_TEXT_SUBTYPES = ("json", "xml", "javascript", "graphql", "x-yaml", "yaml")


def is_text_content_type(content_type: str | None) -> bool:
    """Does API Gateway pass bodies of this content type as text (when they are valid UTF-8)?"""
    if not content_type:
        return True
    mime = content_type.split(";", 1)[0].strip().lower()
    if mime.startswith("text/"):
        return True
    main, _, sub = mime.partition("/")
    return main == "application" and any(
        sub == s or sub.endswith("+" + s) or sub.startswith(s) for s in _TEXT_SUBTYPES
    )


def encode_body(body: bytes, content_type: str | None) -> tuple[str, bool]:
    """The event's ``body`` and ``isBase64Encoded`` for raw request bytes."""
    if is_text_content_type(content_type):
        try:
            return body.decode("utf-8"), False
        except UnicodeDecodeError:
            pass
    return base64.b64encode(body).decode("ascii"), True


# --------------------------------------------------------------------------- routing
@dataclass(frozen=True)
class HttpRoute:
    """One route: ``method`` (upper case or ``ANY``) and ``path`` (``/a/{b}/{c+}``)."""

    method: str
    path: str
    target: Any
    function_id: str = ""

    @property
    def route_key(self) -> str:
        return f"{self.method} {self.path}"

    def _param_names(self) -> list[str]:
        return re.findall(r"\{([^}/]+?)\+?\}", self.path)

    def _compiled(self) -> re.Pattern[str]:
        return _compile_path(self.path)

    def match(self, path: str) -> dict[str, str] | None:
        m = self._compiled().fullmatch(path)
        if m is None:
            return None
        return {name: unquote(m.group(f"g{i}")) for i, name in enumerate(self._param_names())}

    def rank(self) -> tuple[int, int, int, int]:
        """Lower is more specific."""
        greedy = "+}" in self.path
        params = self.path.count("{")
        literal = -len(re.sub(r"\{[^}]*\}", "", self.path))
        return (1 if greedy else 0, params, literal, 1 if self.method == "ANY" else 0)


@functools.lru_cache(maxsize=256)
def _compile_path(path: str) -> re.Pattern[str]:
    parts = []
    index = 0
    for segment in path.strip("/").split("/"):
        m = re.fullmatch(r"\{([^}/]+?)(\+?)\}", segment)
        if m:
            parts.append(f"(?P<g{index}>.+)" if m.group(2) else f"(?P<g{index}>[^/]+)")
            index += 1
        else:
            parts.append(re.escape(segment))
    return re.compile("/" + "/".join(parts))


class Router:
    def __init__(self, routes: Sequence[HttpRoute] = ()) -> None:
        self.routes: list[HttpRoute] = []
        for route in routes:
            self.add(route)

    def add(self, route: HttpRoute) -> None:
        for existing in self.routes:
            if existing.route_key == route.route_key:
                raise ValueError(f"route {route.route_key} is declared twice")
        self.routes.append(route)
        self.routes.sort(key=HttpRoute.rank)

    def match(self, method: str, path: str) -> tuple[HttpRoute, dict[str, str]] | None:
        for route in self.routes:
            if route.method not in ("ANY", method.upper()):
                continue
            params = route.match(path)
            if params is not None:
                return route, params
        return None


# --------------------------------------------------------------------------- events
def build_http_event(
    *,
    method: str,
    raw_path: str,
    raw_query: str,
    headers: Sequence[tuple[str, str]],
    body: bytes,
    route_key: str,
    path_parameters: Mapping[str, str] | None = None,
    source_ip: str = "127.0.0.1",
    protocol: str = "HTTP/1.1",
    api_id: str = "localapi",
    request_id: str | None = None,
    now: datetime | None = None,
) -> dict[str, Any]:
    """An API Gateway HTTP API payload format 2.0 event for one request."""
    joined, cookies = _joined_headers(headers)
    query = _query_parameters(raw_query)
    event: dict[str, Any] = {
        "version": "2.0",
        "routeKey": route_key,
        "rawPath": raw_path,
        "rawQueryString": raw_query,
    }
    if cookies:
        event["cookies"] = cookies
    event["headers"] = joined
    if query:
        event["queryStringParameters"] = query
    event["requestContext"] = {
        "accountId": ACCOUNT_ID,
        "apiId": api_id,
        **_domain(joined.get("host", "")),
        "http": {
            "method": method.upper(),
            "path": raw_path,
            "protocol": protocol,
            "sourceIp": source_ip,
            "userAgent": joined.get("user-agent", ""),
        },
        "requestId": request_id or _request_id(),
        "routeKey": route_key,
        "stage": "$default",
        **_request_time(now or datetime.now(UTC)),
    }
    if body:
        event["body"], event["isBase64Encoded"] = encode_body(body, joined.get("content-type"))
    else:
        event["isBase64Encoded"] = False
    if path_parameters:
        event["pathParameters"] = dict(path_parameters)
    return event


def _joined_headers(headers: Sequence[tuple[str, str]]) -> tuple[dict[str, str], list[str]]:
    """Lower-case header names, repeated headers joined with commas; ``Cookie`` split into cookies."""
    joined: dict[str, str] = {}
    cookies: list[str] = []
    for name, value in headers:
        key = name.lower()
        if key == "cookie":
            cookies.extend(c.strip() for c in value.split(";") if c.strip())
            continue
        joined[key] = f"{joined[key]},{value}" if key in joined else value
    return joined, cookies


def _query_parameters(raw_query: str) -> dict[str, str]:
    """``queryStringParameters``: repeated parameters joined with commas."""
    query: dict[str, str] = {}
    for key, value in parse_qsl(raw_query, keep_blank_values=True):
        query[key] = f"{query[key]},{value}" if key in query else value
    return query


def _domain(host: str) -> dict[str, str]:
    return {"domainName": host, "domainPrefix": host.split(".", 1)[0] if host else ""}


def _request_time(now: datetime) -> dict[str, Any]:
    return {"time": now.strftime("%d/%b/%Y:%H:%M:%S +0000"), "timeEpoch": int(now.timestamp() * 1000)}


def _request_id() -> str:
    """API Gateway request ids look like ``JKJaXmPLvHcESHA=``."""
    return base64.b64encode(uuid.uuid4().bytes[:10]).decode().rstrip("=") + "="


@dataclass
class LocalResponse:
    status: int
    headers: list[tuple[str, str]] = field(default_factory=list)
    body: bytes = b""

    @classmethod
    def json(cls, status: int, doc: Any) -> LocalResponse:
        return cls(
            status, [("Content-Type", "application/json")], json.dumps(doc, separators=(",", ":")).encode()
        )


def http_response(result: Any) -> LocalResponse:
    """Map a handler's return value to the HTTP response, as HTTP API payload format 2.0 does."""
    if isinstance(result, dict) and "statusCode" in result:
        status = int(result["statusCode"])
        headers = [(str(k), _header_value(v)) for k, v in (result.get("headers") or {}).items()]
        headers.extend(("Set-Cookie", str(c)) for c in result.get("cookies") or [])
        body = result.get("body")
        if body is None:
            raw = b""
        elif result.get("isBase64Encoded"):
            raw = base64.b64decode(str(body))
        else:
            raw = (body if isinstance(body, str) else json.dumps(body)).encode("utf-8")
        return LocalResponse(status, headers, raw)
    # No statusCode: 200, application/json, the returned value as the body.
    text = result if isinstance(result, str) else json.dumps(result)
    return LocalResponse(200, [("Content-Type", "application/json")], text.encode("utf-8"))


def _header_value(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


# --------------------------------------------------------------------------- server
@dataclass
class LocalRequest:
    """A request to a local-only route (``/_local/...``, ``/_sandbox/...``)."""

    method: str
    path: str
    query: str
    headers: Message
    body: bytes

    def json(self) -> Any:
        return json.loads(self.body or b"null")


LocalRouteHandler = Callable[[LocalRequest], LocalResponse]
Invoker = Callable[[HttpRoute, dict[str, Any]], Any]

NOT_FOUND = {"message": "Not Found"}
INTERNAL_ERROR = {"message": "Internal Server Error"}
UNAVAILABLE = {"message": "Service Unavailable"}
POLL_INTERVAL = 0.1  # seconds: how long stop() may wait for the accept loop to notice
RECENT = 200  # template-route requests remembered for GET /_local/requests
SIGV4 = "AWS4-HMAC-SHA256"


def sigv4_scope(authorization: str | None) -> dict[str, str] | None:
    """A SigV4 ``Authorization`` header's ``Credential`` (access key id / date / region / service /
    ``aws4_request``) and ``SignedHeaders``; None when the request is not signed that way."""
    if not authorization or not authorization.startswith(SIGV4 + " "):
        return None
    parts = dict(p.strip().split("=", 1) for p in authorization[len(SIGV4) + 1 :].split(",") if "=" in p)
    return {"credential": parts.get("Credential", ""), "signed_headers": parts.get("SignedHeaders", "")}


class LocalGateway:
    """The HTTP server: local routes by path prefix first, then the template's routes."""

    def __init__(
        self,
        router: Router,
        invoke: Invoker,
        *,
        host: str = "127.0.0.1",
        port: int = 3000,
        api_id: str = "localapi",
    ) -> None:
        self.router = router
        self.invoke = invoke
        self.api_id = api_id
        self._mounts: list[tuple[str, LocalRouteHandler]] = []
        self._server = _Server((host, port), _Handler)
        self._server.gateway = self
        self._thread: threading.Thread | None = None
        self.stopping = False
        self._active: dict[int, str] = {}  # invocations in flight: request thread -> what it runs
        self._active_cond = threading.Condition()
        self._recent: deque[dict[str, Any]] = deque(maxlen=RECENT)
        self._numbers = itertools.count(1)

    @property
    def port(self) -> int:
        return int(self._server.server_address[1])

    def mount(self, prefix: str, handler: LocalRouteHandler) -> None:
        """Serve every path starting with ``prefix`` (e.g. ``/_sandbox/``) with ``handler``."""
        self._mounts.append((prefix, handler))
        self._mounts.sort(key=lambda m: -len(m[0]))

    def start(self) -> None:
        self._thread = threading.Thread(
            target=self._server.serve_forever, args=(POLL_INTERVAL,), name="local-gateway", daemon=True
        )
        self._thread.start()

    def refuse_invocations(self) -> None:
        """The stack is stopping: the template's routes answer 503 and connections are not kept alive.
        The local routes still answer until :meth:`stop`."""
        self.stopping = True

    def in_flight(self) -> list[str]:
        """The invocations running now, e.g. ``ContactsAndMessagesApiFunction (GET /contacts)``."""
        with self._active_cond:
            return sorted(self._active.values())

    def recent(self) -> list[dict[str, Any]]:
        """The last ``RECENT`` requests to the template's routes, oldest first: ``n`` (counting every
        request since the start), ``method``, ``path``, ``route_key``, ``sigv4`` (:func:`sigv4_scope`,
        or None)."""
        return list(self._recent)

    def wait_idle(self, timeout: float) -> bool:
        """Wait up to ``timeout`` s until no invocation is in flight; False on timeout."""
        with self._active_cond:
            return self._active_cond.wait_for(lambda: not self._active, max(0.0, timeout))

    def stop(self, timeout: float = 5.0) -> None:
        """Close the listening socket and every open connection; wait up to ``timeout`` s for the
        accept loop. Requests still being handled are cut off (their responses cannot be sent)."""
        deadline = time.monotonic() + timeout
        self.stopping = True
        if self._thread is not None:  # shutdown() would wait forever for a loop that never ran
            self._server.shutdown()  # returns within POLL_INTERVAL
        self._server.server_close()
        self._server.close_connections()
        if self._thread is not None:
            self._thread.join(max(0.0, deadline - time.monotonic()))

    def handle(self, req: _Handler) -> LocalResponse:
        split = urlsplit(req.path)
        raw_path, raw_query = split.path or "/", split.query
        body = req.read_body()
        for prefix, local in self._mounts:
            if raw_path.startswith(prefix):
                return local(LocalRequest(req.command, raw_path, raw_query, req.headers, body))
        matched = self.router.match(req.command, raw_path)
        if matched is None:
            return LocalResponse.json(404, NOT_FOUND)
        route, params = matched
        if self.stopping:
            return LocalResponse.json(503, UNAVAILABLE)
        seen = {
            "n": next(self._numbers),
            "method": req.command,
            "path": raw_path,
            "route_key": route.route_key,
        }
        self._recent.append({**seen, "sigv4": sigv4_scope(req.headers.get("Authorization"))})
        event = build_http_event(
            method=req.command,
            raw_path=raw_path,
            raw_query=raw_query,
            headers=[*req.headers.items(), *_forwarded(req)],
            body=body,
            route_key=route.route_key,
            path_parameters=params,
            source_ip=req.client_address[0],
            protocol=req.request_version,
            api_id=self.api_id,
        )
        ident = threading.get_ident()
        with self._active_cond:
            self._active[ident] = f"{route.function_id or 'handler'} ({route.route_key})"
        try:
            return http_response(self.invoke(route, event))
        except Exception as exc:
            if self.stopping:  # refused (FunctionStopped) or cut short by the stop
                log.debug("%s %s: %s (the stack is stopping)", req.command, raw_path, type(exc).__name__)
                return LocalResponse.json(503, UNAVAILABLE)
            log.error(
                "%s %s: handler %s failed\n%s",
                req.command,
                raw_path,
                route.function_id or route.route_key,
                traceback.format_exc().rstrip(),
            )
            return LocalResponse.json(500, INTERNAL_ERROR)
        finally:
            with self._active_cond:
                self._active.pop(ident, None)
                self._active_cond.notify_all()


def _forwarded(req: BaseHTTPRequestHandler) -> list[tuple[str, str]]:
    """Headers API Gateway adds in front of every integration."""
    present = {k.lower() for k in req.headers}
    extra = [
        ("X-Forwarded-For", req.client_address[0]),
        ("X-Forwarded-Port", str(req.server.server_address[1])),  # type: ignore[index]
        ("X-Forwarded-Proto", "http"),
        ("X-Amzn-Trace-Id", f"Root=1-{int(time.time()):08x}-{uuid.uuid4().hex[:24]}"),
    ]
    return [(k, v) for k, v in extra if k.lower() not in present]


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True
    gateway: LocalGateway

    def __init__(self, address: tuple[str, int], handler: type[BaseHTTPRequestHandler]) -> None:
        super().__init__(address, handler)
        self._connections: set[socket.socket] = set()
        self._connections_lock = threading.Lock()

    def process_request(self, request: Any, client_address: Any) -> None:
        with self._connections_lock:
            self._connections.add(request)
        super().process_request(request, client_address)

    def shutdown_request(self, request: Any) -> None:
        with self._connections_lock:
            self._connections.discard(request)
        super().shutdown_request(request)

    def close_connections(self) -> None:
        """Shut down every connection still open: a handler waiting for the next request on a
        keep-alive connection reads EOF and ends."""
        with self._connections_lock:
            connections = list(self._connections)
        for conn in connections:
            with contextlib.suppress(OSError):  # already closed by its handler
                conn.shutdown(socket.SHUT_RDWR)


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server: _Server

    def read_body(self) -> bytes:
        if "chunked" in self.headers.get("Transfer-Encoding", "").lower():
            chunks = []
            while True:
                size = int(self.rfile.readline().split(b";", 1)[0].strip() or b"0", 16)
                if size == 0:
                    while self.rfile.readline() not in (b"\r\n", b"\n", b""):
                        pass
                    break
                chunks.append(self.rfile.read(size))
                self.rfile.readline()
            return b"".join(chunks)
        length = int(self.headers.get("Content-Length") or 0)
        return self.rfile.read(length) if length > 0 else b""

    def _serve(self) -> None:
        started = time.monotonic()
        try:
            response = self.server.gateway.handle(self)
        except Exception:
            log.error("%s %s: gateway error\n%s", self.command, self.path, traceback.format_exc().rstrip())
            response = LocalResponse.json(500, INTERNAL_ERROR)
        self.send_response(
            response.status, HTTPStatus(response.status).phrase if _known(response.status) else ""
        )
        names = {name.lower() for name, _ in response.headers}
        for name, value in response.headers:
            self.send_header(name, value)
        if self.server.gateway.stopping:  # no further request on this connection
            if "connection" not in names:
                self.send_header("Connection", "close")
            self.close_connection = True
        if "content-type" not in names and response.body:
            self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(response.body)))
        self.send_header("Apigw-Requestid", _request_id())
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(response.body)
        elapsed_ms = (time.monotonic() - started) * 1000
        path = self.path.split("?", 1)[0]  # query strings may carry phone numbers: never logged
        if path.startswith("/_local/"):
            log.debug("%s %s %d %.0f ms", self.command, path, response.status, elapsed_ms)
        else:
            log.info("%s %s %d %.0f ms", self.command, path, response.status, elapsed_ms)

    do_GET = do_POST = do_PUT = do_PATCH = do_DELETE = do_OPTIONS = do_HEAD = _serve

    def log_message(self, format: str, *args: Any) -> None:
        """Silence the stdlib's per-request lines; :meth:`_serve` logs one concise line."""

    def send_response(self, code: int, message: str | None = None) -> None:
        self.send_response_only(code, message)
        self.send_header("Server", "crossroute-local")
        self.send_header("Date", self.date_time_string())


def _known(status: int) -> bool:
    try:
        HTTPStatus(status)
    except ValueError:
        return False
    return True
