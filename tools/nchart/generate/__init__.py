"""Files generated from one source each, written by `nchart generate` and checked by `--check` (and lint):

- the Neuron instance type lists in the charts' values.yaml (and their schema enum), from catalog.yaml;
- the `global.alertLimits` defaults of the charts that read them, from the umbrella chart's values.yaml;
- each chart's values.schema.json, from the `# @schema` annotations and helm-docs comments of its
  values.yaml (helm-values-schema-json), with no key in one that is not in the other;
- each chart's README.md, from the same values.yaml (helm-docs);
- the Grafana dashboards, from generate/dashboards/ (one module per dashboard), and the fields of
  theirs that follow the alert limits (the grafana-dashboards chart's files/limit-fields.json);
- the Pod Security exceptions table in README.md, from the charts' podSecurityExceptions values;
- the umbrella chart's files/neuron-instance-types.json (device and core counts a pod may ask for, per
  instance type), which its admission policy reads, from catalog.yaml;
- the serving chart's files/node-capacity.json (CPU and memory a node has for our pods, and the
  compiler target, per instance type), which its compile Job is checked against, from catalog.yaml
  and sizing.py;
- the pod usage exporter's gRPC stubs, from the kubelet's PodResources protobuf vendored beside them;
- the umbrella chart's files/platform.json (the add-on and version that provide each API kind, for its
  install preflight) and the README's add-on table, from terraform/addons.yaml.


One step per module, registered in STEPS in the order they run."""

from __future__ import annotations

from collections.abc import Callable

from ..core.project import Project
from .alert_limits import generate_alert_limits
from .catalog_files import generate_instance_counts, generate_node_capacities
from .dashboard_files import generate_dashboards
from .files import Generated
from .instance_lists import generate_instance_lists
from .platform_files import generate_platform_files
from .pod_security_table import generate_pod_security_table
from .podresources_stubs import generate_podresources_stubs
from .readmes import generate_readmes
from .schemas import generate_schemas
from .upstream_table import generate_upstream_table

Progress = Callable[[str], None]

STEPS: dict[str, Callable[[Project, bool, Generated], None]] = {
    "instance lists": generate_instance_lists,
    "alert limits": generate_alert_limits,
    "instance counts": generate_instance_counts,
    "node capacities": generate_node_capacities,
    "values schemas": generate_schemas,
    "chart READMEs": generate_readmes,
    "dashboards": generate_dashboards,
    "Pod Security table": generate_pod_security_table,
    "official chart versions table": generate_upstream_table,
    "platform add-ons": generate_platform_files,
    "PodResources stubs": generate_podresources_stubs,
}


def generate(project: Project, check: bool = False, progress: Progress = lambda message: None) -> Generated:
    """Every generated file, in dependency order (instance lists feed the schemas and READMEs)."""
    result = Generated()
    for label, step in STEPS.items():
        progress(f"{'checking' if check else 'generating'} {label}")
        step(project, check, result)
    return result
