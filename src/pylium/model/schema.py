"""L1: a small validator for OpenAPI v3 schemas as Kubernetes CRDs use them.

Schemas are plain dicts in ``openAPIV3Schema`` form, so that the same declaration validates
documents here and is exported verbatim into CustomResourceDefinition manifests. Supported:
``type``, ``properties``, ``required``, ``additionalProperties`` (false rejects unknown
fields, as ``kubectl --validate=strict`` does), ``items``, ``enum``, ``minimum``/``maximum``,
``minLength``/``maxLength``, ``minItems``/``maxItems``, ``pattern``, ``format`` (``cidr``,
``ip``, ``ipv4``, ``ipv6``), ``anyOf``/``oneOf``, ``x-kubernetes-int-or-string`` and
``x-kubernetes-preserve-unknown-fields``. Every problem is collected with its field path.

``anyOf``/``oneOf`` alternatives that only require a field (upstream's way of saying "one of
these fields") are reported as such: ``must specify exactly one of: endpointSelector,
nodeSelector``. A pattern's failure is worded by the schema's ``description`` or by a message
registered with :func:`explain_pattern`.
"""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Callable, Mapping, Sequence
from typing import Any

Path = tuple[str | int, ...]
Problem = tuple[Path, str]
Schema = Mapping[str, Any]

_TYPES: dict[str, tuple[type, ...]] = {
    "object": (dict,),
    "array": (list,),
    "string": (str,),
    "integer": (int,),
    "number": (int, float),
    "boolean": (bool,),
}


_PATTERN_MESSAGES: dict[str, Callable[[str], str | None]] = {}


def explain_pattern(pattern: str, explain: Callable[[str], str | None]) -> None:
    """Word the failures of ``pattern``: ``explain(value)`` returns the rule broken (or None to
    fall back to the description)."""
    _PATTERN_MESSAGES[pattern] = explain


def _type_ok(value: Any, type_name: str) -> bool:
    if type_name in ("integer", "number") and isinstance(value, bool):
        return False
    if type_name == "integer" and isinstance(value, float) and value.is_integer():
        return True
    return isinstance(value, _TYPES[type_name])


def _describe(value: Any) -> str:
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, int | float):
        return "number"
    if isinstance(value, str):
        return "string"
    if isinstance(value, list):
        return "array"
    if isinstance(value, dict):
        return "object"
    return "null" if value is None else type(value).__name__


def _format_ok(value: str, fmt: str) -> bool:
    try:
        if fmt == "cidr":
            ipaddress.ip_network(value, strict=False)
            return "/" in value
        if fmt == "ip":
            ipaddress.ip_address(value)
        elif fmt == "ipv4":
            ipaddress.IPv4Address(value)
        elif fmt == "ipv6":
            ipaddress.IPv6Address(value)
    except ValueError:
        return False
    return True


def validate(value: Any, schema: Schema, path: Path = ()) -> list[Problem]:
    """Every way ``value`` breaks ``schema``, each with the path of the offending field."""
    problems: list[Problem] = []
    if schema.get("x-kubernetes-int-or-string"):
        if not (isinstance(value, str) or _type_ok(value, "integer")):
            problems.append(
                (path, f"Invalid value: {_describe(value)}: must be an integer or a string")
            )
            return problems
    elif "type" in schema and not _type_ok(value, schema["type"]):
        problems.append(
            (path, f'Invalid value: "{_describe(value)}": must be of type {schema["type"]}')
        )
        return problems

    if "enum" in schema and value not in schema["enum"]:
        allowed = ", ".join(f'"{v}"' for v in schema["enum"])
        problems.append((path, f'Unsupported value: "{value}": supported values: {allowed}'))

    if isinstance(value, int | float) and not isinstance(value, bool):
        lo, hi = schema.get("minimum"), schema.get("maximum")
        if (lo is not None and value < lo) or (hi is not None and value > hi):
            if lo is not None and hi is not None:
                bound = f"must be in the range {lo}-{hi}"
            elif lo is not None:
                bound = f"must be greater than or equal to {lo}"
            else:
                bound = f"must be less than or equal to {hi}"
            problems.append((path, f'Invalid value: "{value}": {bound}'))

    if isinstance(value, str):
        if "minLength" in schema and len(value) < schema["minLength"]:
            problems.append(
                (
                    path,
                    f'Invalid value: "{value}": must be at least {schema["minLength"]} characters',
                )
            )
        if "maxLength" in schema and len(value) > schema["maxLength"]:
            problems.append((path, f"Too long: must have at most {schema['maxLength']} characters"))
        if "pattern" in schema and not re.search(schema["pattern"], value):
            explain = _PATTERN_MESSAGES.get(schema["pattern"])
            # A schema's description, when it has one, says in words what the pattern means.
            rule = (
                (explain(value) if explain else None)
                or schema.get("description")
                or f'must match "{schema["pattern"]}"'
            )
            problems.append((path, f'Invalid value: "{value}": {rule}'))
        if "format" in schema and not _format_ok(value, schema["format"]):
            problems.append((path, f'Invalid value: "{value}": must be a valid {schema["format"]}'))

    if isinstance(value, list):
        if "maxItems" in schema and len(value) > schema["maxItems"]:
            problems.append(
                (path, f"Too many: {len(value)}: must have at most {schema['maxItems']} items")
            )
        if "minItems" in schema and len(value) < schema["minItems"]:
            problems.append(
                (path, f"Required value: must have at least {schema['minItems']} items")
            )
        if "items" in schema:
            for index, item in enumerate(value):
                problems.extend(validate(item, schema["items"], (*path, index)))

    if isinstance(value, dict):
        problems.extend(_validate_object(value, schema, path))

    for key in ("anyOf", "oneOf"):
        if key in schema:
            problems.extend(_alternatives(value, schema[key], path, exactly_one=key == "oneOf"))
    return problems


def _required_only(alternatives: Sequence[Schema]) -> list[str] | None:
    """The field names, when every alternative only requires one field; else None."""
    names: list[str] = []
    for sub in alternatives:
        required = sub.get("required") or []
        extra = set(sub) - {"required", "properties"}
        if len(required) != 1 or extra or any(sub.get("properties", {}).values()):
            return None
        names.append(required[0])
    return names


def _alternatives(
    value: Any, alternatives: Sequence[Schema], path: Path, *, exactly_one: bool
) -> list[Problem]:
    results = [validate(value, sub, path) for sub in alternatives]
    passing = sum(1 for r in results if not r)
    fields = _required_only(alternatives) if isinstance(value, Mapping) else None
    if fields is not None:
        listed = ", ".join(fields)
        if passing == 0 and exactly_one:
            return [(path, f"Required value: must specify exactly one of: {listed}")]
        if passing == 0:
            return [(path, f"Required value: must specify at least one of: {listed}")]
        if passing > 1 and exactly_one:
            given = ", ".join(f for f, r in zip(fields, results, strict=True) if not r)
            return [(path, f"Invalid value: may specify only one of: {listed} (found {given})")]
        return []
    if passing == 0:
        return min(results, key=len)
    if exactly_one and passing > 1:
        return [(path, "Invalid value: must match exactly one of the alternatives")]
    return []


def _validate_object(value: Mapping[str, Any], schema: Schema, path: Path) -> list[Problem]:
    problems: list[Problem] = []
    props: Mapping[str, Schema] = schema.get("properties", {})
    for name in schema.get("required", ()):
        if value.get(name) is None:
            problems.append(((*path, name), "Required value"))
    extra = schema.get("additionalProperties")
    for name, item in value.items():
        if name in props:
            if item is None and not props[name].get("nullable"):
                continue  # YAML "key:" with nothing: treated as absent, as the API server does
            problems.extend(validate(item, props[name], (*path, name)))
        elif isinstance(extra, Mapping):
            problems.extend(validate(item, extra, (*path, name)))
        elif extra is False:
            # Declared schemas close their objects explicitly (see schemas.obj), so that
            # alternatives in anyOf/oneOf, which list fields without closing, stay open.
            problems.append(((*path, name), f'unknown field "{name}"'))
    return problems
