"""L1: YAML/JSON documents to validated :class:`Resource` objects, and back.

``parse_documents`` reads a multi-document text and validates every document, collecting
every problem of every document into one :class:`ValidationError`; each problem names the
source, the document (numbered from 1 in file order, as a user counts them) and the field
path. Nothing is returned unless everything is valid, so a caller can write all or nothing.
"""

from __future__ import annotations

import copy
import json
from collections.abc import Mapping
from typing import Any

import yaml

from pylium.base.errors import Location, ValidationError
from pylium.model import checks, registry, schema, schemas
from pylium.model.resource import Resource


def validate(body: Mapping[str, Any], *, source: str = "", document: int | None = None) -> Resource:
    """One object validated like the API server would, on a copy with defaults applied
    (``metadata.namespace: default`` for namespaced kinds, as kubectl fills it in).

    ``document`` is the 1-based number placed in every problem's location. Schema problems
    (types, unknown fields, enums, ranges, patterns) come first; the kind's semantic checks
    run once the shape is right, so they never trip over a wrongly typed field."""

    def fail(problems: list[schema.Problem]) -> ValidationError:
        return ValidationError(
            (Location(source=source, document=document, path=path), msg) for path, msg in problems
        )

    if not isinstance(body, Mapping):
        raise fail(
            [((), f"Invalid value: a document must be an object, not {schema._describe(body)}")]
        )
    kind, api_version = body.get("kind"), body.get("apiVersion")
    head: list[schema.Problem] = []
    if not kind:
        head.append((("kind",), "Required value: kind is required"))
    if not api_version:
        head.append((("apiVersion",), "Required value: apiVersion is required"))
    if head:
        raise fail(head)
    info = registry.by_kind(str(kind))
    if info is None:
        alias = registry.suggest(str(kind))
        guess = registry.lookup_kind(alias).kind if alias else None
        hint = f' (did you mean "{guess}"?)' if guess else ""
        raise fail([(("kind",), f'Unsupported value: unknown kind "{kind}"{hint}')])
    if api_version != info.api_version:
        raise fail(
            [
                (
                    ("apiVersion",),
                    f'Unsupported value: "{api_version}": {kind} is served as "{info.api_version}"',
                )
            ]
        )
    out = copy.deepcopy(dict(body))
    meta = out.get("metadata")
    problems = schema.validate(out, schemas.SCHEMAS[info.kind])
    if isinstance(meta, Mapping):
        labels, annotations = meta.get("labels"), meta.get("annotations")
        if isinstance(labels, Mapping):
            problems.extend(checks.label_problems(labels, ("metadata", "labels")))
        if isinstance(annotations, Mapping):
            problems.extend(checks.annotation_problems(annotations, ("metadata", "annotations")))
        if info.namespaced and not meta.get("namespace"):
            out["metadata"]["namespace"] = "default"
        elif not info.namespaced and meta.get("namespace"):
            problems.append(
                (
                    ("metadata", "namespace"),
                    f"Forbidden: {kind} is cluster-scoped and has no namespace",
                )
            )
    elif meta is None:
        problems.append((("metadata",), "Required value: metadata.name is required"))
    check = checks.CHECKS.get(info.kind)
    if check is not None and not problems:
        problems.extend(check(out))
    if problems:
        raise fail(problems)
    return Resource(out)


def parse_documents(text: str, source: str) -> list[Resource]:
    """Every non-empty document of ``text`` (YAML, or JSON, which YAML reads too), validated;
    ``kind: List`` items are expanded.

    Problems carry ``Location(source, document, path)`` where ``document`` counts the
    documents of the file from 1, as a user counts them: empty documents are counted too, so
    the number always points at the right ``---`` section. Malformed YAML is reported with
    its line and column (both from 1). Raises one ValidationError listing every problem of
    every document; returns nothing partial."""
    try:
        documents = list(yaml.safe_load_all(text))
    except yaml.YAMLError as err:
        mark = getattr(err, "problem_mark", None)
        where = f"line {mark.line + 1}, column {mark.column + 1}: " if mark is not None else ""
        problem = getattr(err, "problem", None) or str(err)
        raise ValidationError(
            [(Location(source=source), f"malformed YAML: {where}{problem}")]
        ) from err
    resources: list[Resource] = []
    problems: list[tuple[Location, str]] = []
    for number, doc in enumerate(documents, start=1):
        if doc is None:
            continue
        items = [doc]
        if isinstance(doc, Mapping) and doc.get("kind") == "List":
            items = list(doc.get("items") or [])
        for item in items:
            try:
                resources.append(validate(item, source=source, document=number))
            except ValidationError as err:
                problems.extend(err.problems)
    if problems:
        raise ValidationError(problems)
    return resources


def dump(resource: Resource, fmt: str = "yaml") -> str:
    """The resource as text: ``yaml`` (keys in document order) or ``json`` (indented)."""
    if fmt not in ("yaml", "json"):
        raise ValidationError([(Location(), f'unknown output format "{fmt}" (yaml or json)')])
    body = dict(resource.body)
    if fmt == "json":
        return json.dumps(body, indent=2)
    return yaml.safe_dump(body, sort_keys=False)
