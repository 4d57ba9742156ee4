"""The event schemas are declared in template.yaml and documented in docs/events.md from the schema files
themselves (``python -m infra.events_docs``), and neither drifts from them."""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

import pytest

from crossroute.bus import SOURCE
from infra import events_docs
from infra.template import load_template
from tests.support import EVENT_SCHEMAS, REPO

RESOURCES: dict[str, Any] = load_template(REPO / "template.yaml")["Resources"]


def of_type(rtype: str) -> dict[str, dict[str, Any]]:
    return {lid: r["Properties"] for lid, r in RESOURCES.items() if r["Type"] == rtype}


def test_template_and_docs_are_generated_from_the_current_schemas() -> None:
    stale = [str(path.relative_to(REPO)) for path in events_docs.outdated()]
    assert stale == [], f"{stale} out of date with docs/events/*.schema.json: run python -m infra.events_docs"


def test_the_template_declares_one_registry_and_every_schema_in_it() -> None:
    (registry,) = of_type("AWS::EventSchemas::Registry").items()
    registry_id, properties = registry
    assert properties["RegistryName"] == {"Fn::Sub": "${AWS::StackName}-events"}
    declared = {p["SchemaName"]: p for p in of_type("AWS::EventSchemas::Schema").values()}
    assert set(declared) == {f"{SOURCE}@{name}" for name in EVENT_SCHEMAS} and SOURCE == events_docs.SOURCE
    for name, schema in EVENT_SCHEMAS.items():
        resource = declared[f"{SOURCE}@{name}"]
        assert resource["RegistryName"] == {"Fn::GetAtt": [registry_id, "RegistryName"]}
        assert resource["Type"] == "JSONSchemaDraft4"
        assert json.loads(resource["Content"]) == schema, name
        assert name in resource["Description"] and len(resource["Description"]) <= 256


def test_each_event_section_lists_every_field_of_its_schema() -> None:
    text = (REPO / "docs" / "events.md").read_text(encoding="utf-8")
    for name, schema in EVENT_SCHEMAS.items():
        section = text.split(f"<!-- BEGIN fields: {name} -->")[1].split(f"<!-- END fields: {name} -->")[0]
        assert f"`{SOURCE}@{name}`" in section
        for field in schema["properties"]:
            assert f"| `{field}` |" in section, (name, field)
        assert '| `version` | `"1"` | yes |' in section, name


@pytest.fixture
def copies(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> tuple[Path, Path]:
    """The generator pointed at copies of template.yaml and docs/events.md."""
    template, docs = tmp_path / "template.yaml", tmp_path / "events.md"
    shutil.copy(events_docs.TEMPLATE, template)
    shutil.copy(events_docs.DOCS, docs)
    monkeypatch.setattr(events_docs, "TEMPLATE", template)
    monkeypatch.setattr(events_docs, "DOCS", docs)
    monkeypatch.setattr(events_docs, "ROOT", tmp_path)
    return template, docs


def test_check_names_a_stale_file_and_the_command_rewrites_it(
    copies: tuple[Path, Path], capsys: pytest.CaptureFixture[str]
) -> None:
    template, docs = copies
    stale = docs.read_text().replace("| `merged_customer_id` |", "| `merged_id` |")
    docs.write_text(stale)
    template.write_text(
        template.read_text().replace("SchemaName: crossroute@ContactsMerged", "SchemaName: x")
    )
    assert events_docs.main(["--check"]) == 1
    assert docs.read_text() == stale  # --check changes nothing
    assert "events.md is out of date: run python -m infra.events_docs" in capsys.readouterr().err
    assert events_docs.main([]) == 0
    assert events_docs.main(["--check"]) == 0
    assert docs.read_text() == (REPO / "docs" / "events.md").read_text()
    assert template.read_text() == (REPO / "template.yaml").read_text()


def test_missing_markers_are_an_error_that_says_what_to_do(copies: tuple[Path, Path]) -> None:
    _, docs = copies
    docs.write_text(docs.read_text().replace("<!-- END fields: IdentityConflict -->\n", ""))
    with pytest.raises(events_docs.OutOfDate, match=r"IdentityConflict.*python -m infra\.events_docs"):
        events_docs.outdated()
