"""Values layering for the umbrella chart: per-instance values, environment files, extra files and --set."""

from __future__ import annotations

import copy
import dataclasses
import difflib
import json
import re
from pathlib import Path
from typing import Any, Iterable, Mapping

import yaml

from .catalog import InstanceType
from .errors import UsageError
from .project import Project

Values = dict[str, Any]

# neuron-monitor emits a fixed set of series per NeuronCore; its memory grows with the core count.
MONITOR_BASE_MEMORY_MI = 128
MONITOR_MEMORY_PER_CORE_MI = 4
MONITOR_BASE_CPU_M = 100
MONITOR_CPU_PER_CORE_M = 5


@dataclasses.dataclass(frozen=True)
class ValuesSource:
    """One layer of values and where it came from, for error messages."""

    origin: str
    values: Values
    # What the layer decided, for the user (printed by `nchart render`).
    note: str = ""


def load_values_file(path: Path) -> Values:
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise UsageError(f"{path}: values file not found") from None
    except OSError as error:
        raise UsageError(f"{path}: cannot read values file: {error.strerror}") from None
    try:
        loaded = yaml.load(text, Loader=getattr(yaml, "CSafeLoader", yaml.SafeLoader))
    except yaml.YAMLError as error:
        mark = getattr(error, "problem_mark", None)
        where = f" line {mark.line + 1}, column {mark.column + 1}" if mark else ""
        problem = getattr(error, "problem", None) or str(error)
        raise UsageError(f"{path}:{where}: not valid YAML: {problem}") from None
    if loaded is None:
        return {}
    if not isinstance(loaded, dict):
        raise UsageError(f"{path}: expected a mapping of values at the top level, got {type(loaded).__name__}")
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


_SET_KEY_PART = re.compile(r"^(?P<name>[^\[\]]+)(?:\[(?P<index>\d+)\])?$")


def _split_key(key: str) -> list[str]:
    # Dots inside a key are escaped as `\.`, as in helm (e.g. nodeSelector.kubernetes\.io/os).
    return [part.replace("\0", ".") for part in key.replace("\\.", "\0").split(".")]


def parse_set(assignments: Iterable[str]) -> Values:
    """helm-style --set KEY=VALUE (dotted keys, list indexes, YAML-typed scalars) into nested values."""
    result: Values = {}
    for assignment in assignments:
        key, sep, raw = assignment.partition("=")
        if not sep or not key.strip():
            raise UsageError(f"bad --set {assignment!r}: expected KEY=VALUE, e.g. my-scheduler.replicaCount=2")
        try:
            value = yaml.safe_load(raw) if raw != "" else ""
        except yaml.YAMLError:
            value = raw
        if isinstance(value, (dict, list)):
            value = raw  # as in helm, --set takes scalars; structure comes from the key
        node: Any = result
        parts = _split_key(key.strip())
        for position, part in enumerate(parts):
            match = _SET_KEY_PART.match(part)
            if not match:
                raise UsageError(f"bad --set {assignment!r}: cannot read key part {part!r}")
            name, index = match["name"], match["index"]
            last = position == len(parts) - 1
            if index is None:
                if last:
                    node[name] = value
                else:
                    child = node.setdefault(name, {})
                    if not isinstance(child, dict):
                        raise UsageError(f"bad --set {assignment!r}: {name} is already set to a scalar")
                    node = child
                continue
            items = node.setdefault(name, [])
            if not isinstance(items, list):
                raise UsageError(f"bad --set {assignment!r}: {name} is not a list")
            position_in_list = int(index)
            while len(items) <= position_in_list:
                items.append(None)
            if last:
                items[position_in_list] = value
            else:
                if not isinstance(items[position_in_list], dict):
                    items[position_in_list] = {}
                node = items[position_in_list]
    return result


def instance_values(instance: InstanceType) -> Values:
    """Chart values that follow from the instance type alone."""
    memory_request = MONITOR_BASE_MEMORY_MI + MONITOR_MEMORY_PER_CORE_MI * instance.cores
    cpu_request = MONITOR_BASE_CPU_M + MONITOR_CPU_PER_CORE_M * instance.cores
    return {
        "global": {"neuron": {"instanceTypes": [instance.name], "instance": instance.as_values()}},
        "neuron-monitor": {
            "resources": {
                "requests": {"cpu": f"{cpu_request}m", "memory": f"{memory_request}Mi"},
                "limits": {"cpu": f"{cpu_request * 5}m", "memory": f"{memory_request * 2}Mi"},
            }
        },
    }


# What a Neuron node keeps for the kubelet, system DaemonSets (device plugin, monitor, NPD, CNI) and
# the OS: a whole vCPU plus 3% of the rest, 2 GiB plus 5% of memory.
NODE_RESERVED_VCPU_BASE = 1.0
NODE_RESERVED_VCPU_SHARE = 0.03
NODE_RESERVED_MEMORY_GIB_BASE = 2.0
NODE_RESERVED_MEMORY_SHARE = 0.05
SERVING = "sd21-serving"


@dataclasses.dataclass(frozen=True)
class ServingPlan:
    """How sd21-serving replicas fill one node of the target instance type."""

    instance: InstanceType
    cores_per_replica: int
    resource: str
    replicas_per_node: int
    cpu_millicores: int
    memory_mib: int

    @property
    def resource_request(self) -> dict[str, int]:
        if self.resource == "neuron":
            return {"aws.amazon.com/neuron": self.cores_per_replica // self.instance.cores_per_chip}
        return {"aws.amazon.com/neuroncore": self.cores_per_replica}

    def summary(self) -> str:
        (name, count), = self.resource_request.items()
        return (
            f"{SERVING} on {self.instance.name}: {self.replicas_per_node} replica(s) per node "
            f"({self.cores_per_replica} of {self.instance.cores} NeuronCores each, requested as {name}: {count}; "
            f"{self.cpu_millicores}m CPU and {self.memory_mib}Mi memory each)"
        )

    def values(self) -> Values:
        resources = {"requests": {"cpu": f"{self.cpu_millicores}m", "memory": f"{self.memory_mib}Mi"},
                     "limits": {"memory": f"{self.memory_mib}Mi"}}
        return {SERVING: {
            "replicasPerNode": self.replicas_per_node,
            "neuron": {"coresPerDevice": self.instance.cores_per_chip},
            "nodeSelector": {"node.kubernetes.io/instance-type": self.instance.name},
            "resources": resources,
        }}


def plan_serving(instance: InstanceType, serving: Mapping[str, Any]) -> ServingPlan:
    """Replicas per node and per-replica resources for the serving values in effect; no overcommit."""
    if instance.core_version == "NC-v1":
        raise UsageError(
            f"{SERVING} needs NeuronCore-v2 or later (torch-neuronx); {instance.name} has {instance.core_version} cores. "
            f"Render without it: --set {SERVING}.enabled=false"
        )
    neuron = serving.get("neuron") or {}
    cores = neuron.get("coresPerReplica", 2)
    resource = neuron.get("resource", "neuroncore")
    where = f"{SERVING}.neuron.coresPerReplica"
    if not isinstance(cores, int) or isinstance(cores, bool) or cores < 1:
        raise UsageError(f"{where} must be a whole number of NeuronCores >= 1, got {cores!r}")
    if cores > instance.cores:
        raise UsageError(f"{where}={cores} does not fit {instance.name}, which has {instance.cores} NeuronCores")
    if resource == "neuron":
        if cores % instance.cores_per_chip:
            raise UsageError(
                f"{where}={cores} is not a whole number of {instance.name} devices ({instance.cores_per_chip} cores each); "
                f"use a multiple of {instance.cores_per_chip} or {SERVING}.neuron.resource=neuroncore"
            )
        devices = cores // instance.cores_per_chip
        if instance.allowed_device_counts and devices not in instance.allowed_device_counts:
            allowed = ", ".join(map(str, instance.allowed_device_counts))
            raise UsageError(f"{instance.name} pods take {allowed} devices; {where}={cores} means {devices}")
    elif resource != "neuroncore":
        raise UsageError(f"{SERVING}.neuron.resource must be neuroncore or neuron, got {resource!r}")
    replicas = instance.cores // cores
    vcpu = instance.vcpu - NODE_RESERVED_VCPU_BASE - NODE_RESERVED_VCPU_SHARE * instance.vcpu
    memory_gib = instance.host_memory_gib - NODE_RESERVED_MEMORY_GIB_BASE - NODE_RESERVED_MEMORY_SHARE * instance.host_memory_gib
    cpu_millicores = int(vcpu * 1000 / replicas) // 100 * 100
    memory_mib = int(memory_gib * 1024 / replicas) // 256 * 256
    return ServingPlan(instance, cores, resource, replicas, cpu_millicores, memory_mib)


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
) -> list[ValuesSource]:
    """The layers in the order they apply: instance, environment, Terraform overlay, -f files, --set."""
    sources = []
    if instance is not None:
        sources.append(ValuesSource(f"instance catalog ({instance.name})", instance_values(instance)))
    if env is not None:
        env_file = project.env_values(env)
        if not env_file.is_file():
            known = ", ".join(project.environments()) or "none"
            raise UsageError(f"unknown environment {env!r}: {env_file} does not exist (known: {known})")
        sources.append(ValuesSource(str(env_file.relative_to(project.root)), load_values_file(env_file)))
        generated = project.generated_values(env)
        if generated.is_file():
            sources.append(ValuesSource(str(generated.relative_to(project.root)), load_values_file(generated)))
    for path in extra_files:
        sources.append(ValuesSource(str(path), load_values_file(path)))
    set_list = list(set_values)
    if set_list:
        sources.append(ValuesSource("--set", parse_set(set_list)))
    if instance is not None:
        serving = merge(chart_defaults(project, [SERVING])[SERVING], merged(sources).get(SERVING) or {})
        if serving.get("enabled"):
            plan = plan_serving(instance, serving)
            # Right after the instance layer: explicit values in files or --set still win.
            sources.insert(1, ValuesSource(f"{SERVING} sizing ({instance.name})", plan.values(), plan.summary()))
    return sources


def merged(sources: Iterable[ValuesSource]) -> Values:
    result: Values = {}
    for source in sources:
        result = merge(result, source.values)
    return result


# --- schema checks with the file and key of each problem -------------------------------------


def _drop_required(schema: Any) -> Any:
    """A layer need not be complete: the chart defaults fill the rest."""
    if isinstance(schema, dict):
        return {k: _drop_required(v) for k, v in schema.items() if k != "required"}
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
    return f"{path or '(top level)'}: {error.message}"


def check_sources(project: Project, sources: Iterable[ValuesSource]) -> list[str]:
    """Problems found in each layer, as 'origin: key: what is wrong' lines."""
    import jsonschema  # imported here: only checks pay for it

    validator_class = jsonschema.validators.validator_for({})
    validator = validator_class(_drop_required(combined_schema(project)))
    problems = []
    for source in sources:
        for error in sorted(validator.iter_errors(source.values), key=lambda e: list(map(str, e.absolute_path))):
            for line in _describe(error).splitlines():
                problems.append(f"{source.origin}: {line}")
    return problems
