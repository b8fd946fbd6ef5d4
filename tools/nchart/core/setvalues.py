"""helm-style --set KEY=VALUE and --set-json KEY=JSON assignments, parsed into nested values."""

from __future__ import annotations

import re
from collections.abc import Iterable
from typing import Any

import yaml

from ..errors import UsageError

Values = dict[str, Any]

_SET_KEY_PART = re.compile(r"^(?P<name>[^\[\]]+)(?:\[(?P<index>\d+)\])?$")


def split_key(key: str) -> list[str]:
    # Dots inside a key are escaped as `\.`, as in helm (e.g. nodeSelector.kubernetes\.io/os).
    return [part.replace("\0", ".") for part in key.replace("\\.", "\0").split(".")]


def _scalar(raw: str) -> Any:
    """The value as YAML types it (2, true, 1.5, text); as in helm, structure comes from the key, and a
    list from braces: `{a,b}` (each item typed the same way; `{}` is an empty list)."""
    if raw.startswith("{") and raw.endswith("}"):
        inner = raw[1:-1]
        return [_scalar(item) for item in inner.split(",")] if inner else []
    try:
        value = yaml.safe_load(raw) if raw != "" else ""
    except yaml.YAMLError:
        return raw
    return raw if isinstance(value, (dict, list)) else value


def _assign(result: Values, assignment: str, key: str, value: Any) -> None:
    """Sets one dotted key (with list indexes, `a.b[2].c`) in result, making maps and lists on the way."""
    node: Any = result
    parts = split_key(key)
    for position, part in enumerate(parts):
        match = _SET_KEY_PART.match(part)
        if not match:
            raise UsageError(f"bad --set {assignment!r}: cannot read key part {part!r}")
        name, index = match["name"], match["index"]
        last = position == len(parts) - 1
        if index is None:
            if last:
                node[name] = value
                return
            node = node.setdefault(name, {})
            if not isinstance(node, dict):
                raise UsageError(f"bad --set {assignment!r}: {name} is already set to a scalar")
            continue
        items = node.setdefault(name, [])
        if not isinstance(items, list):
            raise UsageError(f"bad --set {assignment!r}: {name} is not a list")
        slot = int(index)
        items.extend([None] * (slot + 1 - len(items)))
        if last:
            items[slot] = value
            return
        if not isinstance(items[slot], dict):
            items[slot] = {}
        node = items[slot]


def parse_set_json(assignments: Iterable[str]) -> Values:
    """helm-style --set-json KEY=JSON: the key as --set reads it, the value exactly as the JSON says
    (what --set cannot write: strings that look like numbers, text with commas, lists of objects)."""
    import json

    result: Values = {}
    for assignment in assignments:
        key, sep, raw = assignment.partition("=")
        if not sep or not key.strip():
            raise UsageError(f"bad --set-json {assignment!r}: expected KEY=JSON, e.g. sd21-serving.tolerations=[]")
        try:
            value = json.loads(raw)
        except json.JSONDecodeError as error:
            raise UsageError(
                f"bad --set-json {assignment!r}: the value is not JSON ({error.msg} at {error.pos})"
            ) from None
        _assign(result, assignment, key.strip(), value)
    return result


def parse_set(assignments: Iterable[str]) -> Values:
    """helm-style --set KEY=VALUE (dotted keys, list indexes, YAML-typed scalars) into nested values."""
    result: Values = {}
    for assignment in assignments:
        key, sep, raw = assignment.partition("=")
        if not sep or not key.strip():
            raise UsageError(f"bad --set {assignment!r}: expected KEY=VALUE, e.g. my-scheduler.replicaCount=2")
        _assign(result, assignment, key.strip(), _scalar(raw))
    return result
