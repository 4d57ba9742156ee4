"""Read ``template.yaml`` (SAM / CloudFormation) into plain JSON-shaped Python data.

CloudFormation's YAML short tags become their long JSON forms, exactly as CloudFormation itself
reads them: ``!Ref X`` -> ``{"Ref": "X"}``, ``!GetAtt A.B`` -> ``{"Fn::GetAtt": ["A", "B"]}``,
``!Sub s`` -> ``{"Fn::Sub": s}``, ``!If [c, a, b]`` -> ``{"Fn::If": [c, a, b]}``,
``!Condition C`` -> ``{"Condition": "C"}`` and so on for every ``Fn::`` function.

Unquoted dates stay strings (CloudFormation has no timestamp type), so
``AWSTemplateFormatVersion: 2010-09-09`` reads as ``"2010-09-09"``.

Dev tooling only (local stack, tests, checks); never part of a Lambda artifact.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml

__all__ = ["INTRINSIC_TAGS", "load_template", "parse_template"]

# short tag -> long key; the few non-``Fn::`` names are listed explicitly.
INTRINSIC_TAGS: dict[str, str] = {
    "Ref": "Ref",
    "Condition": "Condition",
    **{
        name: f"Fn::{name}"
        for name in (
            "And",
            "Base64",
            "Cidr",
            "Equals",
            "FindInMap",
            "GetAtt",
            "GetAZs",
            "If",
            "ImportValue",
            "Join",
            "Length",
            "Not",
            "Or",
            "Select",
            "Split",
            "Sub",
            "ToJsonString",
            "Transform",
        )
    },
}


class _CfnLoader(yaml.SafeLoader):
    """A SafeLoader that knows CloudFormation's short intrinsic tags."""


def _construct_intrinsic(loader: _CfnLoader, tag_suffix: str, node: yaml.Node) -> dict[str, Any]:
    key = INTRINSIC_TAGS.get(tag_suffix)
    if key is None:
        raise yaml.constructor.ConstructorError(
            None, None, f"unknown CloudFormation tag !{tag_suffix}", node.start_mark
        )
    value: Any
    if isinstance(node, yaml.ScalarNode):
        value = loader.construct_scalar(node)
        if key == "Fn::GetAtt":
            # !GetAtt Resource.Attribute.With.Dots -> ["Resource", "Attribute.With.Dots"]
            resource, _, attribute = str(value).partition(".")
            value = [resource, attribute]
    elif isinstance(node, yaml.SequenceNode):
        value = loader.construct_sequence(node, deep=True)
    elif isinstance(node, yaml.MappingNode):
        value = loader.construct_mapping(node, deep=True)
    else:  # pragma: no cover - yaml has no other node kinds
        raise yaml.constructor.ConstructorError(None, None, "unexpected node", node.start_mark)
    return {key: value}


def _construct_timestamp_as_string(loader: _CfnLoader, node: yaml.ScalarNode) -> str:
    return str(loader.construct_scalar(node))


_CfnLoader.add_multi_constructor("!", _construct_intrinsic)
_CfnLoader.add_constructor("tag:yaml.org,2002:timestamp", _construct_timestamp_as_string)


def parse_template(text: str) -> dict[str, Any]:
    """Parse template text (YAML or JSON; JSON is YAML) into a dict."""
    doc = yaml.load(text, Loader=_CfnLoader)  # noqa: S506 - a SafeLoader subclass
    if not isinstance(doc, dict):
        raise ValueError("a CloudFormation template must be a mapping at the top level")
    return doc


def load_template(path: str | Path) -> dict[str, Any]:
    """Read a SAM / CloudFormation template file with short tags turned into their long forms."""
    return parse_template(Path(path).read_text(encoding="utf-8"))
