"""The tenant registry's JSON Schema, and a validator for the part of JSON Schema it uses.

The schema is ``registry.schema.json`` beside this module, a byte-identical copy of
``docs/registry.schema.json`` (the Lambda layer cannot read ``docs/``; ``tests/unit/test_registry_schema.py``
fails when the two differ). It is what the registry is validated with: no check is written twice.

No JSON Schema library is in the webhook layer, so this validates the keywords in ``KEYWORDS`` with the
standard library (JSON Schema 2020-12 semantics). A schema using any other keyword, a ``type`` other
than those in ``TYPES`` or a ``$ref`` outside the document is refused when loaded (``SchemaError``), so
the schema can never say more than is checked. The same test runs ``jsonschema`` over the same
documents and requires the same verdicts.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from functools import cache
from pathlib import Path
from typing import Any

__all__ = ["KEYWORDS", "SCHEMA_FILE", "TYPES", "Location", "SchemaError", "errors", "schema", "supported"]

SCHEMA_FILE = Path(__file__).with_name("registry.schema.json")
# Where in the document: object keys and list indexes from its root.
Location = tuple[str | int, ...]
Schema = dict[str, Any]

KEYWORDS = frozenset(
    {
        "$ref",
        "type",
        "enum",
        "required",
        "properties",
        "additionalProperties",
        "items",
        "minItems",
        "uniqueItems",
        "minLength",
        "maxLength",
        "pattern",
    }
)
# Read by people and editors; they change no verdict.
ANNOTATIONS = frozenset(
    {"$schema", "$id", "$defs", "$comment", "title", "description", "default", "examples"}
)
TYPES: dict[str, tuple[type, str]] = {
    "object": (dict, "an object"),
    "array": (list, "a list"),
    "string": (str, "a string"),
    "boolean": (bool, "true or false"),
}


class SchemaError(ValueError):
    """The schema uses something this validator does not check."""


@cache
def schema() -> Schema:
    """The registry schema shipped with the package, checked to use only what is validated."""
    loaded: Schema = json.loads(SCHEMA_FILE.read_text(encoding="utf-8"))
    supported(loaded)
    return loaded


def errors(instance: Any, root: Schema | None = None) -> Iterator[tuple[Location, str]]:
    """Where ``instance`` breaks the schema (by default the registry's), and how, in document order.

    A missing required key is reported at the key's own location. Messages never quote the instance:
    the registry holds secrets and phone numbers.
    """
    root = schema() if root is None else root
    yield from _errors(instance, root, root, ())


def supported(root: Schema) -> None:
    """Raise ``SchemaError`` unless every subschema of ``root`` uses only what ``errors`` checks."""
    pending: list[tuple[Any, str]] = [(root, "#")]
    while pending:
        node, where = pending.pop()
        if not isinstance(node, dict):
            raise SchemaError(f"{where}: a schema must be an object")
        unknown = set(node) - KEYWORDS - ANNOTATIONS
        if unknown:
            raise SchemaError(f"{where}: keywords not validated: {', '.join(sorted(unknown))}")
        if "type" in node and (not isinstance(node["type"], str) or node["type"] not in TYPES):
            raise SchemaError(f"{where}: type must be one of {', '.join(TYPES)}")
        if "$ref" in node:
            _resolve(root, node["$ref"])
        if "pattern" in node:
            re.compile(node["pattern"])
        for key in ("additionalProperties", "items"):
            if key in node:
                pending.append((node[key], f"{where}/{key}"))
        for key in ("properties", "$defs"):
            pending.extend((sub, f"{where}/{key}/{name}") for name, sub in node.get(key, {}).items())


def _resolve(root: Schema, ref: str) -> Schema:
    """A ``$ref`` within the document: ``#/$defs/name`` (any JSON pointer from the root)."""
    if not ref.startswith("#/"):
        raise SchemaError(f"$ref {ref!r}: only references within the schema are supported")
    node: Any = root
    for part in ref[2:].split("/"):
        key = part.replace("~1", "/").replace("~0", "~")
        if not isinstance(node, dict) or key not in node:
            raise SchemaError(f"$ref {ref!r} does not resolve")
        node = node[key]
    if not isinstance(node, dict):
        raise SchemaError(f"$ref {ref!r} is not a schema")
    return node


def _errors(value: Any, node: Schema, root: Schema, at: Location) -> Iterator[tuple[Location, str]]:
    if "$ref" in node:
        yield from _errors(value, _resolve(root, node["$ref"]), root, at)
    if "type" in node:
        python_type, described = TYPES[node["type"]]
        # JSON's true/false are Python ints too: a boolean is never a number here, nor a number a boolean.
        if not isinstance(value, python_type):
            yield at, f"expected {described}"
            return
    if "enum" in node and not any(_same(value, option) for option in node["enum"]):
        yield at, "expected one of " + ", ".join(json.dumps(option) for option in node["enum"])
    if isinstance(value, dict):
        yield from _object(value, node, root, at)
    elif isinstance(value, list):
        yield from _array(value, node, root, at)
    elif isinstance(value, str):
        yield from _string(value, node, at)


def _object(
    value: dict[str, Any], node: Schema, root: Schema, at: Location
) -> Iterator[tuple[Location, str]]:
    for name in node.get("required", ()):
        if name not in value:
            yield (*at, name), "is required"
    properties = node.get("properties", {})
    for name, item in value.items():
        if name in properties:
            yield from _errors(item, properties[name], root, (*at, name))
        elif "additionalProperties" in node:
            yield from _errors(item, node["additionalProperties"], root, (*at, name))


def _array(value: list[Any], node: Schema, root: Schema, at: Location) -> Iterator[tuple[Location, str]]:
    if len(value) < node.get("minItems", 0):
        yield at, f"expected at least {node['minItems']} item(s)"
    if node.get("uniqueItems") and any(_same(a, b) for i, a in enumerate(value) for b in value[i + 1 :]):
        yield at, "items must be distinct"
    if "items" in node:
        for index, item in enumerate(value):
            yield from _errors(item, node["items"], root, (*at, index))


def _string(value: str, node: Schema, at: Location) -> Iterator[tuple[Location, str]]:
    """At most one problem: the pattern says most about what is wanted, so it is checked first."""
    if "pattern" in node and not re.search(node["pattern"], value):
        yield at, f"does not match {node['pattern']}"
    elif len(value) < node.get("minLength", 0):
        yield at, "must not be empty" if node["minLength"] == 1 else f"shorter than {node['minLength']}"
    elif len(value) > node.get("maxLength", len(value)):
        yield at, f"longer than {node['maxLength']}"


def _same(a: Any, b: Any) -> bool:
    """JSON equality: ``true`` is not ``1``, ``1`` is ``1.0``, containers compare item by item."""
    if isinstance(a, bool) or isinstance(b, bool):
        return a is b
    if isinstance(a, int | float) and isinstance(b, int | float):
        return a == b
    if isinstance(a, list) and isinstance(b, list):
        return len(a) == len(b) and all(map(_same, a, b))
    if isinstance(a, dict) and isinstance(b, dict):
        return a.keys() == b.keys() and all(_same(a[k], b[k]) for k in a)
    return type(a) is type(b) and bool(a == b)
