"""Values layers checked against the chart schemas, each problem named by its layer (file) and key."""

from __future__ import annotations

import difflib
import json
import re
from collections.abc import Iterable
from typing import Any

from .formats import FORMAT_WORDS, PRINTABLE_PATTERN, format_named
from .project import Project
from .values import ValuesSource


def _drop_required(schema: Any) -> Any:
    """A layer need not be complete: the chart defaults fill the rest of an object. A list, though,
    replaces the one below it whole, so its items (and the Kubernetes definitions they refer to) keep
    what they require."""
    if isinstance(schema, dict):
        return {k: v if k in ("items", "$defs") else _drop_required(v) for k, v in schema.items() if k != "required"}
    if isinstance(schema, list):
        return [_drop_required(v) for v in schema]
    return schema


def combined_schema(project: Project) -> dict[str, Any]:
    """The umbrella schema with each subchart section checked by that subchart's own schema."""
    from .chartdeps import local_dependencies

    umbrella: dict[str, Any] = json.loads((project.umbrella / "values.schema.json").read_text(encoding="utf-8"))
    for chart in local_dependencies(project.umbrella):
        schema_path = chart / "values.schema.json"
        if schema_path.is_file():
            sub = json.loads(schema_path.read_text(encoding="utf-8"))
            sub.pop("$schema", None)
            # The Kubernetes definitions a subchart bundles, referred to from the root (`#/$defs/...`).
            umbrella.setdefault("$defs", {}).update(sub.pop("$defs", {}))
            umbrella["properties"][chart.name] = sub
    return umbrella


def _describe(error: Any) -> str:
    path = ".".join(str(p) for p in error.absolute_path)
    if error.validator == "additionalProperties":
        allowed = sorted(error.schema.get("properties", {}))
        unexpected = sorted(set(error.instance) - set(allowed))
        messages = []
        for key in unexpected:
            where = f"{path}.{key}" if path else key
            close = difflib.get_close_matches(key, allowed, n=1)
            hint = f" (did you mean {close[0]!r}?)" if close else ""
            messages.append(f"{where}: unknown key{hint}; expected one of: {', '.join(allowed)}")
        return "\n".join(messages)
    if error.validator == "pattern" and error.validator_value == PRINTABLE_PATTERN:
        bad = next(c for c in error.instance if re.fullmatch(PRINTABLE_PATTERN, c) is None)
        return f"{path}: holds the control character U+{ord(bad):04X}; values must be printable text"
    named = format_named(error.validator_value) if error.validator == "pattern" else None
    if named:
        return f"{path}: {error.instance!r} is not {FORMAT_WORDS[named]}"
    return f"{path or '(top level)'}: {error.message}"


def _go_pattern(validator: Any, pattern: str, instance: Any, schema: dict[str, Any]) -> Iterable[Any]:
    """`pattern` as helm's Go regexp reads it: \\s, \\d, \\w and \\b are ASCII there (RE2), where Python's
    re also takes other Unicode spaces, digits and letters; so a value helm refuses is refused here too."""
    from jsonschema import ValidationError

    if validator.is_type(instance, "string") and not re.search(pattern, instance, re.ASCII):
        yield ValidationError(f"{instance!r} does not match {pattern!r}")


def check_sources(project: Project, sources: Iterable[ValuesSource]) -> list[str]:
    """Problems found in each layer, as 'origin: key: what is wrong' lines."""
    import jsonschema  # imported here: only checks pay for it

    schema = _drop_required(combined_schema(project))
    draft = jsonschema.validators.validator_for(schema)  # the draft the schemas declare (7)
    validator = jsonschema.validators.extend(draft, {"pattern": _go_pattern})(schema)  # type: ignore[no-untyped-call]
    problems = []
    for source in sources:
        for error in sorted(validator.iter_errors(source.values), key=lambda e: list(map(str, e.absolute_path))):
            for line in _describe(error).splitlines():
                problems.append(f"{source.origin}: {line}")
    return problems
