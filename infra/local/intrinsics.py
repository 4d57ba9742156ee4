"""A CloudFormation intrinsic-function resolver for the local stack: exactly what ``template.yaml`` uses.

``Ref`` (parameters: ``String``, ``Number`` and ``CommaDelimitedList``, which is a list of its values,
trimmed, as CloudFormation gives it; resources; the pseudo parameters ``AWS::Region``, ``AWS::URLSuffix``
and ``AWS::StackName``), ``Fn::GetAtt``, ``Fn::Sub`` (string form), and ``Fn::If`` / ``Fn::Equals`` /
``Fn::Not`` with the template's ``Conditions``. Anything else raises :class:`IntrinsicError` naming it:
a template that starts using another function learns at once what to add here.

Resources are looked up through two callbacks (``ref`` and ``get_att``) so the provisioner can create
them on first use with their real emulator identifiers (queue URLs, secret ARNs, ...).
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from typing import Any

from .aws import REGION

__all__ = ["IntrinsicError", "Resolver"]

STACK_NAME = "crossroute-local"
_PARAMETER_TYPES = ("String", "Number", "CommaDelimitedList")
_SUB_VAR = re.compile(r"\$\{([^}]*)\}")


class IntrinsicError(ValueError):
    """An intrinsic function could not be resolved locally; the message says which."""


def pseudo_parameters(*, region: str = REGION) -> dict[str, Any]:
    return {"AWS::Region": region, "AWS::StackName": STACK_NAME, "AWS::URLSuffix": "amazonaws.com"}


def parameter_values(
    template: Mapping[str, Any], overrides: Mapping[str, str] | None = None
) -> dict[str, str]:
    """Each template parameter's value (a string): the override, else its ``Default``."""
    overrides = dict(overrides or {})
    params = template.get("Parameters") or {}
    unknown = sorted(set(overrides) - set(params))
    if unknown:
        raise IntrinsicError(f"parameter override for unknown parameter(s): {', '.join(unknown)}")
    values: dict[str, str] = {}
    for name, spec in params.items():
        if spec.get("Type") not in _PARAMETER_TYPES:
            raise IntrinsicError(f"parameter {name}: Type {spec.get('Type')!r} is not supported locally")
        if name not in overrides and "Default" not in spec:
            raise IntrinsicError(f"parameter {name} has no Default; pass it as an override")
        values[name] = str(overrides.get(name, spec.get("Default")))
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
        self._names = {**(pseudo or pseudo_parameters()), **parameters}
        self._ref = ref
        self._get_att = get_att
        self._conditions: dict[str, bool] = {}
        self._functions: dict[str, Callable[[Any], Any]] = {
            "Ref": lambda arg: self.ref(str(arg)),
            "Fn::GetAtt": self._fn_getatt,
            "Fn::Sub": self._fn_sub,
            "Fn::If": self._fn_if,
            "Fn::Equals": lambda arg: str(self.resolve(arg[0])) == str(self.resolve(arg[1])),
            "Fn::Not": lambda arg: not self.resolve(arg[0]),
        }

    def resolve(self, value: Any) -> Any:
        """Resolve every intrinsic inside ``value``."""
        if isinstance(value, dict):
            if len(value) == 1:
                ((key, arg),) = value.items()
                if key in ("Ref", "Condition") or key.startswith("Fn::"):
                    return self._function(key)(arg)
            return {k: self.resolve(v) for k, v in value.items()}
        if isinstance(value, list):
            return [self.resolve(v) for v in value]
        return value

    def ref(self, name: str) -> Any:
        if name in self._names:
            spec = (self._template.get("Parameters") or {}).get(name) or {}
            if spec.get("Type") == "CommaDelimitedList":
                return [value.strip() for value in str(self._names[name]).split(",")]
            return self._names[name]
        if name in (self._template.get("Resources") or {}):
            return self._ref(name)
        pseudo = ", ".join(pseudo_parameters())
        raise IntrinsicError(f"Ref to unknown name {name!r} (the pseudo parameters supported: {pseudo})")

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

    def _function(self, key: str) -> Callable[[Any], Any]:
        function = self._functions.get(key)
        if function is None:
            raise IntrinsicError(
                f"{key} is not supported by the local stack (supported: {', '.join(self._functions)}); "
                "add it to infra/local/intrinsics.py"
            )
        return function

    def _fn_getatt(self, arg: Any) -> Any:
        if not (isinstance(arg, list) and len(arg) == 2):
            raise IntrinsicError(f"Fn::GetAtt expects [resource, attribute], got {arg!r}")
        resource, attribute = (str(a) for a in arg)
        if resource not in (self._template.get("Resources") or {}):
            raise IntrinsicError(f"Fn::GetAtt of unknown resource {resource!r}")
        return self._get_att(resource, attribute)

    def _fn_sub(self, arg: Any) -> str:
        if not isinstance(arg, str):
            raise IntrinsicError(f"Fn::Sub: only the string form is supported locally, got {arg!r}")

        def replace(match: re.Match[str]) -> str:
            name = match.group(1)
            if "." in name and not name.startswith("AWS::"):
                value = self._fn_getatt(name.split(".", 1))
            else:
                value = self.ref(name)
            if isinstance(value, dict | list):
                raise IntrinsicError(f"Fn::Sub ${{{name}}}: expected a string, got {value!r}")
            return str(value)

        return _SUB_VAR.sub(replace, arg)

    def _fn_if(self, arg: Any) -> Any:
        name, if_true, if_false = arg
        return self.resolve(if_true if self.condition(str(name)) else if_false)
