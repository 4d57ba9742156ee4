"""Cold import time of each function's handler module, against a bare ``import boto3``.

Each measurement is a fresh interpreter importing one module (timed inside the process, so interpreter
start-up is excluded); the targets are interleaved round by round so drift hits them alike, after one
discarded warm-up round that leaves .pyc behind, as a deployed (precompiled) artifact has them.
"""

from __future__ import annotations

import os
import shutil
import statistics
import subprocess
import sys
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from infra.bench import Context, Row, Table
from infra.build.artifact import RUNTIME_SDK_MODULES, Function, link_runtime_sdk

# Goals are ratios to the floor (boto3 + an SQS client): every function builds at least one client.
RATIO_GOAL = 1.1  # webhook handlers: within 1.1x the floor (the issue-10 budget for metrics and logging)
# The consumers and the read API also load PynamoDB and Powertools' batch/resolver.
FUNCTION_GOALS = {"IngestFunction": 1.5, "ContactsAndMessagesApiFunction": 1.5, "DispatchFunction": 1.5}
PROBES = Path(__file__).parent / "probes"
_FLOOR_NOTE = (
    "boto3 + SQS client = the floor for a function that queues: the webhooks build their client at init"
)
LAMBDA_PYTHON_VERSION = "3.13"

_PROBE = """\
import importlib, sys, time
module, *path = sys.argv[1:]
sys.path[:0] = path
start = time.perf_counter()
importlib.import_module(module)
print(time.perf_counter() - start)
"""


@dataclass(frozen=True)
class Target:
    label: str
    module: str
    path: Sequence[Path] = ()
    env: Mapping[str, str] = field(default_factory=dict)
    goal: float | None = None  # max ratio to the baseline


def measure(python: Sequence[str], targets: Sequence[Target], runs: int) -> dict[str, list[float]]:
    """Seconds per import, ``runs`` fresh processes per target, interleaved; a warm-up round first."""
    times: dict[str, list[float]] = {t.label: [] for t in targets}
    for round_ in range(runs + 1):
        for target in targets:
            seconds = _import_once(python, target)
            if round_:
                times[target.label].append(seconds)
    return times


def _import_once(python: Sequence[str], target: Target) -> float:
    env = {
        "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
        "HOME": os.environ.get("HOME", "/tmp"),  # noqa: S108 - only a fallback for tools reading HOME
        "AWS_DEFAULT_REGION": "us-east-1",
        **target.env,
    }
    argv = [*python, "-c", _PROBE, target.module, *map(str, target.path)]
    result = subprocess.run(argv, env=env, capture_output=True, text=True, timeout=120, check=False)
    if result.returncode != 0:
        raise RuntimeError(f"importing {target.module} for {target.label} failed:\n{result.stderr}")
    return float(result.stdout.strip().splitlines()[-1])


def table(
    title: str, baseline: Target, floor: Target, targets: Sequence[Target], times: dict[str, list[float]]
) -> Table:
    """Medians against bare boto3 and against the floor; a target's goal is its ratio to the floor."""
    base = statistics.median(times[baseline.label])
    least = statistics.median(times[floor.label])
    out = Table(title, ["import", "median ms", "min ms", "max ms", "x boto3", "x floor"])
    for target in (baseline, floor, *targets):
        samples = times[target.label]
        median = statistics.median(samples)
        ratio = median / least
        cells = [
            target.label,
            *(f"{t * 1e3:.0f}" for t in (median, min(samples), max(samples))),
            f"{median / base:.2f}",
            f"{ratio:.2f}",
        ]
        met = None if target.goal is None else ratio <= target.goal
        out.rows.append(Row(cells, f"<= {target.goal:.1f}x" if target.goal else "", met))
    return out


def _handler_target(function: Function, path: Sequence[Path], view: str) -> Target:
    return Target(
        f"{function.name} ({function.handler_module}, {view})",
        function.handler_module,
        path,
        function.environment,
        FUNCTION_GOALS.get(function.name, RATIO_GOAL if function.http else None),
    )


def venv_imports(context: Context) -> Table:
    """Dev view: the .venv interpreter, sources on sys.path (function CodeUri + source layers), venv deps."""
    source = context.source
    targets = [
        # Layers built from a requirements.txt are the venv's packages here; the others are source folders.
        _handler_target(
            f,
            [f.path, *(layer.path for layer in f.layers if not (layer.path / "requirements.txt").exists())],
            "sources",
        )
        for f in source.functions.values()
    ]
    baseline = Target("boto3 (bare)", "boto3")
    floor = Target("boto3 + SQS client", "sqs_client_floor", [PROBES])
    times = measure([sys.executable], [baseline, floor, *targets], context.runs)
    version = ".".join(map(str, sys.version_info[:3]))
    out = table(
        f"Cold import, .venv Python {version}, sources ({context.runs} fresh processes each)",
        baseline,
        floor,
        targets,
        times,
    )
    out.notes.append("handler import = the function's own cold-start work before its first event")
    out.notes.append(_FLOOR_NOTE)
    return out


def lambda_imports(context: Context) -> Table:
    """Lambda view: Python 3.13 (-I -S), only the built artifact (with its .pyc) and a copy of the SDK."""
    title = f"Cold import, Python {LAMBDA_PYTHON_VERSION}, the .aws-sam/build artifact"
    built = context.built
    python = _find_python(context.repo)
    if built is None or python is None:
        why = "no build output: run `make build`" if built is None else f"no python{LAMBDA_PYTHON_VERSION}"
        return Table(title, ["import"], notes=[f"skipped: {why}"])
    runtime = _runtime_sdk(context.repo / ".aws-sam" / "bench" / "runtime", python)
    # aarch64 extensions cannot load on this machine: those functions are not measured here.
    native = [f.name for f in built.functions.values() if _has_native_code(f)]
    targets = [
        _handler_target(f, [*f.sys_path, runtime], "artifact")
        for f in built.functions.values()
        if f.name not in native
    ]
    baseline = Target("boto3 (bare)", "boto3", [runtime])
    floor = Target("boto3 + SQS client", "sqs_client_floor", [PROBES, runtime])
    times = measure([python, "-I", "-S"], [baseline, floor, *targets], context.runs)
    out = table(f"{title} ({context.runs} fresh processes each)", baseline, floor, targets, times)
    if native:
        out.notes.append(f"not measurable on this machine (aarch64 native code): {', '.join(native)}")
    out.notes.append(
        "boto3 and its dependencies: a precompiled copy of the .venv's, standing in for the runtime's"
    )
    out.notes.append(_FLOOR_NOTE)
    return out


def _find_python(repo: Path) -> str | None:
    result = subprocess.run(
        [str(repo / "infra" / "build" / "find-python"), LAMBDA_PYTHON_VERSION],
        capture_output=True,
        text=True,
        check=False,
    )
    return result.stdout.strip() if result.returncode == 0 else None


def _runtime_sdk(dest: Path, python: str) -> Path:
    """A precompiled copy of the .venv's boto3 and its dependencies, as the Lambda runtime ships them."""
    import botocore

    stamp = dest / f".botocore-{botocore.__version__}"
    if not stamp.exists():
        shutil.rmtree(dest, ignore_errors=True)
        links = link_runtime_sdk(dest.with_name("runtime-links"))
        dest.mkdir(parents=True)
        for module in RUNTIME_SDK_MODULES:
            (source,) = [p for p in links.iterdir() if p.name.removesuffix(".py") == module]
            real = source.resolve()
            if real.is_dir():
                shutil.copytree(real, dest / real.name, ignore=shutil.ignore_patterns("__pycache__"))
            else:
                shutil.copy2(real, dest / real.name)
        shutil.rmtree(links)
        subprocess.run(
            [python, "-m", "compileall", "-q", "-j", "0", "--invalidation-mode", "unchecked-hash", str(dest)],
            check=True,
        )
        stamp.touch()
    return dest


def _has_native_code(function: Function) -> bool:
    return any(
        path.suffix == ".so" or ".so." in path.name
        for root in function.roots
        for path in root.rglob("*")
        if path.is_file()
    )
