"""chart-crds: the CRDs our charts ship in crds/ are installed where their controller runs, and match the
checkout's. Helm installs a chart's crds/ with the first install and never upgrades them, so after an
upgrade a cluster can serve an older schema than the chart's controller expects."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import yaml

from ..findings import Finding, Severity
from ..state import ClusterState, Json, labels_of, name_of, ref_of

CHECK = "chart-crds"
# Chart -> the `app.kubernetes.io/name` of the Deployment that needs its CRDs.
CRD_CONTROLLERS = {"neuron-ultraserver-operator": "neuron-ultraserver-operator"}


def chart_crds(charts_dir: Path) -> dict[str, Json]:
    """Each chart's crds/ files as `chart/file` -> CRD."""
    found = {}
    for chart in CRD_CONTROLLERS:
        for path in sorted((charts_dir / chart / "crds").glob("*.yaml")):
            found[f"{chart}/crds/{path.name}"] = yaml.safe_load(path.read_text(encoding="utf-8"))
    return found


def _schemas(crd: Json) -> dict[str, Json]:
    """Version name -> its schema: what a controller reads and writes by."""
    return {
        str(v.get("name")): {"schema": v.get("schema"), "subresources": v.get("subresources")}
        for v in (crd.get("spec") or {}).get("versions") or []
    }


def check_chart_crds(state: ClusterState, now: dt.datetime) -> list[Finding]:
    if state.crds is None:  # doctor may not list CRDs here
        return []
    findings = []
    live = {name_of(crd): crd for crd in state.crds}
    controllers = {labels_of(d).get("app.kubernetes.io/name"): d for d in state.deployments}
    for where, crd in state.chart_crds.items():
        chart, name = where.split("/", 1)[0], name_of(crd)
        apply = f"kubectl apply --server-side -f charts/{chart}/crds/ (Helm never upgrades a chart's crds/)"
        installed = live.get(name)
        if installed is None:
            controller = controllers.get(CRD_CONTROLLERS[chart])
            if controller is not None:
                findings.append(
                    Finding(
                        Severity.ERROR,
                        CHECK,
                        ref_of("Deployment", controller),
                        f"it runs without its CustomResourceDefinition {name} ({where}): its resources cannot be "
                        "created, and the controller fails to watch them",
                        apply,
                    )
                )
            continue
        ours, theirs = _schemas(crd), _schemas(installed)
        changed = sorted(v for v in ours.keys() | theirs.keys() if ours.get(v) != theirs.get(v))
        if changed:
            findings.append(
                Finding(
                    Severity.WARNING,
                    CHECK,
                    ref_of("CustomResourceDefinition", installed),
                    f"version(s) {', '.join(changed)} differ from the chart's {where}: the cluster validates and "
                    "prunes by its own schema",
                    apply,
                )
            )
    return findings
