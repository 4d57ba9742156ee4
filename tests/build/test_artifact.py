"""The `sam build` output (.aws-sam/build) is what Lambda (python3.13, arm64) will run.

`make test` runs `make build` first; run alone, these tests skip when there is no build.
"""

from __future__ import annotations

import email.parser
import os
import subprocess
import tomllib
from pathlib import Path

import pytest
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name
from packaging.version import Version

from infra.build.artifact import (
    BUILD_DIR,
    BUILT_TEMPLATE,
    EM_AARCH64,
    REPO,
    RUNTIME_SDK,
    Stack,
    elf_machine,
    files,
    link_runtime_sdk,
    tree_size,
)

pytestmark = [
    pytest.mark.build,
    pytest.mark.skipif(
        not BUILT_TEMPLATE.is_file(), reason=f"no sam build output in {BUILD_DIR}: run `make build`"
    ),
]

MB = 1_000_000
WEBHOOK_LIMIT = 30 * MB  # the webhook functions answer a provider who waits: keep them small
LAMBDA_LIMIT = 250 * 2**20  # Lambda's hard limit, unzipped, function plus layers
PYC_TAG = "cpython-313"
PYC_MAGIC_313 = (3571).to_bytes(2, "little") + b"\r\n"
PYC_UNCHECKED_HASH = 0b01  # PEP 552 flags: hash-based, check_source off
# What the Lambda target evaluates environment markers as.
TARGET_ENV = {
    "python_version": "3.13",
    "python_full_version": "3.13.0",
    "implementation_name": "cpython",
    "platform_python_implementation": "CPython",
    "sys_platform": "linux",
    "platform_system": "Linux",
    "platform_machine": "aarch64",
    "os_name": "posix",
    "extra": "",
}
# Packages cut down on purpose by infra/build/build-deps-layer --keep-only: their dependencies are absent.
PRUNED = {"twilio"}
# The layers ship the lite build of phonenumbers (no geocoder/carrier data); pyproject names the full one.
ALIASES = {"phonenumberslite": "phonenumbers"}
DEV_ONLY = {
    "infra",
    "tests",
    "test",
    "conftest.py",
    "moto",
    "pytest",
    "_pytest",
    "hypothesis",
    "mypy",
    "ruff",
}


@pytest.fixture(scope="module")
def stack() -> Stack:
    return Stack.load(BUILT_TEMPLATE)


def dists(site: Path) -> dict[str, email.message.Message]:
    """Installed distributions in a layer's python/ folder: canonical name -> METADATA."""
    parser = email.parser.HeaderParser()
    return {
        canonicalize_name(meta["Name"]): meta
        for meta in (parser.parsestr((d / "METADATA").read_text("utf-8")) for d in site.glob("*.dist-info"))
    }


def deps_layers(stack: Stack) -> list[str]:
    return [name for name, layer in stack.layers.items() if list(layer.sys_path.glob("*.dist-info"))]


def test_the_build_has_every_function_and_layer(stack: Stack) -> None:
    source = Stack.load()
    assert set(stack.functions) == set(source.functions)
    assert set(stack.layers) == set(source.layers)
    for name in ("CrossrouteLayer", "WebhookDepsLayer", "CoreDepsLayer"):
        assert (stack.layers[name].path / "python").is_dir(), f"{name} has no python/ folder"
    assert (stack.layers["CrossrouteLayer"].path / "python" / "crossroute" / "__init__.py").is_file()
    for function in stack.functions.values():
        module = function.handler_module.replace(".", "/")
        assert (function.path / f"{module}.py").is_file(), f"{function.name}: no handler {function.handler}"


def test_native_code_is_aarch64(stack: Stack) -> None:
    native = []
    for root in stack.roots:
        for path in files(root):
            machine = elf_machine(path)
            if machine is None:
                assert ".so" not in path.suffixes, f"{path} is not an ELF shared object"
                continue
            native.append(path)
            assert machine == EM_AARCH64, f"{path.relative_to(BUILD_DIR)}: e_machine {machine}, not aarch64"
    assert native, "no native code found at all: the ELF scan is not looking at the right folders"


def test_native_wheels_are_built_for_lambda(stack: Stack) -> None:
    """Every wheel with native code in a layer (the send layer's aiohttp family) is tagged for the
    runtime: CPython 3.13 (or the stable ABI) on aarch64."""
    native = []
    for layer in stack.layers.values():
        for dist_info in sorted(layer.sys_path.glob("*.dist-info")):
            wheel = (dist_info / "WHEEL").read_text().splitlines()
            if "Root-Is-Purelib: true" in wheel:
                continue
            native.append(dist_info.name)
            tags = [line.removeprefix("Tag:").strip() for line in wheel if line.startswith("Tag:")]
            assert tags, dist_info
            for tag in tags:
                python, abi, platform = tag.split("-")
                assert python == "cp313" or abi == "abi3", f"{dist_info.name}: {tag}"
                assert platform.endswith("aarch64"), f"{dist_info.name}: {tag}"
    assert any(name.startswith("multidict-") for name in native), native


def test_no_layer_ships_pydantic(stack: Stack) -> None:
    """No module imports pydantic (send requests and the registry are plain dataclasses, checked on the
    cold-start path): shipping it cost ~9 MB per layer. docs/architecture.md says why."""
    for name, layer in stack.layers.items():
        assert not list(layer.sys_path.glob("pydantic*")), name


def test_every_module_is_precompiled_for_python_313(stack: Stack) -> None:
    missing, stale, modules = [], [], 0
    for root in stack.roots:
        for path in files(root):
            if path.suffix == ".py":
                modules += 1
                pyc = path.parent / "__pycache__" / f"{path.stem}.{PYC_TAG}.pyc"
                if not pyc.is_file():
                    missing.append(str(path.relative_to(BUILD_DIR)))
            elif path.suffix == ".pyc":
                with path.open("rb") as f:
                    header = f.read(8)
                flags = int.from_bytes(header[4:8], "little")
                if not path.name.endswith(f".{PYC_TAG}.pyc") or header[:4] != PYC_MAGIC_313:
                    stale.append(f"{path.relative_to(BUILD_DIR)}: not Python 3.13")
                elif flags != PYC_UNCHECKED_HASH:
                    stale.append(f"{path.relative_to(BUILD_DIR)}: flags {flags:#b}, not unchecked-hash")
    assert modules > 100
    assert not missing, f"{len(missing)} of {modules} modules have no .pyc, e.g. {missing[:5]}"
    assert not stale, f"{len(stale)} unusable .pyc, e.g. {stale[:5]}"


def test_no_aws_sdk_in_the_artifact(stack: Stack) -> None:
    shipped = {canonicalize_name(path.name.split("-")[0]) for root in stack.roots for path in _top(root)}
    assert not shipped & set(RUNTIME_SDK), "the Lambda runtime provides the AWS SDK"


def test_no_dev_only_code_in_the_artifact(stack: Stack) -> None:
    for root in stack.roots:
        for path in _top(root):
            name = path.name.split("-")[0] if path.suffix == ".dist-info" else path.name
            assert name not in DEV_ONLY, f"dev-only {path.relative_to(BUILD_DIR)}"
            assert path.suffix != ".egg-info", f"{path.relative_to(BUILD_DIR)}"
        for directory, subdirs, _ in os.walk(root):
            assert "tests" not in subdirs, f"{Path(directory, 'tests').relative_to(BUILD_DIR)}"
    for name in deps_layers(stack):
        installed = dists(stack.layers[name].sys_path)
        assert not {"pytest", "moto", "hypothesis", "mypy", "ruff", "crossroute"} & set(installed), name


def test_webhook_functions_stay_small(stack: Stack) -> None:
    webhooks = [f for f in stack.functions.values() if f.http]
    assert {f.name for f in webhooks} >= {"WhatsAppWebhookFunction", "TwilioWebhookFunction"}
    for function in webhooks:
        size = function.unzipped_size()
        assert size <= WEBHOOK_LIMIT, f"{function.name}: {size / MB:.1f} MB unzipped with its layers"
        assert size > 1 * MB, f"{function.name}: {size} bytes: are its layers in the build?"


def test_every_function_fits_lambdas_limit(stack: Stack) -> None:
    for function in stack.functions.values():
        assert function.unzipped_size() <= LAMBDA_LIMIT, function.name
    for layer in stack.layers.values():
        assert tree_size(layer.path) <= LAMBDA_LIMIT, layer.name


def test_twilio_is_only_its_request_validator(stack: Stack) -> None:
    site = stack.layers["WebhookDepsLayer"].sys_path
    twilio = site / "twilio"
    assert (twilio / "request_validator.py").is_file()
    assert not (twilio / "rest").exists()
    sources = sorted(p.name for p in twilio.glob("*.py"))
    assert sources == ["__init__.py", "request_validator.py"]
    (dist_info,) = site.glob("twilio-*.dist-info")
    assert list(dist_info.rglob("LICENSE*")), "keep twilio's licence"
    assert tree_size(twilio) < 200_000


def test_layer_locks_are_complete(stack: Stack) -> None:
    """Each deps layer is installed with --no-deps: every requirement must be in it or in the runtime."""
    names = deps_layers(stack)
    assert set(names) >= {"WebhookDepsLayer", "CoreDepsLayer"}
    for name in names:
        installed = dists(stack.layers[name].sys_path)
        for dist, meta in installed.items():
            if dist in PRUNED:
                continue
            for line in meta.get_all("Requires-Dist") or []:
                requirement = Requirement(line)
                if requirement.marker and not requirement.marker.evaluate(TARGET_ENV):
                    continue
                wanted = canonicalize_name(requirement.name)
                if wanted in RUNTIME_SDK:
                    continue
                assert wanted in installed, f"{name}: {dist} needs {requirement}, which is not in the layer"
                version = Version(installed[wanted]["Version"])
                assert requirement.specifier.contains(version, prereleases=True), (
                    f"{name}: {dist} needs {requirement}, the layer has {version}"
                )


def test_installed_packages_are_intact(stack: Stack) -> None:
    """Every file a wheel installed is still there (the build drops only caches, tests/ and scripts)."""
    for name in deps_layers(stack):
        site = stack.layers[name].sys_path
        for record in site.glob("*.dist-info/RECORD"):
            if canonicalize_name(record.parent.name.split("-")[0]) in PRUNED:
                continue
            paths = [line.split(",")[0] for line in record.read_text("utf-8").splitlines() if line]
            kept = [
                p
                for p in paths
                if not p.startswith(("bin/", "../")) and not {"__pycache__", "tests"} & set(p.split("/"))
            ]
            lost = [p for p in kept if not (site / p).is_file()]
            assert len(kept) > 2, record
            assert not lost, f"{name}: {record.parent.name}: lost {lost[:5]}"


def test_layer_versions_are_within_pyproject_ranges(stack: Stack) -> None:
    pyproject = tomllib.loads((REPO / "pyproject.toml").read_text("utf-8"))
    ranges = {
        canonicalize_name(r.name): r.specifier for r in map(Requirement, pyproject["project"]["dependencies"])
    }
    checked = 0
    for name in deps_layers(stack):
        for dist, meta in dists(stack.layers[name].sys_path).items():
            specifier = ranges.get(canonicalize_name(ALIASES.get(dist, dist)))
            if specifier is not None:
                checked += 1
                assert specifier.contains(meta["Version"], prereleases=True), (
                    f"{name}: {dist} {meta['Version']} is outside pyproject's {specifier}"
                )
    assert checked >= 6


def test_webhook_handlers_import_from_the_artifact_on_python_313(stack: Stack, tmp_path: Path) -> None:
    """Only the artifact and the runtime's SDK on sys.path, the Lambda interpreter's version: catches a
    module pruned too far or missing from a layer. (Native aarch64 code cannot load here, hence webhooks.)"""
    python = _lambda_python()
    sdk = link_runtime_sdk(tmp_path / "runtime")
    for function in (f for f in stack.functions.values() if f.http):
        path = [str(p) for p in function.sys_path] + [str(sdk)]
        module, _, attribute = function.handler.rpartition(".")
        code = (
            "import sys; sys.path[:0] = sys.argv[1:]; import importlib; "
            f"handler = getattr(importlib.import_module({module!r}), {attribute!r}); "
            "assert callable(handler)"
        )
        env = {"PATH": os.environ.get("PATH", ""), "AWS_DEFAULT_REGION": "us-east-1", **function.environment}
        result = subprocess.run(  # -I: no user site or PYTHON* variables; -S: no site-packages; -B: read-only
            [python, "-I", "-S", "-B", "-c", code, *path], env=env, capture_output=True, text=True, timeout=60
        )
        assert result.returncode == 0, f"{function.name}:\n{result.stderr}"


def _top(root: Path) -> list[Path]:
    """Top-level entries of a deployed folder, looking inside a layer's python/."""
    python = root / "python"
    return list((python if python.is_dir() else root).iterdir())


def _lambda_python() -> str:
    result = subprocess.run(
        [str(REPO / "infra" / "build" / "find-python"), "3.13"], capture_output=True, text=True, check=False
    )
    if result.returncode != 0:
        pytest.skip(result.stderr.strip())
    return result.stdout.strip()
