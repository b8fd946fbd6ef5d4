#!/usr/bin/env python3
"""Regenerates ci/crd-schemas/ from the CRDs the charts depend on, or writes the CRDs themselves.

The CRDs come from the upstream Go modules (fetched with `go mod download` from the Go module
proxy); each CRD version becomes a strict JSON schema that kubeconform reads at
ci/crd-schemas/<group>/<kind>_<version>.json. The output is committed; run this only to move to
new upstream versions.

With `--crds DIR` it writes the same CRDs, ready to install into the local control plane, to DIR
instead: served versions the charts use only (Karpenter's v1beta1 and its conversion webhook dropped,
since no webhook runs there). These are not committed; `make cluster-tools` writes them to build/crds.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import yaml

# module@version -> CRD files inside the module
SOURCES = {
    "github.com/prometheus-operator/prometheus-operator@v0.85.0": [
        "example/prometheus-operator-crd/monitoring.coreos.com_servicemonitors.yaml",
        "example/prometheus-operator-crd/monitoring.coreos.com_podmonitors.yaml",
        "example/prometheus-operator-crd/monitoring.coreos.com_prometheusrules.yaml",
    ],
    # Newer provider releases need a newer Go than the toolchain here; v1.0 is the karpenter v1 API.
    "github.com/aws/karpenter-provider-aws@v1.0.8": [
        "pkg/apis/crds/karpenter.sh_nodepools.yaml",
        "pkg/apis/crds/karpenter.k8s.aws_ec2nodeclasses.yaml",
    ],
    "github.com/kedacore/keda/v2@v2.18.0": ["config/crd/bases/keda.sh_scaledobjects.yaml"],
}

OUT = Path(__file__).resolve().parents[1] / "ci" / "crd-schemas"


def module_dir(module: str) -> Path:
    result = subprocess.run(["go", "mod", "download", "-json", module], capture_output=True, text=True, check=False)
    info = json.loads(result.stdout or "{}")
    if result.returncode != 0 or "Dir" not in info:
        sys.exit(f"go mod download {module} failed: {info.get('Error') or result.stderr.strip()}")
    return Path(info["Dir"])


def strict(schema: object) -> object:
    """Disallows keys the CRD does not declare, except where it preserves unknown fields."""
    if isinstance(schema, list):
        return [strict(item) for item in schema]
    if not isinstance(schema, dict):
        return schema
    result = {key: strict(value) for key, value in schema.items()}
    if (
        "properties" in result
        and "additionalProperties" not in result
        and not result.get("x-kubernetes-preserve-unknown-fields")
    ):
        result["additionalProperties"] = False
    return result


def convert(crd: dict) -> dict[Path, dict]:
    group = crd["spec"]["group"]
    kind = crd["spec"]["names"]["kind"].lower()
    schemas = {}
    for version in crd["spec"]["versions"]:
        schema = strict(version["schema"]["openAPIV3Schema"])
        assert isinstance(schema, dict)
        properties = schema.setdefault("properties", {})
        # metadata is validated by the API server, not by the CRD schema.
        properties["metadata"] = {"type": "object"}
        properties["apiVersion"] = {"type": "string", "enum": [f"{group}/{version['name']}"]}
        properties["kind"] = {"type": "string", "enum": [crd["spec"]["names"]["kind"]]}
        schema["$schema"] = "http://json-schema.org/draft-07/schema#"
        schemas[OUT / group / f"{kind}_{version['name']}.json"] = schema
    return schemas


def installable(crd: dict) -> dict:
    """The CRD with only its storage version, so the API server needs no conversion webhook."""
    versions = [v for v in crd["spec"]["versions"] if v.get("storage")]
    crd["spec"]["versions"] = versions
    crd["spec"]["conversion"] = {"strategy": "None"}
    crd["metadata"] = {"name": crd["metadata"]["name"], "labels": {"app.kubernetes.io/part-of": "eks-neuron-local"}}
    crd.pop("status", None)
    return crd


def write_crds(out: Path) -> None:
    out.mkdir(parents=True, exist_ok=True)
    for module, files in SOURCES.items():
        root = module_dir(module)
        for relative in files:
            crd = installable(yaml.safe_load((root / relative).read_text()))
            path = out / f"{crd['metadata']['name']}.yaml"
            path.write_text(yaml.safe_dump(crd, sort_keys=False))
            print(f"{path}  <- {module} {relative}")


def main() -> None:
    if len(sys.argv) == 3 and sys.argv[1] == "--crds":
        write_crds(Path(sys.argv[2]).resolve())
        return
    if len(sys.argv) > 1:
        sys.exit(f"usage: {sys.argv[0]} [--crds DIR]")
    for module, files in SOURCES.items():
        root = module_dir(module)
        for relative in files:
            crd = yaml.safe_load((root / relative).read_text())
            for path, schema in convert(crd).items():
                path.parent.mkdir(parents=True, exist_ok=True)
                path.write_text(json.dumps(schema, indent=1, sort_keys=True) + "\n")
                print(f"{path.relative_to(OUT.parent.parent)}  <- {module} {relative}")
    (OUT / "SOURCES.txt").write_text("".join(f"{module}: {', '.join(files)}\n" for module, files in SOURCES.items()))


if __name__ == "__main__":
    main()
