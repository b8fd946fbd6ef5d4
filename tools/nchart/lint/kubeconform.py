"""kubeconform -strict over the renders, against the Kubernetes schemas kubernetes-validate ships and the
CRD schemas in ci/crd-schemas."""

from __future__ import annotations

import json
from pathlib import Path

from ..core.project import Project
from ..core.tools import run_tool
from ..errors import NchartError
from .report import LintReport, LintRun


def prepare_kubernetes_schemas(project: Project, kube_version: str) -> Path:
    """kubeconform-readable copies of the Kubernetes schemas kubernetes-validate ships.

    Its files carry `$id`s under https://kubernetes.io/api/ and refer to `/api/_definitions.json`,
    which kubeconform would fetch from the network; the copies drop the ids and refer to the
    definitions file beside them. Built once per Kubernetes version and kubernetes-validate release.
    """
    from importlib.metadata import version

    import kubernetes_validate

    major_minor = ".".join(kube_version.lstrip("v").split(".")[:2])
    name = f"v{major_minor}.0-local-strict"
    source = Path(kubernetes_validate.__file__).parent / "kubernetes-json-schema" / name
    if not source.is_dir():
        available = sorted(p.name.removesuffix("-local-strict") for p in source.parent.glob("*-local-strict"))
        raise NchartError(f"no Kubernetes schemas for {kube_version}; available: {', '.join(available)}")
    target_root = project.root / "build" / "kubeconform-schemas"
    target = target_root / name
    stamp = target / ".source"
    wanted = f"kubernetes-validate {version('kubernetes-validate')}"
    if stamp.is_file() and stamp.read_text() == wanted:
        return target_root
    target.mkdir(parents=True, exist_ok=True)
    for schema_file in source.glob("*.json"):
        schema = json.loads(schema_file.read_text(encoding="utf-8"))
        schema.pop("$id", None)
        text = json.dumps(schema).replace('"/api/_definitions.json#', '"_definitions.json#')
        (target / schema_file.name).write_text(text, encoding="utf-8")
    stamp.write_text(wanted)
    return target_root


def kubeconform_schema_locations(project: Project, kube_version: str) -> list[str]:
    k8s = prepare_kubernetes_schemas(project, kube_version)
    return [
        str(k8s)
        + "/{{ .NormalizedKubernetesVersion }}-local{{ .StrictSuffix }}/{{ .ResourceKind }}{{ .KindSuffix }}.json",
        str(project.ci_dir / "crd-schemas") + "/{{ .Group }}/{{ .ResourceKind }}_{{ .ResourceAPIVersion }}.json",
    ]


def validate_manifests(project: Project, rendered: dict[str, str], kube_version: str, report: LintReport) -> None:
    """kubeconform -strict over rendered files, against the Kubernetes and the CRD schemas."""
    if not rendered:
        return
    # Schemas exist per minor version; kubeconform looks them up by the full version.
    minor_version = ".".join(kube_version.lstrip("v").split(".")[:2]) + ".0"
    args = [project.tool("kubeconform"), "-strict", "-output", "json", "-kubernetes-version", minor_version]
    for location in kubeconform_schema_locations(project, kube_version):
        args += ["-schema-location", location]
    result = run_tool([*args, *rendered])
    try:
        resources = json.loads(result.stdout or "{}").get("resources", [])
    except json.JSONDecodeError:
        report.fail("kubeconform", "eks-neuron", "-", (result.stdout + result.stderr).strip()[:2000])
        return
    for resource in resources:
        if resource.get("status") in ("statusValid", "statusSkipped"):
            continue
        # "msg" carries the schema's own words (e.g. additional properties 'x' not allowed).
        details = resource.get("msg") or "; ".join(
            f"{e.get('path', '')}: {e.get('msg', '')}" for e in resource.get("validationErrors") or []
        )
        report.fail(
            "kubeconform",
            rendered.get(resource.get("filename", ""), resource.get("filename", "?")),
            f"{resource.get('kind')}/{resource.get('name')}",
            details,
        )
    if result.returncode != 0 and not resources:
        report.fail("kubeconform", "eks-neuron", "-", (result.stderr or result.stdout).strip()[:2000])
    report.ran("kubeconform", len(rendered))


def check(run: LintRun, rendered: dict[str, str]) -> None:
    validate_manifests(run.project, rendered, run.kube_version, run.report)
