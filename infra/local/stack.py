"""The local stack: AWS emulator + resources from template.yaml + local API gateway + SQS runner.

Start order: moto server -> gateway (``/_local/health`` answers 503) -> provision the template's
resources -> function environments into ``os.environ`` -> handlers imported -> SQS pollers ->
``/_local/health`` answers 200.

Configuration (environment variables, all optional):

==============================  ========================================================================
``CROSSROUTE_PORT``             local API gateway port (3000; 0 picks a free one)
``CROSSROUTE_AWS_PORT``         AWS emulator port (4566; 0 picks a free one)
``CROSSROUTE_PUBLIC_BASE_URL``  ``PUBLIC_BASE_URL`` of the functions (``http://127.0.0.1:<port>``)
``CROSSROUTE_TENANTS_FILE``     a tenant registry JSON document replacing the built-in ``demo`` tenant
``CROSSROUTE_TEMPLATE``         the SAM template (``template.yaml`` of the repository)
``CROSSROUTE_PARAMETERS``       template parameter overrides, ``Name=value`` separated by spaces
``CROSSROUTE_OUTPUTS_FILE``     also write the ``/_local/outputs`` document to this file when ready
``CROSSROUTE_SQS_RETRY_DELAY``  seconds before failed SQS records reappear (default: the queue's
                                visibility timeout, as in AWS)
``CROSSROUTE_CONCURRENCY``      execution environments per function (4)
``CROSSROUTE_EVENT_SOURCES``    ``off``: no SQS pollers, so queued events stay on their queues to look at
``CROSSROUTE_LOG_LEVEL``        level of the local stack's own logs (INFO)
==============================  ========================================================================

The sandbox providers (``/_sandbox/``, ``sandbox/__init__.py``) wait ``CROSSROUTE_SANDBOX_DELAY_MS``
(``50-200`` by default; ``0``) between the status webhooks of one send.

Stopping (SIGINT / Ctrl-C or SIGTERM; :meth:`LocalStack.stop` in-process): the SQS pollers receive no
more batches, the template's routes answer 503 and new invocations are refused, the sandbox posts no
more status callbacks; the invocations in flight get a bounded time to finish (``SIGNAL_DRAIN``
seconds after a signal), whatever still runs then is logged and abandoned; the gateway and the AWS
emulator close. ``python -m infra.local`` then leaves with ``os._exit``: the interpreter's own
finalization would garbage-collect the emulator's whole in-memory state (seconds per 100 MB) while
abandoned threads still run. A watchdog makes the process exit ``EXIT_DEADLINE`` seconds after the
signal whatever happens (exit code 1, naming what was still running); a second signal exits at once.
A signal during startup interrupts it.

``GET /_local/outputs`` returns ``{"base_url", "aws_endpoint", "region", "stack_name", "parameters",
"resources": {LogicalId: {"type", "ref", "emulated", <GetAtt attributes>...}}, "outputs": {Name: value},
"routes": [...], "event_sources": [...], "environment": {...}}``. The same outputs and parameters are
registered as the CloudFormation stack ``stack_name`` in the emulator (``cloudformation.py``; on a
thread, about a second after ``/_local/health`` answers 200), so ``DescribeStacks`` finds the local
stack as it finds a deployed one. ``GET /_local/requests`` returns
``{"requests": [...]}``: the last requests to the template's routes and whether each was SigV4-signed
(``gateway.py``).
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import shlex
import signal
import socket
import sys
import threading
import time
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from types import FrameType
from typing import Any, NoReturn

from moto.server import ThreadedMotoServer

from ..template import load_template
from . import cloudformation
from .aws import DUMMY_CREDENTIALS, REGION, ClientFactory
from .functions import FunctionRuntime, FunctionSpec, function_specs, merged_environment
from .gateway import HttpRoute, LocalGateway, LocalRequest, LocalResponse, Router
from .intrinsics import STACK_NAME
from .moto_patches import patch_moto
from .provision import Provisioner
from .sandbox import Sandbox
from .sqs_runner import SqsEventSource, SqsPoller
from .tenant import describe, read_tenants_document, validate

__all__ = ["LocalStack", "StackConfig", "configure_logging", "main"]

log = logging.getLogger("infra.local")

REPO_ROOT = Path(__file__).resolve().parents[2]
HOST = "127.0.0.1"  # loopback only
API_ID = "localapi"
TENANTS_SECRET = "TenantsSecret"  # noqa: S105 - a logical id

STOP_TIMEOUT = 10.0  # LocalStack.stop(): seconds the invocations in flight get to finish
SIGNAL_DRAIN = 2.0  # the same after SIGINT / SIGTERM (counted from the signal)
EXIT_DEADLINE = 3.5  # seconds after SIGINT / SIGTERM: the process is gone by then, whatever still runs
MOTO_STOP_TIMEOUT = 1.0


class _StopRequested(BaseException):
    """Raised by the signal handler into a startup under way (``except Exception`` does not catch it)."""


@dataclass
class StackConfig:
    template: Path = REPO_ROOT / "template.yaml"
    port: int = 3000
    aws_port: int = 4566
    public_base_url: str | None = None
    tenants_document: str | None = None  # None: $CROSSROUTE_TENANTS_FILE or the built-in tenant
    parameter_overrides: dict[str, str] = field(default_factory=dict)
    outputs_file: Path | None = None
    sqs_retry_delay: int | None = None
    concurrency: int = 4
    event_sources: bool = True

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> StackConfig:
        env = os.environ if environ is None else environ

        def integer(name: str, default: int) -> int:
            raw = env.get(name, "").strip()
            try:
                return int(raw) if raw else default
            except ValueError:
                raise SystemExit(f"{name} must be an integer, got {raw!r}") from None

        overrides = {}
        for item in shlex.split(env.get("CROSSROUTE_PARAMETERS", "")):
            name, sep, value = item.partition("=")
            if not sep:
                raise SystemExit(f"CROSSROUTE_PARAMETERS: expected Name=value, got {item!r}")
            overrides[name] = value
        retry = env.get("CROSSROUTE_SQS_RETRY_DELAY", "").strip()
        outputs = env.get("CROSSROUTE_OUTPUTS_FILE", "").strip()
        return cls(
            template=Path(env.get("CROSSROUTE_TEMPLATE") or REPO_ROOT / "template.yaml"),
            port=integer("CROSSROUTE_PORT", 3000),
            aws_port=integer("CROSSROUTE_AWS_PORT", 4566),
            public_base_url=env.get("CROSSROUTE_PUBLIC_BASE_URL") or None,
            tenants_document=read_tenants_document(env),
            parameter_overrides=overrides,
            outputs_file=Path(outputs) if outputs else None,
            sqs_retry_delay=integer("CROSSROUTE_SQS_RETRY_DELAY", 0) if retry else None,
            concurrency=integer("CROSSROUTE_CONCURRENCY", 4),
            event_sources=env.get("CROSSROUTE_EVENT_SOURCES", "on").strip().lower() != "off",
        )


class LocalStack:
    """The whole local stack in this process. Not reentrant: it sets process-wide ``os.environ``."""

    def __init__(self, config: StackConfig | None = None) -> None:
        self.config = config or StackConfig()
        self.template: dict[str, Any] = {}
        self.root = self.config.template.resolve().parent
        self.ready = threading.Event()
        self.moto: ThreadedMotoServer | None = None
        self.gateway: LocalGateway | None = None
        self.provisioner: Provisioner | None = None
        self.functions: dict[str, FunctionRuntime] = {}
        self.pollers: list[SqsPoller] = []
        self.routes: list[HttpRoute] = []
        self.environment: dict[str, str] = {}
        self.aws_endpoint = ""
        self.base_url = ""
        self.public_base_url = ""
        self.clients: ClientFactory | None = None
        self._outputs: dict[str, Any] = {}
        self._starting = False
        self._stopping = False
        self.sandbox = Sandbox.from_env()  # the fake Graph and Twilio APIs (contract section 4)

    # ------------------------------------------------------------------ lifecycle
    def start(self) -> LocalStack:
        """Start everything and return once ``/_local/health`` would answer 200. Raises on failure."""
        started = time.monotonic()
        try:
            self._starting = True
            try:
                self._start()
            finally:
                self._starting = False
        except BaseException as exc:
            self.stop(timeout=SIGNAL_DRAIN if isinstance(exc, _StopRequested) else STOP_TIMEOUT)
            raise
        self._outputs = self._build_outputs()
        if self.config.outputs_file:
            self.config.outputs_file.write_text(json.dumps(self._outputs, indent=2), encoding="utf-8")
        self.ready.set()
        self._log_summary(time.monotonic() - started)
        threading.Thread(target=self._register_stack, name="cloudformation-register", daemon=True).start()
        return self

    def _start(self) -> None:
        """The start order of the module's docstring, one step each."""
        self._load_template()
        tenants = self._tenants_document()
        self._start_emulator()
        self._start_gateway(tenants)
        _set_process_aws_environment(self.aws_endpoint)
        provisioner = self._provision(tenants)
        specs = function_specs(
            self.template,
            provisioner.resolve,
            self.root,
            name_for=provisioner.name_for,
            is_enabled=provisioner.resolver.is_enabled,
        )
        self._export_environment(specs)
        self._create_runtimes(specs)
        self._add_routes(specs)
        self._warm_up()
        self._start_pollers(specs)

    # ------------------------------------------------------------------ startup steps
    def _load_template(self) -> None:
        # moto's server logs every request through werkzeug's logger at INFO: keep it quiet.
        logging.getLogger("werkzeug").setLevel(logging.ERROR)
        self.template = load_template(self.config.template)
        _add_layer_paths(self.template, self.root)

    def _tenants_document(self) -> str:
        """The registry document for the ``TenantsSecret``, validated when the template has one."""
        cfg = self.config
        tenants = cfg.tenants_document if cfg.tenants_document is not None else read_tenants_document()
        if TENANTS_SECRET in (self.template.get("Resources") or {}):
            validate(tenants, where=os.environ.get("CROSSROUTE_TENANTS_FILE") or "the local tenant document")
        return tenants

    def _start_emulator(self) -> None:
        self.moto = _start_moto(self.config.aws_port)
        self.aws_endpoint = "http://{}:{}".format(*self.moto.get_host_and_port())
        self.clients = ClientFactory(self.aws_endpoint)

    def _start_gateway(self, tenants: str) -> None:
        """The gateway with the local routes and the sandbox; the template's routes come later."""
        port = self.config.port
        try:
            self.gateway = LocalGateway(Router(), self._invoke_route, host=HOST, port=port, api_id=API_ID)
        except OSError as exc:
            raise OSError(
                f"the API gateway cannot listen on {HOST}:{port} ({exc.strerror}); set CROSSROUTE_PORT"
            ) from None
        self.gateway.mount("/_local/", self._local_routes)
        self.gateway.mount("/_sandbox/", self.sandbox.handle)
        self.gateway.start()
        self.base_url = f"http://{HOST}:{self.gateway.port}"
        self.public_base_url = (self.config.public_base_url or self.base_url).rstrip("/")
        self.sandbox.bind(tenants, base_url=self.base_url, public_base_url=self.public_base_url)

    def _provision(self, tenants: str) -> Provisioner:
        """Create the template's resources in the emulator (``PublicBaseUrl`` defaults to ours)."""
        assert self.clients is not None
        overrides = dict(self.config.parameter_overrides)
        if "PublicBaseUrl" in (self.template.get("Parameters") or {}):
            overrides.setdefault("PublicBaseUrl", self.public_base_url)
        resources = self.template.get("Resources") or {}
        self.provisioner = Provisioner(
            self.template,
            self.clients,
            parameter_overrides=overrides,
            secret_values={TENANTS_SECRET: tenants} if TENANTS_SECRET in resources else {},
            http_api_id=API_ID,
        )
        self.provisioner.provision_all()
        return self.provisioner

    def _export_environment(self, specs: list[FunctionSpec]) -> None:
        """The functions' environments, ``PUBLIC_BASE_URL`` and the sandbox URLs into ``os.environ``."""
        self.environment = merged_environment(specs)
        os.environ.update(self.environment)
        os.environ["PUBLIC_BASE_URL"] = self.public_base_url
        self.environment["PUBLIC_BASE_URL"] = self.public_base_url
        for name, value in self.sandbox.environment().items():  # the provider clients use the fakes
            os.environ[name] = value
            self.environment[name] = value

    def _create_runtimes(self, specs: list[FunctionSpec]) -> None:
        for spec in specs:
            if spec.code_uri.is_dir() and str(spec.code_uri) not in sys.path:
                sys.path.append(str(spec.code_uri))
            self.functions[spec.logical_id] = FunctionRuntime(spec, max_environments=self.config.concurrency)

    def _add_routes(self, specs: list[FunctionSpec]) -> None:
        """The functions' ``HttpApi`` events as the gateway's routes."""
        assert self.gateway is not None
        for spec, event_id, event in _events(specs, "HttpApi"):
            route = _http_route(spec, event_id, event, self.functions[spec.logical_id])
            self.gateway.router.add(route)
            self.routes.append(route)

    def _warm_up(self) -> None:
        """Import every handler now, so that the first requests are not cold starts."""
        for runtime in self.functions.values():
            try:
                runtime.warm_up()
            except Exception:
                log.exception(
                    "%s: handler failed to import (requests to it will answer 500)",
                    runtime.spec.logical_id,
                )

    def _start_pollers(self, specs: list[FunctionSpec]) -> None:
        """One SQS poller per ``SQS`` event (none with ``CROSSROUTE_EVENT_SOURCES=off``)."""
        assert self.clients is not None
        sources = [self._sqs_source(spec, event_id, event) for spec, event_id, event in _events(specs, "SQS")]
        if not self.config.event_sources:
            return
        for source in sources:
            invoke = self.functions[source.function_id].invoke
            self.pollers.append(
                SqsPoller(self.clients("sqs"), source, invoke, retry_delay=self.config.sqs_retry_delay)
            )
        for poller in self.pollers:
            poller.start()

    # ------------------------------------------------------------------ lifecycle
    def stop(self, timeout: float = STOP_TIMEOUT) -> None:
        """Stop everything; the invocations in flight get up to ``timeout`` s to finish. Returns within
        about ``timeout`` + 1.5 s: what still runs then is logged and abandoned (daemon threads)."""
        deadline = time.monotonic() + timeout

        def left() -> float:
            return max(0.0, deadline - time.monotonic())

        self._stopping = True
        self.ready.clear()
        pollers, self.pollers = self.pollers, []
        for poller in pollers:  # no more batches
            poller.signal_stop()
        if self.gateway is not None:  # no more invocations over HTTP (503), no more keep-alive
            self.gateway.refuse_invocations()
        for runtime in self.functions.values():  # requests waiting for an environment: 503 too
            runtime.close()
        self.sandbox.stop_callbacks()
        for poller in pollers:  # the batches in flight
            poller.stop(left())
        if self.gateway is not None:
            self.gateway.wait_idle(left())
        abandoned = [f"{p.source.function_id} (SQS {p.source.queue_name})" for p in pollers if p.running]
        if self.gateway is not None:
            abandoned.extend(self.gateway.in_flight())
        if abandoned:
            log.warning(
                "stopping: %d invocation(s) still running after %.1f s, abandoned: %s",
                len(abandoned),
                timeout,
                ", ".join(abandoned),
            )
        self.sandbox.stop(timeout=min(left(), 0.5))
        if self.gateway is not None:
            self.gateway.stop(timeout=0.5)
            self.gateway = None
        if self.moto is not None:
            try:
                _stop_moto(self.moto, MOTO_STOP_TIMEOUT)
            except Exception:  # stopping a server that failed to start
                log.debug("moto stop failed", exc_info=True)
            self.moto = None

    def serve_forever(self) -> None:
        """Run until SIGINT / SIGTERM, then stop (bounded; see the module's docstring).

        The signal handler only records the signal (it interrupts the main thread anywhere, so it takes
        no lock), except during startup, which it interrupts with :class:`_StopRequested`. The signal
        numbers also reach a watchdog thread through ``signal.set_wakeup_fd`` (written by the C-level
        handler, so even while the main thread is stuck): it ends the process ``EXIT_DEADLINE`` s after
        the first signal if the stop has not by then, and at once on a second signal.
        """
        received: list[tuple[int, float]] = []  # (signal, monotonic time); list.append is atomic

        def on_signal(signum: int, _frame: FrameType | None) -> None:
            if received:
                _exit_now(128 + signum, f"second {signal.Signals(signum).name}: exiting now", flush=False)
            received.append((signum, time.monotonic()))
            if self._starting:
                raise _StopRequested(signum)

        wakeup_read, wakeup_write = socket.socketpair()
        wakeup_write.setblocking(False)
        threading.Thread(target=_watchdog, args=(wakeup_read,), name="stop-watchdog", daemon=True).start()
        previous_fd = signal.set_wakeup_fd(wakeup_write.fileno(), warn_on_full_buffer=False)
        previous = {s: signal.signal(s, on_signal) for s in (signal.SIGINT, signal.SIGTERM)}
        try:
            try:
                self.start()
                while not received:
                    time.sleep(0.1)
            except _StopRequested:
                pass  # start() has stopped what it had started
            finally:
                drain = STOP_TIMEOUT
                if received:
                    signum, at = received[0]
                    during = "" if self._outputs else " during startup"
                    log.info("%s%s: stopping", signal.Signals(signum).name, during)
                    drain = at + SIGNAL_DRAIN - time.monotonic()
                self.stop(timeout=max(0.0, drain))
        finally:
            for s, handler in previous.items():
                signal.signal(s, handler)
            signal.set_wakeup_fd(previous_fd)
            wakeup_write.close()  # without a signal: ends the watchdog; after one, it stays armed
        log.info("stopped")

    # ------------------------------------------------------------------ pieces
    def _invoke_route(self, route: HttpRoute, event: dict[str, Any]) -> Any:
        runtime: FunctionRuntime = route.target
        return runtime.invoke(event)

    def _sqs_source(self, spec: FunctionSpec, event_id: str, event: Mapping[str, Any]) -> SqsEventSource:
        """An ``SQS`` event of a function (its queue one of the template's) as an event source."""
        assert self.provisioner is not None
        p = self.provisioner.resolve(dict(event.get("Properties") or {}))
        queue_arn = str(p["Queue"])
        queues = [r for r in self.provisioner.resources.values() if r.type == "AWS::SQS::Queue"]
        queue_urls = {r.attributes["Arn"]: r.ref for r in queues}
        if queue_arn not in queue_urls:
            raise ValueError(f"{spec.logical_id}.{event_id}: Queue must be a queue of the template")
        return SqsEventSource(
            function_id=spec.logical_id,
            event_id=event_id,
            queue_arn=queue_arn,
            queue_url=str(queue_urls[queue_arn]),
            batch_size=int(p.get("BatchSize", 10)),
            report_batch_item_failures="ReportBatchItemFailures" in (p.get("FunctionResponseTypes") or []),
        )

    def _local_routes(self, request: LocalRequest) -> LocalResponse:
        if request.path == "/_local/health" and request.method in ("GET", "HEAD"):
            if self.ready.is_set():
                return LocalResponse.json(200, {"status": "ok"})
            return LocalResponse.json(503, {"status": "stopping" if self._stopping else "starting"})
        if request.path == "/_local/outputs" and request.method == "GET":
            if not self.ready.is_set():
                return LocalResponse.json(503, {"status": "starting"})
            return LocalResponse.json(200, self._outputs)
        if request.path == "/_local/requests" and request.method == "GET" and self.gateway is not None:
            return LocalResponse.json(200, {"requests": self.gateway.recent()})
        return LocalResponse.json(404, {"message": "Not Found"})

    def outputs(self) -> dict[str, Any]:
        return dict(self._outputs)

    def _register_stack(self) -> None:
        """The outputs and parameters as the CloudFormation stack ``stack_name`` in the emulator. Run on
        a thread once the stack is ready (moto's template parser takes about a second to import), so
        ``DescribeStacks`` finds it shortly after ``/_local/health`` answers 200."""
        assert self.clients is not None
        doc = self._outputs
        try:
            cloudformation.register(
                self.clients("cloudformation"), doc["stack_name"], doc["outputs"], doc["parameters"]
            )
        except Exception as exc:  # the stack works without it; only `--stack` users miss it
            if not self._stopping:
                log.warning("could not register the CloudFormation stack %s: %s", doc["stack_name"], exc)
            return
        log.debug("registered as the CloudFormation stack %s in the emulator", doc["stack_name"])

    def _build_outputs(self) -> dict[str, Any]:
        assert self.provisioner is not None
        outputs: dict[str, Any] = {}
        api_prefix = f"https://{API_ID}.execute-api.{REGION}.amazonaws.com"
        for name, spec in (self.template.get("Outputs") or {}).items():
            if not self.provisioner.resolver.is_enabled(spec):
                continue
            value = self.provisioner.resolve(spec["Value"])
            if isinstance(value, str) and value.startswith(api_prefix):
                value = self.base_url + value[len(api_prefix) :]
            outputs[name] = value
        return {
            "base_url": self.base_url,
            "public_base_url": self.public_base_url,
            "aws_endpoint": self.aws_endpoint,
            "region": REGION,
            "stack_name": STACK_NAME,
            "parameters": self.provisioner.parameters,
            "resources": {lid: r.as_json() for lid, r in self.provisioner.resources.items()},
            "outputs": outputs,
            "routes": [{"route_key": r.route_key, "function": r.function_id} for r in self.routes],
            "event_sources": [
                {
                    "function": p.source.function_id,
                    "queue_url": p.source.queue_url,
                    "queue_arn": p.source.queue_arn,
                    "batch_size": p.source.batch_size,
                    "report_batch_item_failures": p.source.report_batch_item_failures,
                }
                for p in self.pollers
            ],
            "environment": dict(sorted(self.environment.items())),
        }

    def _log_summary(self, seconds: float) -> None:
        assert self.provisioner is not None
        lines = [f"crossroute local stack ready in {seconds:.1f} s"]
        lines.append(f"  API gateway    {self.base_url}  (health /_local/health, outputs /_local/outputs)")
        lines.append(f"  AWS emulator   {self.aws_endpoint}  (region {REGION}, any credentials)")
        if self.public_base_url != self.base_url:
            lines.append(f"  public URL     {self.public_base_url}")
        width = max((len(r.route_key) for r in self.routes), default=0)
        for i, route in enumerate(self.routes):
            label = "routes" if i == 0 else ""
            lines.append(f"  {label:<14} {route.route_key:<{width}}  -> {route.function_id}")
        for i, poller in enumerate(self.pollers):
            label = "SQS sources" if i == 0 else ""
            lines.append(f"  {label:<14} {poller.source.describe()}")
        for res in self.provisioner.resources.values():
            if res.emulated:
                kind = res.type.split("::", 1)[1]
                lines.append(f"  {kind:<28} {res.logical_id:<24} {res.ref}")
        tenants = self.provisioner.secret_values.get(TENANTS_SECRET)
        if tenants:
            lines.append(f"  tenants        {describe(tenants)}")
        log.info("\n".join(lines))


def _start_moto(port: int) -> ThreadedMotoServer:
    """moto's ThreadedMotoServer, failing fast (not hanging) when the port is taken."""
    if port:
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
            probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            try:
                probe.bind((HOST, port))
            except OSError as exc:
                raise OSError(
                    f"the AWS emulator cannot listen on {HOST}:{port} ({exc.strerror}); "
                    "set CROSSROUTE_AWS_PORT"
                ) from None
    patch_moto()
    server = ThreadedMotoServer(ip_address=HOST, port=port, verbose=False)
    starter = threading.Thread(target=server.start, name="moto-start", daemon=True)
    starter.start()
    starter.join(15)
    if starter.is_alive():
        raise OSError(f"the AWS emulator did not start on {HOST}:{port}")
    return server


def _stop_moto(server: ThreadedMotoServer, timeout: float) -> None:
    """``ThreadedMotoServer.stop()`` bounded by ``timeout`` (its own joins without one, and its
    ``shutdown()`` waits forever for a loop that has not started), and with the listening socket
    closed (moto leaves it open: clients would hang instead of being refused)."""
    deadline = time.monotonic() + timeout
    inner, thread = server._server, server._thread
    if inner is None:
        return
    stopper = threading.Thread(target=inner.shutdown, name="moto-stop", daemon=True)
    stopper.start()
    stopper.join(timeout)
    if stopper.is_alive():
        log.warning("the AWS emulator did not stop within %.1f s; abandoned", timeout)
        return
    inner.server_close()
    if thread is not None:
        thread.join(max(0.0, deadline - time.monotonic()))


def _running_threads() -> list[str]:
    """The live threads but this one, with where each is (for the watchdog's last words)."""
    frames = sys._current_frames()
    lines = []
    for thread in threading.enumerate():
        if thread is threading.current_thread():
            continue
        frame = frames.get(thread.ident or -1)
        where = ""
        if frame is not None:
            code = frame.f_code
            where = f" in {code.co_name} ({Path(code.co_filename).name}:{frame.f_lineno})"
        lines.append(f"{thread.name}{where}")
    return lines


def _watchdog(wakeup: socket.socket) -> None:
    """Read the signal numbers ``signal.set_wakeup_fd`` writes: exit the process ``EXIT_DEADLINE`` s
    after the first one unless the stop has done it by then (exit code 1, naming the threads still
    running), or at once on a second one. End quietly if the socket closes before any signal."""
    try:
        first = wakeup.recv(1)
    except OSError:
        first = b""
    if not first:
        wakeup.close()
        return
    name = _signal_name(first[0])
    deadline = time.monotonic() + EXIT_DEADLINE
    while (left := deadline - time.monotonic()) > 0:
        wakeup.settimeout(left)
        try:
            more = wakeup.recv(1)
        except TimeoutError:
            break
        except OSError:
            more = b""
        if not more:  # serve_forever is over and closed its end: the exit is near, keep watching
            time.sleep(max(0.0, deadline - time.monotonic()))
            break
        _exit_now(128 + more[0], f"second {_signal_name(more[0])}: exiting now")
    running = _running_threads()
    _exit_now(
        1,
        f"still running {EXIT_DEADLINE:.1f} s after {name}, exiting anyway; "
        f"{len(running)} other thread(s): " + "; ".join(running),
    )


def _signal_name(signum: int) -> str:
    try:
        return signal.Signals(signum).name
    except ValueError:
        return f"signal {signum}"


def _exit_now(code: int, message: str | None = None, *, flush: bool = True) -> NoReturn:
    """Leave the process at once (``os._exit``: no interpreter finalization), ``message`` logged.

    The message goes straight to file descriptor 2. ``flush``: first flush stdout and stderr on a
    helper thread, waited for at most 0.3 s (a full pipe, or a lock held by a stuck thread, would block
    the flush). In a signal handler ``flush=False``: starting a thread there could deadlock.
    """

    def last_words() -> None:
        for stream in (sys.stdout, sys.stderr):
            with contextlib.suppress(Exception):  # closed or broken: nothing more to do
                stream.flush()
        if message:
            level = "WARNING" if code else "INFO "
            line = f"{time.strftime('%H:%M:%S')} {level} infra.local: {message}\n"
            os.write(2, line.encode("utf-8", "replace"))

    if flush:
        writer = threading.Thread(target=last_words, name="last-words", daemon=True)
        writer.start()
        writer.join(0.3)
    elif message:
        os.write(2, f"{time.strftime('%H:%M:%S')} WARNING infra.local: {message}\n".encode())
    os._exit(code)


def _http_route(
    spec: FunctionSpec, event_id: str, event: Mapping[str, Any], runtime: FunctionRuntime
) -> HttpRoute:
    props = event.get("Properties") or {}
    path, method = props.get("Path"), props.get("Method")
    if not isinstance(path, str) or not isinstance(method, str):
        raise ValueError(f"{spec.logical_id}.{event_id}: HttpApi events need Path and Method")
    return HttpRoute(method.upper(), path, runtime, spec.logical_id)


def _events(specs: list[FunctionSpec], kind: str) -> Iterator[tuple[FunctionSpec, str, dict[str, Any]]]:
    """Every event of type ``kind`` (``HttpApi``, ``SQS``) of the functions, in template order."""
    for spec in specs:
        for event_id, event in spec.events.items():
            if event.get("Type") == kind:
                yield spec, event_id, event


def _add_layer_paths(template: Mapping[str, Any], root: Path) -> None:
    """Put the source of local layers on ``sys.path`` (``layers/crossroute`` holds ``crossroute/``)."""
    for resource in (template.get("Resources") or {}).values():
        if resource.get("Type") != "AWS::Serverless::LayerVersion":
            continue
        base = (root / resource["Properties"]["ContentUri"]).resolve()
        packages = any((d / "__init__.py").is_file() for d in base.iterdir() if d.is_dir())
        if packages and str(base) not in sys.path:
            sys.path.insert(0, str(base))


def _set_process_aws_environment(endpoint: str) -> None:
    for key in [k for k in os.environ if k.startswith("AWS_ENDPOINT_URL_")]:
        del os.environ[key]  # a service-specific endpoint would win over AWS_ENDPOINT_URL
    for key in ("AWS_SESSION_TOKEN", "AWS_PROFILE", "AWS_DEFAULT_PROFILE"):
        os.environ.pop(key, None)
    os.environ.update(
        {
            "AWS_ENDPOINT_URL": endpoint,
            "AWS_DEFAULT_REGION": REGION,
            "AWS_REGION": REGION,
            "AWS_ACCESS_KEY_ID": DUMMY_CREDENTIALS["aws_access_key_id"],
            "AWS_SECRET_ACCESS_KEY": DUMMY_CREDENTIALS["aws_secret_access_key"],
        }
    )


def configure_logging(level: str | int = "INFO") -> None:
    """Concise local-stack logs on stderr; werkzeug's and moto's per-request lines silenced."""
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)-5s %(name)s: %(message)s", "%H:%M:%S"))
    root = logging.getLogger()
    root.addHandler(handler)
    root.setLevel(logging.WARNING)
    logging.getLogger("infra").setLevel(level)
    for noisy in ("moto", "botocore", "boto3", "urllib3"):
        logging.getLogger(noisy).setLevel(logging.WARNING)
    # werkzeug sets up its own logger the first time it logs unless it already has a level.
    logging.getLogger("werkzeug").setLevel(logging.ERROR)


def main() -> NoReturn:
    """``python -m infra.local``: serve until SIGINT / SIGTERM, stop, and leave with ``os._exit``."""
    configure_logging(os.environ.get("CROSSROUTE_LOG_LEVEL", "INFO").upper())
    code = 0
    try:
        config = StackConfig.from_env()
        LocalStack(config).serve_forever()
    except (ValueError, OSError) as exc:
        log.error("local stack failed to start: %s", exc)
        code = 1
    _exit_now(code)
