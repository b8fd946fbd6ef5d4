"""The platform add-ons (terraform/addons.yaml) are the one source of their versions: the CRD schemas
kubeconform uses are those of the pinned versions, every CRD kind the charts render is provided by a
listed add-on, and terraform installs each add-on behind its own switch."""

from __future__ import annotations

import importlib.util
import json
import re
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest
import yaml

from nchart.core.addons import kind_providers, load_addons
from tests.support.charts import ENVS, ROOT, render_objects

ADDONS = yaml.safe_load((ROOT / "terraform/addons.yaml").read_text())
SCHEMAS = ROOT / "ci/crd-schemas"
# API groups the API server serves itself (everything else the charts render needs a CRD).
BUILT_IN_GROUPS = {"", "apps", "batch", "policy", "rbac.authorization.k8s.io", "networking.k8s.io",
                   "scheduling.k8s.io", "admissionregistration.k8s.io", "resource.k8s.io", "autoscaling",
                   "coordination.k8s.io", "storage.k8s.io"}  # fmt: skip


def update_script() -> ModuleType:
    spec = importlib.util.spec_from_file_location("update_crd_schemas", ROOT / "scripts/update-crd-schemas.py")
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_schema_sources_are_the_pinned_add_on_versions() -> None:
    expected = {addon["crds"]["module"]: addon["crds"]["schemas"] for addon in ADDONS.values() if addon.get("crds")}
    recorded = {}
    for line in (SCHEMAS / "SOURCES.txt").read_text().splitlines():
        module, files = line.split(": ", 1)
        recorded[module] = files.split(", ")
    assert recorded == expected, "run `make crd-schemas` after changing terraform/addons.yaml"


def test_committed_schemas_are_converted_from_the_pinned_crds() -> None:
    """build/crds holds the CRDs of the pinned versions (fetched by `make cluster-tools`); converting
    them again must give exactly the committed schemas, and no schema may be left from another version."""
    crds_dir = ROOT / "build/crds"
    assert (crds_dir / ".complete").is_file(), "run `make cluster-tools` (it fetches the pinned CRDs)"
    script = update_script()
    schema_files = {Path(f).name for addon in ADDONS.values() for f in (addon.get("crds") or {}).get("schemas", [])}
    expected: dict[Path, dict[str, Any]] = {}
    for path in sorted(crds_dir.glob("*.yaml")):
        crd = yaml.safe_load(path.read_text())
        source_name = f"{crd['spec']['group']}_{crd['spec']['names']['plural']}.yaml"
        if source_name in schema_files:
            expected.update(script.convert(crd))
    assert len(expected) == len(schema_files)
    committed = {p: json.loads(p.read_text()) for p in SCHEMAS.glob("*/*.json")}
    assert set(committed) == set(expected)
    for path, schema in expected.items():
        assert committed[path] == schema, (
            f"{path.relative_to(ROOT)} is not the pinned CRD's schema: run `make crd-schemas`"
        )


@pytest.mark.parametrize("env", ENVS)
def test_every_crd_kind_the_charts_render_comes_from_an_add_on(env: str) -> None:
    providers = kind_providers(load_addons(ROOT))
    rendered = {f"{o['apiVersion']}/{o['kind']}" for o in render_objects("inf2.xlarge", env)}
    custom = {k for k in rendered if "/" in k.rsplit("/", 1)[0] and k.split("/")[0] not in BUILT_IN_GROUPS}
    assert custom <= set(providers), f"no add-on in terraform/addons.yaml provides {sorted(custom - set(providers))}"


def test_terraform_installs_every_add_on_behind_its_switch() -> None:
    code = (ROOT / "terraform/addons.tf").read_text() + (ROOT / "terraform/main.tf").read_text()
    variables = set(re.findall(r'^variable "([^"]+)"', (ROOT / "terraform/variables.tf").read_text(), re.M))
    for name, addon in ADDONS.items():
        switch = "install_" + name.replace("-", "_")
        assert switch in variables, f"terraform/variables.tf lacks {switch}"
        assert f"var.{switch}" in code, f"{switch} switches nothing"
        reference = rf'local\.addons(\.{re.escape(name)}\b|\["{re.escape(name)}"\])'
        if addon["install"] == "helm":
            assert re.search(rf"{reference}\.version", code), (
                f"{name}: no helm_release takes its version from addons.yaml"
            )
        else:
            assert re.search(reference, code), f"{name}: not installed from addons.yaml"


def test_terraform_references_resolve_offline() -> None:
    """What `terraform validate` would say of names, without the registry's providers: every var.X is a
    declared variable, every local.X is defined, every add-on looked up in addons.yaml is there, every
    resource or data source referenced is declared."""
    sources = {p.name: p.read_text() for p in (ROOT / "terraform").glob("*.tf")}
    code = "\n".join(re.sub(r"(?m)^\s*#.*$", "", text) for text in sources.values())
    variables = set(re.findall(r'^variable "([^"]+)"', code, re.M))
    assert set(re.findall(r"\bvar\.([a-z0-9_]+)", code)) <= variables
    locals_defined = set()
    for block in re.findall(r"(?ms)^locals \{\n(.*?)^\}", code):
        locals_defined |= set(re.findall(r"^  ([a-z0-9_]+)\s*=", block, re.M))
    assert set(re.findall(r"\blocal\.([a-z0-9_]+)", code)) <= locals_defined
    used_addons = set(re.findall(r'local\.addons\["([^"]+)"\]', code)) | {
        name for name in re.findall(r"local\.addons\.([a-z0-9_]+)", code)
    }
    assert used_addons <= set(ADDONS), f"not in terraform/addons.yaml: {used_addons - set(ADDONS)}"
    declared = set(re.findall(r'^(?:resource|data) "([a-z0-9_]+)" "([a-z0-9_]+)"', code, re.M))
    declared_names = {f"{kind}.{name}" for kind, name in declared}
    for kind, name in re.findall(r"\b(aws_[a-z0-9_]+|helm_release)\.([a-z0-9_]+)\b", code):
        assert f"{kind}.{name}" in declared_names, f"{kind}.{name} is referenced but not declared"
    for kind, name in re.findall(r"\bdata\.([a-z0-9_]+)\.([a-z0-9_]+)\b", code):
        assert (kind, name) in declared, f"data.{kind}.{name} is referenced but not declared"
    modules = set(re.findall(r'^module "([^"]+)"', code, re.M))
    assert set(re.findall(r"\bmodule\.([a-z0-9_]+)\.", code)) <= modules


def test_the_platform_terraform_installs_matches_the_charts_defaults() -> None:
    """What the charts assume of the platform is what terraform/ installs: the label its Prometheus selects
    by (release=<the kube-prometheus-stack release name>), the Grafana sidecar's label, label value and
    folder annotation, and the Prometheus Service KEDA queries."""
    code = (ROOT / "terraform/addons.tf").read_text()
    [release] = re.findall(r'resource "helm_release" "kube_prometheus_stack" \{.*?\n  name\s+= "([^"]+)"', code, re.S)
    umbrella = yaml.safe_load((ROOT / "charts/eks-neuron/values.yaml").read_text())
    assert umbrella["global"]["monitoring"]["labels"] == {"release": release}
    sidecar = yaml.safe_load((ROOT / "charts/grafana-dashboards/values.yaml").read_text())["sidecar"]
    setting = {
        key: re.search(rf'\n\s+{key}\s+= "([^"]+)"', code) for key in ("label", "labelValue", "folderAnnotation")
    }
    assert {key: match.group(1) for key, match in setting.items() if match} == {
        "label": sidecar["label"], "labelValue": sidecar["labelValue"], "folderAnnotation": sidecar["folderAnnotation"],
    }  # fmt: skip
    assert re.search(r'searchNamespace\s+= "ALL"', code), "the sidecar must watch the release's namespace"
    # KEDA queries that Prometheus at its Service (kube-prometheus-stack names it <release>-prometheus).
    serving = yaml.safe_load((ROOT / "charts/sd21-serving/values.yaml").read_text())
    namespace = ADDONS["kube-prometheus-stack"]["namespace"]
    address = serving["autoscaling"]["keda"]["prometheusServerAddress"]
    assert address == f"http://{release}-prometheus.{namespace}.svc:9090"
