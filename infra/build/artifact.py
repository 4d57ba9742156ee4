"""A SAM template's functions and layers as folders: the sources, or the `sam build` output.

``Stack.load("template.yaml")`` resolves CodeUri / ContentUri against the repository (sources);
``Stack.load(".aws-sam/build/template.yaml")`` against the build output, i.e. what Lambda deploys: each
function's folder plus the folders of its layers. Used by tests/build and infra/bench. Dev tooling only.
"""

from __future__ import annotations

import importlib.util
import os
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from infra.template import load_template

REPO = Path(__file__).resolve().parents[2]
SOURCE_TEMPLATE = REPO / "template.yaml"
BUILD_DIR = REPO / ".aws-sam" / "build"
BUILT_TEMPLATE = BUILD_DIR / "template.yaml"

# Provided by the Lambda Python runtime; layers must not ship them.
RUNTIME_SDK = ("boto3", "botocore", "s3transfer")
# The SDK with its own dependencies, as the runtime has it (for running artifacts outside Lambda).
RUNTIME_SDK_MODULES = (*RUNTIME_SDK, "jmespath", "dateutil", "urllib3", "six")

ELF_MAGIC = b"\x7fELF"
EM_AARCH64 = 183
EM_X86_64 = 62


@dataclass(frozen=True)
class Layer:
    name: str
    path: Path

    @property
    def sys_path(self) -> Path:
        """The folder Lambda puts on sys.path (``python/`` in a built layer; the source folder otherwise)."""
        python = self.path / "python"
        return python if python.is_dir() else self.path


@dataclass(frozen=True)
class Function:
    name: str
    path: Path
    handler: str
    layers: tuple[Layer, ...]
    environment: Mapping[str, str] = field(default_factory=dict)
    http: bool = False  # has an Api / HttpApi event: a webhook answering a caller who waits

    @property
    def handler_module(self) -> str:
        return self.handler.rpartition(".")[0]

    @property
    def sys_path(self) -> list[Path]:
        return [self.path, *(layer.sys_path for layer in self.layers)]

    @property
    def roots(self) -> list[Path]:
        """Everything deployed for this function: its folder and its layers' folders."""
        return [self.path, *(layer.path for layer in self.layers)]

    def unzipped_size(self) -> int:
        return sum(tree_size(root) for root in self.roots)


@dataclass(frozen=True)
class Stack:
    template: Path
    functions: dict[str, Function]
    layers: dict[str, Layer]

    @classmethod
    def load(cls, template: Path = SOURCE_TEMPLATE) -> Stack:
        doc = load_template(template)
        base = template.parent
        resources: dict[str, Any] = doc.get("Resources", {})
        function_globals: dict[str, Any] = (doc.get("Globals") or {}).get("Function") or {}
        layers = {
            name: Layer(name, (base / str(res["Properties"]["ContentUri"])).resolve())
            for name, res in resources.items()
            if res.get("Type") == "AWS::Serverless::LayerVersion"
        }
        functions = {}
        for name, res in resources.items():
            if res.get("Type") != "AWS::Serverless::Function":
                continue
            props = res.get("Properties", {})
            refs = [ref["Ref"] for ref in props.get("Layers", []) if isinstance(ref, dict) and "Ref" in ref]
            events = (props.get("Events") or {}).values()
            functions[name] = Function(
                name=name,
                path=(base / str(props["CodeUri"])).resolve(),
                handler=str(props.get("Handler") or function_globals["Handler"]),
                layers=tuple(layers[ref] for ref in refs if ref in layers),
                environment=_environment(function_globals, props, doc.get("Parameters") or {}),
                http=any(event.get("Type") in ("Api", "HttpApi") for event in events),
            )
        return cls(template, functions, layers)

    @property
    def roots(self) -> list[Path]:
        """Every deployed folder: functions and layers."""
        return [f.path for f in self.functions.values()] + [layer.path for layer in self.layers.values()]


def _environment(
    function_globals: Mapping[str, Any], props: Mapping[str, Any], parameters: Mapping[str, Any]
) -> dict[str, str]:
    """The function's environment variables: a parameter's default for ``!Ref Param``, a placeholder
    for other intrinsics (``!Ref Queue`` -> ``local-Queue``)."""
    variables = {
        **((function_globals.get("Environment") or {}).get("Variables") or {}),
        **((props.get("Environment") or {}).get("Variables") or {}),
    }
    return {key: _resolve(value, parameters) for key, value in variables.items()}


def _resolve(value: Any, parameters: Mapping[str, Any]) -> str:
    if not isinstance(value, dict):
        return str(value)
    ref = value.get("Ref")
    if isinstance(ref, str):
        default = (parameters.get(ref) or {}).get("Default")
        return str(default) if default is not None else f"local-{ref}"
    return "local-value"


def files(root: Path) -> Iterator[Path]:
    for directory, _, names in os.walk(root):
        for name in names:
            yield Path(directory, name)


def tree_size(root: Path) -> int:
    """Bytes of every file under ``root``, as unzipped on Lambda (symlinks count as themselves)."""
    return sum(path.lstat().st_size for path in files(root))


def elf_machine(path: Path) -> int | None:
    """``e_machine`` of an ELF file (183 = aarch64, 62 = x86_64), or None if not ELF."""
    with path.open("rb") as f:
        header = f.read(20)
    if len(header) < 20 or not header.startswith(ELF_MAGIC):
        return None
    # EI_DATA: 1 = little-endian, 2 = big-endian
    return int.from_bytes(header[18:20], "little" if header[5] == 1 else "big")


def link_runtime_sdk(dest: Path) -> Path:
    """A folder standing in for the runtime's AWS SDK: links to this interpreter's boto3 and friends."""
    dest.mkdir(parents=True, exist_ok=True)
    for module in RUNTIME_SDK_MODULES:
        spec = importlib.util.find_spec(module)
        if spec is None or spec.origin is None:
            raise ModuleNotFoundError(f"{module} is not installed in this interpreter")
        origin = Path(spec.origin)
        source = origin.parent if origin.name == "__init__.py" else origin
        link = dest / source.name
        if not link.exists():
            link.symlink_to(source, target_is_directory=source.is_dir())
    return dest
