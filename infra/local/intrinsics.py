"""A small CloudFormation intrinsic-function resolver for the local stack.

It resolves what ``template.yaml`` uses in the places the local stack reads (resource properties,
function environments, event sources, outputs): ``Ref``, ``Fn::GetAtt``, ``Fn::Sub``, ``Fn::Join``,
``Fn::Select``, ``Fn::Split``, ``Fn::If`` / ``Fn::Equals`` / ``Fn::Not`` / ``Fn::And`` / ``Fn::Or`` /
``Condition`` with the template's ``Conditions``, ``Fn::FindInMap``, ``Fn::Base64``,
``Fn::ToJsonString`` and ``AWS::NoValue``.

Resources are looked up through two callbacks (``ref`` and ``get_att``) so the provisioner can create
them on first use with their real emulator identifiers (queue URLs, secret ARNs, ...).
"""

from __future__ import annotations

import base64
import json
import re
from collections.abc import Callable, Mapping
from typing import Any

from .aws import ACCOUNT_ID, REGION

__all__ = ["NO_VALUE", "IntrinsicError", "Resolver"]

STACK_NAME = "crossroute-local"


class IntrinsicError(ValueError):
    """An intrinsic function could not be resolved locally; the message says which."""


class _NoValue:
    def __repr__(self) -> str:
        return "AWS::NoValue"


NO_VALUE: Any = _NoValue()

_SUB_VAR = re.compile(r"\$\{([^}]*)\}")


def pseudo_parameters(*, region: str = REGION) -> dict[str, Any]:
    return {
        "AWS::AccountId": ACCOUNT_ID,
        "AWS::Region": region,
        "AWS::StackName": STACK_NAME,
        "AWS::StackId": f"arn:aws:cloudformation:{region}:{ACCOUNT_ID}:stack/{STACK_NAME}/local",
        "AWS::Partition": "aws",
        "AWS::URLSuffix": "amazonaws.com",
        "AWS::NotificationARNs": [],
    }


def parameter_values(
    template: Mapping[str, Any], overrides: Mapping[str, str] | None = None
) -> dict[str, Any]:
    """Each template parameter's value: the override, else its ``Default``."""
    overrides = dict(overrides or {})
    params = template.get("Parameters") or {}
    unknown = sorted(set(overrides) - set(params))
    if unknown:
        raise IntrinsicError(f"parameter override for unknown parameter(s): {', '.join(unknown)}")
    values: dict[str, Any] = {}
    for name, spec in params.items():
        if name in overrides:
            value: Any = overrides[name]
        elif "Default" in spec:
            value = spec["Default"]
        else:
            raise IntrinsicError(f"parameter {name} has no Default; pass it as an override")
        if str(spec.get("Type", "String")).startswith(("CommaDelimitedList", "List<")):
            value = value if isinstance(value, list) else [v.strip() for v in str(value).split(",")]
        elif not isinstance(value, str):
            value = str(value)
        values[name] = value
    return values


class Resolver:
    """Resolves intrinsic functions in template fragments."""

    def __init__(
        self,
        template: Mapping[str, Any],
        *,
        parameters: Mapping[str, Any],
        ref: Callable[[str], Any],
        get_att: Callable[[str, str], Any],
        pseudo: Mapping[str, Any] | None = None,
    ) -> None:
        self._template = template
        self._parameters = dict(parameters)
        self._pseudo = dict(pseudo or pseudo_parameters())
        self._ref = ref
        self._get_att = get_att
        self._conditions: dict[str, bool] = {}

    # ------------------------------------------------------------------ public
    def resolve(self, value: Any) -> Any:
        """Resolve every intrinsic inside ``value``; ``AWS::NoValue`` entries are dropped."""
        if isinstance(value, dict):
            if len(value) == 1:
                ((key, arg),) = value.items()
                if key == "Ref" or key == "Condition" or key.startswith("Fn::"):
                    return self._function(key, arg)
            out = {}
            for k, v in value.items():
                resolved = self.resolve(v)
                if resolved is not NO_VALUE:
                    out[k] = resolved
            return out
        if isinstance(value, list):
            return [r for r in (self.resolve(v) for v in value) if r is not NO_VALUE]
        return value

    def ref(self, name: str) -> Any:
        if name in self._pseudo:
            return self._pseudo[name]
        if name == "AWS::NoValue":
            return NO_VALUE
        if name in self._parameters:
            return self._parameters[name]
        if name in (self._template.get("Resources") or {}):
            return self._ref(name)
        raise IntrinsicError(f"Ref to unknown name {name!r}")

    def condition(self, name: str) -> bool:
        if name not in self._conditions:
            conditions = self._template.get("Conditions") or {}
            if name not in conditions:
                raise IntrinsicError(f"unknown condition {name!r}")
            self._conditions[name] = bool(self.resolve(conditions[name]))
        return self._conditions[name]

    def is_enabled(self, resource: Mapping[str, Any]) -> bool:
        """False when the resource has a ``Condition`` that evaluates to false."""
        cond = resource.get("Condition")
        return True if cond is None else self.condition(str(cond))

    # ------------------------------------------------------------------ functions
    def _function(self, key: str, arg: Any) -> Any:
        if key == "Ref":
            return self.ref(str(arg))
        if key == "Condition":
            return self.condition(str(arg))
        handler = getattr(self, "_fn_" + key[4:].lower(), None)
        if handler is None:
            raise IntrinsicError(f"{key} is not supported by the local stack")
        return handler(arg)

    def _fn_getatt(self, arg: Any) -> Any:
        if isinstance(arg, str):
            arg = arg.split(".", 1)
        if not (isinstance(arg, list) and len(arg) == 2):
            raise IntrinsicError(f"Fn::GetAtt expects [resource, attribute], got {arg!r}")
        resource, attribute = (str(self.resolve(a)) for a in arg)
        if resource not in (self._template.get("Resources") or {}):
            raise IntrinsicError(f"Fn::GetAtt of unknown resource {resource!r}")
        return self._get_att(resource, attribute)

    def _fn_sub(self, arg: Any) -> str:
        if isinstance(arg, list):
            text, variables = arg[0], self.resolve(arg[1] if len(arg) > 1 else {})
        else:
            text, variables = arg, {}

        def replace(match: re.Match[str]) -> str:
            name = match.group(1)
            if name.startswith("!"):
                return "${" + name[1:] + "}"
            if name in variables:
                value = variables[name]
            elif "." in name and not name.startswith("AWS::"):
                value = self._fn_getatt(name.split(".", 1))
            else:
                value = self.ref(name)
            return _scalar(value, f"Fn::Sub ${{{name}}}")

        return _SUB_VAR.sub(replace, str(text))

    def _fn_join(self, arg: Any) -> str:
        delimiter, items = arg
        items = self.resolve(items)
        return str(delimiter).join(_scalar(i, "Fn::Join") for i in items)

    def _fn_select(self, arg: Any) -> Any:
        index, items = self.resolve(arg[0]), self.resolve(arg[1])
        return items[int(index)]

    def _fn_split(self, arg: Any) -> list[str]:
        delimiter, text = arg
        return str(self.resolve(text)).split(str(delimiter))

    def _fn_if(self, arg: Any) -> Any:
        name, if_true, if_false = arg
        return self.resolve(if_true if self.condition(str(name)) else if_false)

    def _fn_equals(self, arg: Any) -> bool:
        left, right = (self.resolve(a) for a in arg)
        return bool(str(left) == str(right))

    def _fn_not(self, arg: Any) -> bool:
        return not self.resolve(arg[0])

    def _fn_and(self, arg: Any) -> bool:
        return all(self.resolve(a) for a in arg)

    def _fn_or(self, arg: Any) -> bool:
        return any(self.resolve(a) for a in arg)

    def _fn_findinmap(self, arg: Any) -> Any:
        name, top, second = (self.resolve(a) for a in arg[:3])
        try:
            return self._template["Mappings"][name][top][second]
        except KeyError:
            raise IntrinsicError(f"Fn::FindInMap: no {name}.{top}.{second}") from None

    def _fn_base64(self, arg: Any) -> str:
        return base64.b64encode(str(self.resolve(arg)).encode()).decode()

    def _fn_tojsonstring(self, arg: Any) -> str:
        return json.dumps(self.resolve(arg), separators=(",", ":"))


def _scalar(value: Any, where: str) -> str:
    if isinstance(value, (dict, list)) or value is NO_VALUE:
        raise IntrinsicError(f"{where}: expected a string, got {value!r}")
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)
