"""Keep ``template.yaml`` and ``docs/events.md`` in step with the event schemas (``docs/events/*.json``).

``python -m infra.events_docs`` rewrites, from the schemas:

- the ``AWS::EventSchemas::Schema`` resources of ``template.yaml`` between its ``# BEGIN event schemas``
  and ``# END event schemas`` lines: one per event, named ``crossroute@<detail-type>`` (EventBridge's
  ``<source>@<detail-type>``), whose ``Content`` is the schema file itself;
- each event's field table in ``docs/events.md``, between ``<!-- BEGIN fields: <detail-type> -->`` and
  ``<!-- END fields: <detail-type> -->``: every field (nested ones as ``a.b`` / ``a[].b``), its type,
  whether it is required, and its schema ``description``. The rest of the page is written by hand.

``--check`` changes nothing and exits 1 naming what is out of date (``tests/unit/test_events_docs.py``).
Dev tooling only: never part of a Lambda artifact.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from crossroute.bus import SOURCE  # the events' source, the registry names' prefix

ROOT = Path(__file__).resolve().parents[1]
SCHEMAS = ROOT / "docs" / "events"
TEMPLATE = ROOT / "template.yaml"
DOCS = ROOT / "docs" / "events.md"
COMMAND = "python -m infra.events_docs"
TEMPLATE_BEGIN = f"  # BEGIN event schemas: generated from docs/events/*.schema.json by `{COMMAND}`\n"
TEMPLATE_END = "  # END event schemas\n"
_DESCRIPTION_CHARS = 256  # AWS::EventSchemas::Schema Description's limit

Schema = dict[str, Any]


class OutOfDate(RuntimeError):
    """A generated part is missing its markers."""


def schemas() -> dict[str, Schema]:
    """Each event's schema by detail-type, in file name order."""
    return {
        path.name.removesuffix(".schema.json"): json.loads(path.read_text(encoding="utf-8"))
        for path in sorted(SCHEMAS.glob("*.schema.json"))
    }


def schema_text(schema: Schema) -> str:
    """A schema as its file holds it (without the final newline)."""
    return json.dumps(schema, indent=2, ensure_ascii=False)


def between(text: str, begin: str, end: str, body: str, *, where: str) -> str:
    """``text`` with what lies between the ``begin`` and ``end`` lines replaced by ``body``."""
    start, stop = text.find(begin), text.find(end)
    if start < 0 or stop < start:
        markers = f"{begin.strip()!r} ... {end.strip()!r}"
        raise OutOfDate(f"{where}: no {markers} markers; add them, then run {COMMAND}")
    return text[: start + len(begin)] + body + text[stop:]


# ---------------------------------------------------------------- template.yaml


def schema_resource(name: str, schema: Schema) -> str:
    """The ``AWS::EventSchemas::Schema`` resource of one event, as template.yaml lines."""
    summary = schema["description"].split(": ", 1)[-1].split(". ")[0].rstrip(".")
    description = f"crossroute {name} event detail: {summary}"[:_DESCRIPTION_CHARS]
    content = "".join(f"        {line}\n" for line in schema_text(schema).splitlines())
    return (
        f"  {name}EventSchema:\n"
        "    Type: AWS::EventSchemas::Schema\n"
        "    Properties:\n"
        "      RegistryName: !GetAtt EventSchemaRegistry.RegistryName\n"
        f"      SchemaName: {SOURCE}@{name}\n"
        "      Type: JSONSchemaDraft4\n"
        f"      Description: {json.dumps(description)}\n"
        "      Content: |-\n"
        f"{content}"
    )


def rendered_template(text: str, events: dict[str, Schema]) -> str:
    body = "\n".join(schema_resource(name, schema) for name, schema in events.items())
    return between(text, TEMPLATE_BEGIN, TEMPLATE_END, body, where="template.yaml")


# ---------------------------------------------------------------- docs/events.md


def definition(schema: Schema, node: Schema) -> Schema:
    """``node`` with its ``$ref`` (``#/definitions/<name>``) followed, keeping its own description."""
    while "$ref" in node:
        target = schema["definitions"][node["$ref"].removeprefix("#/definitions/")]
        node = {**target, **{k: v for k, v in node.items() if k == "description"}}
    return node


def merged(schema: Schema, node: Schema) -> Schema:
    """An object schema with its ``allOf`` parts folded in (a later part narrows a field's type)."""
    node = definition(schema, node)
    properties, required = dict(node.get("properties", {})), list(node.get("required", []))
    for part in node.get("allOf", []):
        part = merged(schema, part)
        for key, value in part.get("properties", {}).items():
            properties[key] = {**properties.get(key, {}), **value}
        required += part.get("required", [])
    return {**node, "properties": properties, "required": required}


def type_name(schema: Schema, node: Schema) -> str:
    """A field's type as the table shows it: ``"a"`` | ``"b"``, string (date-time), array of object, ..."""
    node = definition(schema, node)
    if "enum" in node:
        return " | ".join(f"`{json.dumps(value)}`" for value in node["enum"])
    if "anyOf" in node:
        return " | ".join(type_name(schema, option) for option in node["anyOf"])
    if "allOf" in node:
        return type_name(schema, node["allOf"][0])
    types = node.get("type", [])
    names = [types] if isinstance(types, str) else list(types)
    shown = [_one_type(schema, node, name) for name in names]
    return " | ".join(shown) if shown else "any"


def _one_type(schema: Schema, node: Schema, name: str) -> str:
    if name == "string" and "format" in node:
        return f"string ({node['format']})"
    if name == "array":
        return f"array of {type_name(schema, node.get('items', {}))}"
    return name


def condition(branch: Schema) -> str:
    """When a ``oneOf`` branch applies: `change` is `linked`, `reason` is not `request.invalid`."""
    said = [f"`{key}` is `{value['enum'][0]}`" for key, value in _fixed(branch.get("properties", {}))]
    excluded = branch.get("not", {}).get("properties", {})
    said += [f"`{key}` is not `{value['enum'][0]}`" for key, value in _fixed(excluded)]
    return " and ".join(said)


def _fixed(properties: dict[str, Schema]) -> list[tuple[str, Schema]]:
    return [(key, value) for key, value in properties.items() if len(value.get("enum", [])) == 1]


def top_fields(schema: Schema) -> Iterator[tuple[str, str, str, str]]:
    """(field, type, required, meaning) of each top-level field, then its nested fields."""
    branches = schema.get("oneOf", [])
    for name, node in schema["properties"].items():
        when = [condition(b) for b in branches if name in b.get("required", [])]
        required = "yes" if name in schema["required"] else (f"when {' or '.join(when)}" if when else "no")
        shown = type_name(schema, node)
        typed = [(b, b["properties"][name]) for b in branches if name in b.get("properties", {})]
        if shown == "any" and typed:
            shown = "; ".join(f"{type_name(schema, n)} when {condition(b)}" for b, n in typed) + "; else any"
        yield f"`{name}`", shown, required, node.get("description", "")
        yield from nested_fields(schema, name, node)


def nested_fields(schema: Schema, path: str, node: Schema) -> Iterator[tuple[str, str, str, str]]:
    """The fields inside an object field (``path.x``) or inside the objects of an array (``path[].x``)."""
    node = definition(schema, node)
    if "array" in node.get("type", []) and "items" in node:
        path, node = f"{path}[]", node["items"]
    inner = merged(schema, node)
    for name, child in inner["properties"].items():
        required = "yes" if name in inner["required"] else "no"
        yield f"`{path}.{name}`", type_name(schema, child), required, child.get("description", "")
        yield from nested_fields(schema, f"{path}.{name}", child)


def _cell(text: str) -> str:
    return text.replace("|", "\\|").replace("<", "&lt;").replace(">", "&gt;")


def field_table(name: str, schema: Schema) -> str:
    """The generated part of an event's section: where its schema is, and its fields."""
    version = schema["properties"]["version"]["enum"][0]
    lines = [
        f"Schema: [`events/{name}.schema.json`](events/{name}.schema.json) (draft 4), `{SOURCE}@{name}` in",
        f"the Schema Registry. `version`: `{json.dumps(version)}`.",
        "",
        "| field | type | required | meaning |",
        "|---|---|---|---|",
    ]
    for field, shown, required, meaning in top_fields(schema):
        lines.append(f"| {field} | {_cell(shown)} | {required} | {_cell(meaning)} |")
    return "\n".join(lines) + "\n"


def rendered_docs(text: str, events: dict[str, Schema]) -> str:
    for name, schema in events.items():
        begin, end = f"<!-- BEGIN fields: {name} -->\n", f"<!-- END fields: {name} -->\n"
        note = f"<!-- generated from events/{name}.schema.json by `{COMMAND}`: edit the schema -->\n"
        text = between(text, begin, end, note + field_table(name, schema), where=f"docs/events.md {name}")
    return text


# ---------------------------------------------------------------- command


def outdated() -> dict[Path, str]:
    """Each file whose generated parts differ from the schemas, with what it should hold."""
    events = schemas()
    wanted = {
        TEMPLATE: rendered_template(TEMPLATE.read_text(encoding="utf-8"), events),
        DOCS: rendered_docs(DOCS.read_text(encoding="utf-8"), events),
    }
    return {path: text for path, text in wanted.items() if path.read_text(encoding="utf-8") != text}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog=COMMAND, description=__doc__.splitlines()[0])
    parser.add_argument("--check", action="store_true", help="change nothing; exit 1 if something is stale")
    args = parser.parse_args(argv)
    stale = outdated()
    for path, text in stale.items():
        if args.check:
            print(f"{path.relative_to(ROOT)} is out of date: run {COMMAND}", file=sys.stderr)
        else:
            path.write_text(text, encoding="utf-8")
            print(f"rewrote {path.relative_to(ROOT)}")
    return 1 if args.check and stale else 0


if __name__ == "__main__":
    sys.exit(main())
