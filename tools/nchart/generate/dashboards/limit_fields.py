"""Which fields of the dashboards' JSON follow which alert limit, found by building the dashboards
again with each limit moved and comparing: a threshold step, an axis soft maximum (a multiple of the
limit), a query that draws the limit as a line (the limit's number inside the expression). The
grafana-dashboards chart reads the result (files/limit-fields.json) and rewrites those fields from
`global.alertLimits`, so that an install that overrides a limit sees it on the dashboards too. A
field that does not follow its limit in one of the ways above is refused here, at generation, rather
than drawn wrong at install."""

from __future__ import annotations

import dataclasses
import json
import math
from collections.abc import Callable, Iterator
from typing import Any

from ...errors import NchartError
from .spec import ALERT_LIMIT_KEYS, AlertLimits, DashboardSpec

# Two values no dashboard uses for anything else, so that a field that moves with them moves because
# of the limit. Two, so that a field's dependence is seen to be a multiple, not a coincidence.
PROBES = (0.0137, 0.0271)

Path = tuple[str | int, ...]


def _leaves(node: Any, path: Path = ()) -> Iterator[tuple[Path, Any]]:
    if isinstance(node, dict):
        for key in sorted(node):
            yield from _leaves(node[key], (*path, key))
    elif isinstance(node, list):
        for index, item in enumerate(node):
            yield from _leaves(item, (*path, index))
    else:
        yield path, node


def _go_number(value: float) -> str:
    """value as Helm's printf "%v" writes a float64 (and Python's :g, for the values a limit takes)."""
    return f"{value:g}"


def _dependence(path: Path, limit: str, values: tuple[Any, ...], limit_values: tuple[float, ...]) -> dict[str, Any]:
    """How the field at path follows the limit: {"scale": k} for value = k * limit, {"format": f} for a
    string with the limit's number in it. values[i] is the field when the limit is limit_values[i]."""
    where = f"dashboard field {'/'.join(map(str, path))} (limit {limit})"
    if all(isinstance(value, (int, float)) and not isinstance(value, bool) for value in values):
        scale = float(f"{values[1] / limit_values[1]:.6g}")
        if not all(
            math.isclose(value, scale * given, rel_tol=1e-9) for value, given in zip(values, limit_values, strict=True)
        ):
            raise NchartError(f"{where} moves with the limit but is not a multiple of it: {values} for {limit_values}")
        return {"scale": scale}
    if all(isinstance(value, str) for value in values):
        probe_text = _go_number(limit_values[1])
        if values[1].count(probe_text) != 1:
            raise NchartError(f"{where}: the limit's number is not in the text once: {values[1]!r}")
        template = values[1].replace("%", "%%").replace(probe_text, "%v")
        for value, given in zip(values, limit_values, strict=True):
            if template.replace("%v", _go_number(given)).replace("%%", "%") != value:
                raise NchartError(f"{where} does not carry the limit as its number: {value!r}")
        return {"format": template}
    raise NchartError(f"{where} changes type with the limit: {values}")


def limit_fields(limits: AlertLimits, specs_for: Callable[[AlertLimits], tuple[DashboardSpec, ...]]) -> dict[str, Any]:
    """{"limits": the values the files were generated with, "fields": {file name: [{"path", "limit",
    "scale" | "format"}]}}, from the dashboards specs_for builds."""
    from .builder import build

    def dashboards(given: AlertLimits) -> dict[str, dict[Path, Any]]:
        return {f"{spec.uid}.json": dict(_leaves(build(spec))) for spec in specs_for(given)}

    base = dashboards(limits)
    fields: dict[str, dict[Path, dict[str, Any]]] = {name: {} for name in base}
    for field, key in ALERT_LIMIT_KEYS.items():
        probed = [dashboards(dataclasses.replace(limits, **{field: probe})) for probe in PROBES]
        limit_values = (getattr(limits, field), *PROBES)
        for name, leaves in base.items():
            for path, value in leaves.items():
                seen = (value, *(dashboard[name].get(path) for dashboard in probed))
                if len({json.dumps(item) for item in seen}) == 1:
                    continue
                if path in fields[name]:
                    raise NchartError(f"{name}: field {'/'.join(map(str, path))} follows two limits")
                fields[name][path] = {"path": list(path), "limit": key, **_dependence(path, key, seen, limit_values)}
            for dashboard in probed:
                if dashboard[name].keys() != leaves.keys():
                    raise NchartError(f"{name}: moving {key} changes the dashboard's shape, not only its numbers")
    return {
        "limits": {key: getattr(limits, field) for field, key in ALERT_LIMIT_KEYS.items()},
        "fields": {name: [found[path] for path in sorted(found, key=str)] for name, found in fields.items() if found},
    }
