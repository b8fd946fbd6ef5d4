"""Values layering for the umbrella chart: per-instance values, environment files, extra files and --set."""

from __future__ import annotations

import copy
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any, NamedTuple

import yaml

from ..errors import UsageError
from .catalog import InstanceType
from .project import Project
from .setvalues import parse_set, parse_set_json
from .sizing import SERVING, instance_values, plan_serving

Values = dict[str, Any]


class ValuesSource(NamedTuple):  # not a dataclass: see catalog.InstanceType
    """One layer of values and where it came from, for error messages."""

    origin: str
    values: Values
    # What the layer decided, for the user (printed by `nchart render`).
    note: str = ""


def load_values_file(path: Path) -> Values:
    return load_yaml_mapping(path, "values file")


def load_yaml_mapping(path: Path, what: str) -> Values:
    """A YAML file that holds a mapping; anything else is the user's error, naming the file (and line)."""
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise UsageError(f"{path}: {what} not found") from None
    except UnicodeDecodeError as error:
        raise UsageError(f"{path}: not UTF-8 text (byte {error.start}): expected a YAML {what}") from None
    except OSError as error:
        raise UsageError(f"{path}: cannot read {what}: {error.strerror}") from None
    try:
        loaded = yaml.load(text, Loader=getattr(yaml, "CSafeLoader", yaml.SafeLoader))
    except yaml.YAMLError as error:
        mark = getattr(error, "problem_mark", None)
        where = f" line {mark.line + 1}, column {mark.column + 1}" if mark else ""
        problem = getattr(error, "problem", None) or str(error)
        raise UsageError(f"{path}:{where}: not valid YAML: {' '.join(str(problem).split())}") from None
    if loaded is None:
        return {}
    if not isinstance(loaded, dict):
        raise UsageError(f"{path}: expected a mapping at the top level, got {type(loaded).__name__}")
    return loaded


def merge(base: Values, override: Mapping[str, Any]) -> Values:
    """Helm's merge: maps merge key by key, anything else (lists included) replaces."""
    merged = copy.deepcopy(base)
    for key, value in override.items():
        if isinstance(value, Mapping) and isinstance(merged.get(key), dict):
            merged[key] = merge(merged[key], value)
        else:
            merged[key] = copy.deepcopy(value)
    return merged


def chart_defaults(project: Project, subcharts: Iterable[str]) -> Values:
    """The umbrella's default values, with each named subchart's own defaults under it (umbrella wins)."""
    umbrella = load_values_file(project.umbrella / "values.yaml")
    for chart in subcharts:
        umbrella[chart] = merge(load_values_file(project.charts_dir / chart / "values.yaml"), umbrella.get(chart) or {})
    return umbrella


def value_sources(
    project: Project,
    instance: InstanceType | None,
    env: str | None,
    extra_files: Iterable[Path] = (),
    set_values: Iterable[str] = (),
    set_json: Iterable[str] = (),
) -> list[ValuesSource]:
    """The layers in the order they apply: instance, environment, Terraform overlay, -f files, --set-json,
    --set (helm's order: pkg/cli/values/options.go, MergeValues)."""
    layers = []
    if env is not None:
        env_file = project.existing_env_values(env)
        layers.append(ValuesSource(str(env_file.relative_to(project.root)), load_values_file(env_file)))
        generated = project.generated_values(env)
        if generated.is_file():
            layers.append(ValuesSource(str(generated.relative_to(project.root)), load_values_file(generated)))
    for path in extra_files:
        layers.append(ValuesSource(str(path), load_values_file(path)))
    json_list = list(set_json)
    if json_list:
        layers.append(ValuesSource("--set-json", parse_set_json(json_list)))
    set_list = list(set_values)
    if set_list:
        layers.append(ValuesSource("--set", parse_set(set_list)))
    if instance is None:
        return layers
    # The instance's NeuronCore count follows the logical NeuronCore config the layers ask for.
    neuron = (merged(layers).get("global") or {}).get("neuron") or {}
    instance = instance.with_lnc(neuron.get("logicalNeuronCoreConfig") if isinstance(neuron, dict) else None)
    sources = [ValuesSource(f"instance catalog ({instance.name})", instance_values(instance)), *layers]
    serving = merge(chart_defaults(project, [SERVING])[SERVING], merged(sources).get(SERVING) or {})
    if serving.get("enabled"):
        plan = plan_serving(instance, serving)
        if plan is not None:
            # Right after the instance layer: explicit values in files or --set still win.
            sources.insert(1, ValuesSource(f"{SERVING} sizing ({instance.name})", plan.values(), plan.summary()))
    return sources


def merged(sources: Iterable[ValuesSource]) -> Values:
    result: Values = {}
    for source in sources:
        result = merge(result, source.values)
    return result
