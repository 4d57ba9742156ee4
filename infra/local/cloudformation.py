"""The local stack as a CloudFormation stack in the emulator, so that what reads a deployed stack reads
the local one the same way: ``aws cloudformation describe-stacks --stack-name crossroute-local`` and
``crossroute --stack crossroute-local`` (with ``AWS_ENDPOINT_URL`` pointing at the emulator) get the
template's outputs with the local values (``ApiUrl`` is the local gateway) and its parameters.

The registered template's only resource is an ``AWS::CloudFormation::WaitConditionHandle`` (moto's
CloudFormation creates nothing for it); its ``Outputs`` and ``Parameters`` are literal values. moto
imports most of its services to parse a template (about a second), so the stack registers on a thread
once it is ready.
"""

from __future__ import annotations

import json
import warnings
from collections.abc import Mapping
from typing import Any

__all__ = ["register", "template"]

RESOURCE = "AWS::CloudFormation::WaitConditionHandle"


def template(outputs: Mapping[str, Any], parameters: Mapping[str, Any]) -> dict[str, Any]:
    """A template whose outputs and parameter defaults are the given values (empty outputs left out:
    CloudFormation has no empty output)."""
    return {
        "Description": "crossroute local stack (infra/local): outputs of template.yaml with the local values",
        "Parameters": {name: {"Type": "String", "Default": str(value)} for name, value in parameters.items()},
        "Resources": {"LocalStack": {"Type": RESOURCE}},
        "Outputs": {name: {"Value": str(value)} for name, value in outputs.items() if str(value)},
    }


def register(client: Any, name: str, outputs: Mapping[str, Any], parameters: Mapping[str, Any]) -> None:
    """Create the stack ``name`` in the emulator's CloudFormation (``client``)."""
    # moto warns that it creates nothing for the resource: that is the point.
    warnings.filterwarnings("ignore", message=f"Tried to parse {RESOURCE}")
    body = json.dumps(template(outputs, parameters))
    given = [{"ParameterKey": k, "ParameterValue": str(v)} for k, v in parameters.items()]
    client.create_stack(StackName=name, TemplateBody=body, Parameters=given)
