"""Validate objects against the generated CRD the way the API server does, without one.

The order is the API server's: default (structural defaulting), validate against the
OpenAPI schema (here with `jsonschema`, OpenAPI v3.0 being JSON Schema draft 4 plus
`nullable`), then evaluate every `x-kubernetes-validations` CEL rule (here with
cel-python). Unknown fields are errors, as under kubectl's default strict field
validation.
"""

from __future__ import annotations

import copy
import re
from collections.abc import Callable, Iterator, Mapping
from functools import cache
from typing import Any

import celpy
import jsonschema
from celpy import celtypes
from celpy.adapter import json_to_cel
from celpy.evaluation import CELEvalError

from foreseer.operator.crds import apply_defaults, crd


@cache
def openapi_schema() -> dict[str, Any]:
    """The CRD's openAPIV3Schema (generated once; callers must not modify it)."""
    schema: dict[str, Any] = crd()["spec"]["versions"][0]["schema"]["openAPIV3Schema"]
    return schema


def spec_schema() -> dict[str, Any]:
    spec: dict[str, Any] = openapi_schema()["properties"]["spec"]
    return spec


def as_json_schema(node: Mapping[str, Any]) -> dict[str, Any]:
    """OpenAPI v3.0 (Kubernetes dialect) as JSON Schema draft 4, with strict fields."""
    out = {k: v for k, v in node.items() if not k.startswith("x-kubernetes-")}
    if node.get("x-kubernetes-list-type") == "set":
        out["uniqueItems"] = True  # what the API server enforces for a set
    if out.pop("nullable", False):
        out["type"] = [out["type"], "null"]
    if "properties" in out:
        out["properties"] = {k: as_json_schema(v) for k, v in out["properties"].items()}
        if not node.get("x-kubernetes-preserve-unknown-fields"):
            out["additionalProperties"] = False
    if "items" in out:
        out["items"] = as_json_schema(out["items"])
    if isinstance(out.get("additionalProperties"), Mapping):
        out["additionalProperties"] = as_json_schema(out["additionalProperties"])
    return out


@cache
def _validator() -> jsonschema.Draft4Validator:
    schema = as_json_schema(spec_schema())
    jsonschema.Draft4Validator.check_schema(schema)
    return jsonschema.Draft4Validator(schema)


def schema_errors(spec: Any) -> list[str]:
    """OpenAPI schema violations of a (defaulted) spec, as "path: message"."""
    return [
        f"{'.'.join(str(p) for p in e.absolute_path) or 'spec'}: {e.message}"
        for e in _validator().iter_errors(spec)
    ]


def _find(text: str, pattern: str) -> celtypes.StringType:
    match = re.search(pattern, text)
    return celtypes.StringType(match.group(0) if match else "")


def _find_all(text: str, pattern: str) -> celtypes.ListType:
    return celtypes.ListType([celtypes.StringType(m.group(0)) for m in re.finditer(pattern, text)])


def _sum(values: celtypes.ListType) -> Any:
    if not values:
        return celtypes.IntType(0)
    total: Any = values[0]
    for value in values[1:]:
        total = total + value
    return total


# The Kubernetes CEL libraries the CRD's rules use, which cel-python lacks: the regex
# library's find/findAll (first match or "", every match) and the list library's sum.
KUBERNETES_FUNCTIONS: dict[str, Callable[..., Any]] = {
    "find": _find, "findAll": _find_all, "sum": _sum,
}


@cache
def _program(rule: str) -> celpy.Runner:
    env = celpy.Environment()
    return env.program(env.compile(rule), functions=KUBERNETES_FUNCTIONS)


def cel_value(expression: str, value: Any) -> Any:
    """What a CEL expression gives with ``self`` bound to ``value``."""
    return _program(expression).evaluate({"self": json_to_cel(value)})


def cel_rules(node: Mapping[str, Any] | None = None) -> Iterator[str]:
    """Every CEL rule in the schema."""
    node = spec_schema() if node is None else node
    for entry in node.get("x-kubernetes-validations", []):
        yield entry["rule"]
    for sub in node.get("properties", {}).values():
        yield from cel_rules(sub)
    if "items" in node:
        yield from cel_rules(node["items"])


def _to_cel(value: Any, schema: Mapping[str, Any]) -> Any:
    # The API server hands CEL a `number` field as a double even when it was written as 1.
    if schema.get("type") == "number" and isinstance(value, int):
        value = float(value)
    if isinstance(value, dict):
        props = schema.get("properties", {})
        value = {k: _to_cel(v, props.get(k, {})) for k, v in value.items()}
    elif isinstance(value, list):
        value = [_to_cel(v, schema.get("items", {})) for v in value]
    return value


def cel_errors(
    value: Any, schema: Mapping[str, Any] | None = None, path: str = "spec"
) -> list[str]:
    """Messages of the CEL rules that the (defaulted, schema-valid) value breaks."""
    schema = spec_schema() if schema is None else schema
    errors = []
    for entry in schema.get("x-kubernetes-validations", []):
        try:
            passed = bool(_program(entry["rule"]).evaluate(
                {"self": json_to_cel(_to_cel(value, schema))}))
        except CELEvalError:
            passed = False  # the API server reports a rule that fails to evaluate as invalid
        if not passed:
            errors.append(f"{path}{entry.get('fieldPath', '')}: {entry['message']}")
    if isinstance(value, dict):
        for name, sub in schema.get("properties", {}).items():
            if name in value and value[name] is not None:
                errors += cel_errors(value[name], sub, f"{path}.{name}")
    elif isinstance(value, list) and "items" in schema:
        for i, item in enumerate(value):
            errors += cel_errors(item, schema["items"], f"{path}[{i}]")
    return errors


def api_server_errors(spec: Any) -> list[str]:
    """Why the API server would refuse a ScalingPolicy with this spec; [] if it accepts it."""
    defaulted = apply_defaults(copy.deepcopy(spec), spec_schema())
    return schema_errors(defaulted) or cel_errors(defaulted)
