"""The template's ``AWS::Serverless::Function`` resources, run in-process.

Each function is described by a :class:`FunctionSpec` (``Globals.Function`` merged the way SAM merges
them, intrinsics resolved to the local resources) and run by a :class:`FunctionRuntime`: a small pool
of "execution environments", each a separate import of the handler module, used by one invocation at
a time (like Lambda, which never runs two invocations in one environment concurrently).
"""

from __future__ import annotations

import importlib.util
import itertools
import logging
import sys
import threading
import time
import uuid
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .aws import ACCOUNT_ID, REGION

__all__ = [
    "EnvironmentConflict",
    "FunctionRuntime",
    "FunctionSpec",
    "FunctionStopped",
    "LambdaContext",
    "function_specs",
    "merged_environment",
]

log = logging.getLogger(__name__)

# Event type -> the properties the local stack supports (template.yaml's; ScalingConfig and Auth are
# accepted and have no local effect: one poller per queue, open routes).
_EVENT_PROPERTIES = {
    "HttpApi": frozenset({"ApiId", "Path", "Method", "Auth"}),
    "SQS": frozenset({"Queue", "BatchSize", "FunctionResponseTypes", "ScalingConfig"}),
}
_module_counter = itertools.count(1)
_IMPORT_LOCK = threading.RLock()


class EnvironmentConflict(ValueError):
    """Two functions want different values for one environment variable (they share one process)."""


class FunctionStopped(RuntimeError):
    """The stack is stopping: :meth:`FunctionRuntime.close` was called, no new invocation starts."""


@dataclass(frozen=True)
class FunctionSpec:
    logical_id: str
    name: str
    code_uri: Path
    handler: str
    memory_mb: int
    timeout_s: float
    environment: dict[str, str]
    events: dict[str, dict[str, Any]]

    @property
    def arn(self) -> str:
        return f"arn:aws:lambda:{REGION}:{ACCOUNT_ID}:function:{self.name}"

    @property
    def handler_file(self) -> Path:
        module, _, _ = self.handler.rpartition(".")
        return self.code_uri / (module.replace(".", "/") + ".py")

    @property
    def handler_function(self) -> str:
        return self.handler.rpartition(".")[2]


def _merge_globals(globals_fn: Mapping[str, Any], props: Mapping[str, Any]) -> dict[str, Any]:
    """SAM's Globals merge: maps merge (resource wins), lists concatenate, scalars are replaced. An
    intrinsic (``{"Ref": ...}``, ``{"Fn::If": ...}``) is a value, not a map: the resource's replaces it."""

    def intrinsic(value: Any) -> bool:
        key = next(iter(value)) if isinstance(value, dict) and len(value) == 1 else ""
        return key == "Ref" or key.startswith("Fn::")

    def merge(g: Any, r: Any) -> Any:
        if isinstance(g, dict) and isinstance(r, dict) and not (intrinsic(g) or intrinsic(r)):
            out = dict(g)
            for k, v in r.items():
                out[k] = merge(g[k], v) if k in g else v
            return out
        if isinstance(g, list) and isinstance(r, list):
            return [*g, *r]
        return r

    return dict(merge(dict(globals_fn), dict(props)))


def function_specs(
    template: Mapping[str, Any],
    resolve: Callable[[Any], Any],
    root: Path,
    *,
    name_for: Callable[[str], str],
    is_enabled: Callable[[Mapping[str, Any]], bool] = lambda _r: True,
) -> list[FunctionSpec]:
    """Every serverless function of ``template`` (``root`` is the template's directory)."""
    globals_fn = (template.get("Globals") or {}).get("Function") or {}
    return [
        _spec(
            logical_id, _merge_globals(globals_fn, resource.get("Properties") or {}), resolve, root, name_for
        )
        for logical_id, resource in (template.get("Resources") or {}).items()
        if resource.get("Type") == "AWS::Serverless::Function" and is_enabled(resource)
    ]


def _spec(
    logical_id: str,
    props: Mapping[str, Any],
    resolve: Callable[[Any], Any],
    root: Path,
    name_for: Callable[[str], str],
) -> FunctionSpec:
    """One function, from its properties (``Globals`` merged)."""
    code_uri = props.get("CodeUri")
    if not isinstance(code_uri, str):
        raise ValueError(f"{logical_id}: only a local CodeUri directory is supported, got {code_uri!r}")
    events = dict(props.get("Events") or {})
    _check_events(logical_id, events)
    env_vars = resolve((props.get("Environment") or {}).get("Variables") or {})
    return FunctionSpec(
        logical_id=logical_id,
        name=str(resolve(props["FunctionName"])) if "FunctionName" in props else name_for(logical_id),
        code_uri=(root / code_uri).resolve(),
        handler=str(props.get("Handler", "app.lambda_handler")),
        memory_mb=int(props.get("MemorySize", 128)),
        timeout_s=float(props.get("Timeout", 3)),
        environment={k: str(v) for k, v in env_vars.items()},
        events=events,
    )


def _check_events(logical_id: str, events: Mapping[str, Any]) -> None:
    """A ``ValueError`` naming an event type or property the local stack does not emulate."""
    for event_id, event in events.items():
        supported = _EVENT_PROPERTIES.get(event.get("Type"))
        if supported is None:
            raise ValueError(
                f"{logical_id}.{event_id}: events of Type {event.get('Type')!r} are not supported by the "
                f"local stack (supported: {', '.join(_EVENT_PROPERTIES)}); add them to infra/local"
            )
        unsupported = sorted(set(event.get("Properties") or {}) - supported)
        if unsupported:
            raise ValueError(
                f"{logical_id}.{event_id}: {', '.join(unsupported)} not supported by the local stack "
                f"(supported: {', '.join(sorted(supported))}); add it to infra/local"
            )


def merged_environment(specs: Iterable[FunctionSpec]) -> dict[str, str]:
    """The union of the functions' environments; :class:`EnvironmentConflict` when two disagree."""
    merged: dict[str, str] = {}
    owner: dict[str, str] = {}
    for spec in specs:
        for key, value in spec.environment.items():
            if key in merged and merged[key] != value:
                raise EnvironmentConflict(
                    f"functions {owner[key]} and {spec.logical_id} set {key} to different values "
                    f"({merged[key]!r} vs {value!r}); the local stack runs every handler in one process, "
                    "so environment variables must agree"
                )
            merged.setdefault(key, value)
            owner.setdefault(key, spec.logical_id)
    return merged


class LambdaContext:
    """The parts of the Lambda Python runtime's context object that handlers use."""

    def __init__(self, spec: FunctionSpec) -> None:
        self.function_name = spec.name
        self.function_version = "$LATEST"
        self.invoked_function_arn = spec.arn
        self.memory_limit_in_mb = spec.memory_mb
        self.aws_request_id = str(uuid.uuid4())
        self.log_group_name = f"/aws/lambda/{spec.name}"
        self.log_stream_name = time.strftime("%Y/%m/%d/[$LATEST]") + uuid.uuid4().hex
        self.identity = None
        self.client_context = None
        self.tenant_id = None
        self._deadline = time.monotonic() + spec.timeout_s

    def get_remaining_time_in_millis(self) -> int:
        return max(0, int((self._deadline - time.monotonic()) * 1000))


Handler = Callable[[Any, Any], Any]  # one execution environment: its own import's handler function


class FunctionRuntime:
    """Invokes one function's handler, in up to ``max_environments`` concurrent environments."""

    def __init__(self, spec: FunctionSpec, *, max_environments: int = 4) -> None:
        self.spec = spec
        self.max_environments = max(1, max_environments)
        self._idle: list[Handler] = []
        self._count = 0
        self._closed = False
        self._cond = threading.Condition()

    def warm_up(self) -> None:
        """Create one environment now (imports the handler), so the first request is not a cold start."""
        env = self._acquire()
        self._release(env)

    def invoke(self, event: Any) -> Any:
        """Call the handler with ``event`` and a fresh context; exceptions propagate."""
        env = self._acquire()
        try:
            context = LambdaContext(self.spec)
            started = time.monotonic()
            try:
                return env(event, context)
            finally:
                elapsed = time.monotonic() - started
                if elapsed > self.spec.timeout_s:
                    log.warning(
                        "%s ran %.1f s, longer than its Timeout of %.0f s (Lambda would have stopped it)",
                        self.spec.logical_id,
                        elapsed,
                        self.spec.timeout_s,
                    )
        finally:
            self._release(env)

    def close(self) -> None:
        """Start no more invocations: :meth:`invoke` (also one waiting for a free environment) raises
        :class:`FunctionStopped`; the invocations already running go on to their end."""
        with self._cond:
            self._closed = True
            self._cond.notify_all()

    def _acquire(self) -> Handler:
        with self._cond:
            while True:
                if self._closed:
                    raise FunctionStopped(f"{self.spec.logical_id}: the local stack is stopping")
                if self._idle:
                    return self._idle.pop()
                if self._count < self.max_environments:
                    self._count += 1
                    break
                self._cond.wait()
        try:
            return self._new_environment()
        except BaseException:
            with self._cond:
                self._count -= 1
                self._cond.notify()
            raise

    def _release(self, env: Handler) -> None:
        with self._cond:
            self._idle.append(env)
            self._cond.notify()

    def _new_environment(self) -> Handler:
        """Import the handler module afresh: one import is one execution environment.

        The module is named as Lambda names it (``app`` for ``app.lambda_handler``), so names derived
        from ``__name__`` (Powertools idempotency keys, logger names) match the deployed function; in
        ``sys.modules`` it is registered under a unique alias, because every function has an ``app``.
        """
        path = self.spec.handler_file
        if not path.is_file():
            raise ImportError(f"{self.spec.logical_id}: handler module {path} does not exist")
        lambda_name = self.spec.handler.rpartition(".")[0]
        alias = f"_crossroute_local_{self.spec.logical_id}_{next(_module_counter)}"
        import_spec = importlib.util.spec_from_file_location(lambda_name, path)
        if import_spec is None or import_spec.loader is None:
            raise ImportError(f"cannot load {path}")
        module = importlib.util.module_from_spec(import_spec)
        with _IMPORT_LOCK:
            previous = sys.modules.get(lambda_name)
            sys.modules[lambda_name] = module
            try:
                import_spec.loader.exec_module(module)
            finally:
                if previous is None:
                    sys.modules.pop(lambda_name, None)
                else:
                    sys.modules[lambda_name] = previous
        sys.modules[alias] = module
        handler: Handler | None = getattr(module, self.spec.handler_function, None)
        if not callable(handler):
            raise ImportError(f"{self.spec.logical_id}: {path} has no function {self.spec.handler_function}")
        log.debug("%s: new execution environment (%s)", self.spec.logical_id, alias)
        return handler
