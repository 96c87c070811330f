"""L2: Helm values: ``--set`` parsing with Helm's semantics, merging, and leaf paths.

This follows Helm's ``pkg/strvals`` and ``pkg/cli/values``: ``--set a.b=c,d[0]=e`` (nested keys,
comma-separated assignments, ``[i]`` list indices, ``{x,y}`` list literals, ``\\`` escaping
any character, ``true``/``false``/``null``/integers typed unless ``--set-string``), each
expression parsed *into* the values merged so far; values files deep-merged left to right
(maps merge, everything else replaces); the result coalesced over the chart defaults, where a
``null`` deletes the default. Values are plain dicts/lists/scalars; nothing here does I/O.
"""

from __future__ import annotations

import copy
import re
from collections.abc import Iterator, Mapping
from typing import Any

from pylium.base.errors import ConfigError

Path = tuple[str | int, ...]

MAX_INDEX = 65536  # Helm's strvals.MaxIndex
MAX_NESTED_NAME_LEVEL = 30  # Helm's strvals.MaxNestedNameLevel
_EOF = ""
_GO_INT = re.compile(r"[+-]?[0-9]+")


class _Scanner:
    def __init__(self, text: str) -> None:
        self.text = text
        self.pos = 0

    def read(self) -> str:
        if self.pos >= len(self.text):
            return _EOF
        ch = self.text[self.pos]
        self.pos += 1
        return ch

    def unread(self) -> None:
        self.pos -= 1

    def until(self, stop: str) -> tuple[str, str]:
        """Characters up to one of ``stop`` (consumed, returned second; "" at the end)."""
        out: list[str] = []
        while True:
            ch = self.read()
            if ch == _EOF or ch in stop:
                return "".join(out), ch
            if ch == "\\":
                nxt = self.read()
                if nxt == _EOF:
                    return "".join(out), _EOF
                out.append(nxt)
            else:
                out.append(ch)


def typed_value(raw: str, as_string: bool) -> Any:
    """Helm's ``typedVal``: true/false/null (any case), ints not starting with 0, else str."""
    if as_string:
        return raw
    low = raw.lower()
    if low == "true":
        return True
    if low == "false":
        return False
    if low == "null":
        return None
    if raw == "0":
        return 0
    if raw and raw[0] != "0" and _GO_INT.fullmatch(raw):
        value = int(raw, 10)
        if -(2**63) <= value < 2**63:  # strconv.ParseInt(val, 10, 64)
            return value
    return raw


class _NotList(Exception):
    pass


class _Parser:
    def __init__(self, expression: str, as_string: bool) -> None:
        self.sc = _Scanner(expression)
        self.expression = expression
        self.as_string = as_string

    def error(self, message: str) -> ValueError:
        return ValueError(message)

    def parse(self, data: dict[str, Any]) -> None:
        while self.key(data, 0):
            pass

    def key(self, data: dict[str, Any], level: int) -> bool:
        """Parse one assignment into ``data``; False at the end of the expression."""
        name, last = self.sc.until("=[,.")
        if last == _EOF:
            if name:
                raise self.error(f'key "{name}" has no value')
            return False
        if last == "[":
            index = self.index()
            current = data.get(name, [])
            if not isinstance(current, list):
                raise self.error(f'key "{name}" is not a list')
            _set(data, name, self.list_item(current, index, level))
            return True
        if last == "=":
            _set(data, name, self.value())
            return self.sc.pos <= len(self.sc.text)
        if last == ",":
            raise self.error(f'key "{name}" has no value (cannot end with ,)')
        # last == "."
        level += 1
        if level > MAX_NESTED_NAME_LEVEL:
            raise self.error(f"value name nested level is greater than {MAX_NESTED_NAME_LEVEL}")
        inner = data.get(name, {})
        if not isinstance(inner, dict):
            raise self.error(f'key "{name}" is not a map')
        more = self.key(inner, level)
        if not inner:
            raise self.error(f'key map "{name}" has no value')
        _set(data, name, inner)
        return more

    def value(self) -> Any:
        try:
            return self.value_list()
        except _NotList:
            raw, _ = self.sc.until(",")
            return typed_value(raw, self.as_string)

    def value_list(self) -> list[Any]:
        first = self.sc.read()
        if first == _EOF:
            raise _NotList  # "a=" at the very end: empty string, like Helm
        if first != "{":
            self.sc.unread()
            raise _NotList
        items: list[Any] = []
        while True:
            raw, last = self.sc.until(",}")
            if last == _EOF:
                raise self.error("list must terminate with '}'")
            items.append(typed_value(raw, self.as_string))
            if last == "}":
                if self.sc.read() not in (",", _EOF):
                    self.sc.unread()
                return items

    def index(self) -> int:
        raw, last = self.sc.until("]")
        if last != "]":
            raise self.error("error parsing index: missing ']'")
        try:
            index = int(raw)
        except ValueError:
            raise self.error(f'error parsing index: "{raw}" is not an integer') from None
        if index < 0:
            raise self.error(f"negative {index} index not allowed")
        if index > MAX_INDEX:
            raise self.error(
                f"index of {index} is greater than maximum supported index {MAX_INDEX}"
            )
        return index

    def list_item(self, items: list[Any], index: int, level: int) -> list[Any]:
        rest, last = self.sc.until("[.=")
        if rest:
            raise self.error(f'unexpected data at end of array index: "{rest}"')
        if last == _EOF:
            raise self.error("unexpected end after array index")
        if last == "=":
            return _set_index(items, index, self.value())
        if last == "[":
            nxt = self.index()
            current = items[index] if index < len(items) else None
            nested = current if isinstance(current, list) else []
            return _set_index(items, index, self.list_item(nested, nxt, level))
        current = items[index] if index < len(items) else None
        inner = current if isinstance(current, dict) else {}
        self.key(inner, level)
        return _set_index(items, index, inner)


def _set(data: dict[str, Any], name: str, value: Any) -> None:
    if name:
        data[name] = value


def _set_index(items: list[Any], index: int, value: Any) -> list[Any]:
    if index >= len(items):
        items = items + [None] * (index + 1 - len(items))
    items[index] = value
    return items


def parse_set_into(
    values: dict[str, Any], expression: str, *, as_string: bool = False, source: str = "--set"
) -> None:
    """Parse one ``--set`` (or ``--set-string``) expression into ``values`` (mutated)."""
    try:
        _Parser(expression, as_string).parse(values)
    except ValueError as err:
        raise ConfigError(
            expression, f"failed parsing {source} data: {err}", source=source
        ) from None


def parse_set(expression: str, *, as_string: bool = False) -> dict[str, Any]:
    """One ``--set`` expression as a fresh values tree."""
    out: dict[str, Any] = {}
    parse_set_into(out, expression, as_string=as_string)
    return out


def merge(base: Mapping[str, Any], override: Mapping[str, Any]) -> dict[str, Any]:
    """Helm's ``mergeMaps``: maps merge recursively, anything else in ``override`` replaces."""
    out = dict(base)
    for key, value in override.items():
        if isinstance(value, Mapping) and isinstance(out.get(key), Mapping):
            out[key] = merge(out[key], value)
        else:
            out[key] = copy.deepcopy(value)
    return out


def coalesce(defaults: Mapping[str, Any], user: Mapping[str, Any]) -> dict[str, Any]:
    """User values over chart defaults; a ``None`` in ``user`` deletes the default."""
    out = copy.deepcopy(dict(defaults))
    for key, value in user.items():
        if value is None:
            out.pop(key, None)
        elif isinstance(value, Mapping) and isinstance(out.get(key), Mapping):
            out[key] = coalesce(out[key], value)
        elif isinstance(value, Mapping):
            out[key] = coalesce({}, value)
        else:
            out[key] = copy.deepcopy(value)
    return out


def leaf_paths(tree: Any, prefix: Path = ()) -> Iterator[tuple[Path, Any]]:
    """(path, value) for every non-container value, and for empty maps/lists and None."""
    if isinstance(tree, Mapping) and tree:
        for key, value in tree.items():
            yield from leaf_paths(value, (*prefix, str(key)))
    elif isinstance(tree, list) and tree:
        for index, value in enumerate(tree):
            yield from leaf_paths(value, (*prefix, index))
    elif prefix:
        yield prefix, tree


def get(tree: Any, path: str | Path) -> Any:
    """The value at a dotted path (``a.b``) or path tuple; None when absent."""
    parts: Path = tuple(path.split(".")) if isinstance(path, str) else path
    node = tree
    for part in parts:
        if isinstance(part, int) and isinstance(node, list) and part < len(node):
            node = node[part]
        elif isinstance(part, str) and isinstance(node, Mapping):
            node = node.get(part)
        else:
            return None
    return node


def format_path(path: Path) -> str:
    """``a.b[0].c``, with ``.``, ``[``, ``=``, ``,`` and ``\\`` escaped in key names."""
    out = ""
    for part in path:
        if isinstance(part, int):
            out += f"[{part}]"
        else:
            escaped = "".join("\\" + ch if ch in ".[=,\\" else ch for ch in part)
            out += f".{escaped}" if out else escaped
    return out


def format_set(path: Path, value: Any) -> str:
    """A ``--set`` expression that sets ``path`` to ``value`` (scalar or list of scalars)."""

    def scalar(v: Any) -> str:
        if v is None:
            return "null"
        if isinstance(v, bool):
            return "true" if v else "false"
        text = str(v)
        return "".join("\\" + ch if ch in ",\\{}" else ch for ch in text)

    if isinstance(value, list):
        return f"{format_path(path)}={{{','.join(scalar(v) for v in value)}}}"
    return f"{format_path(path)}={scalar(value)}"
