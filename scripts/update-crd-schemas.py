#!/usr/bin/env python3
"""Regenerates ci/crd-schemas/ from the CRDs the charts depend on (at the add-on versions of
terraform/addons.yaml), or writes the CRDs themselves.

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

ROOT = Path(__file__).resolve().parents[1]
# The add-on versions, written once (terraform/addons.yaml): each add-on's CRD module and files.
ADDONS = ROOT / "terraform" / "addons.yaml"


def crd_sources(kind: str) -> dict[str, list[str]]:
    """module@version -> CRD files inside it: `schemas` (kubeconform and the local control plane) or
    `cluster` (the local control plane only: with those, the CRDs the add-ons' local controllers watch)."""
    addons = yaml.safe_load(ADDONS.read_text())
    sources: dict[str, list[str]] = {}
    for addon in addons.values():
        crds = addon.get("crds") or {}
        files = list(crds.get("schemas") or [])
        if kind == "cluster":
            files += list(crds.get("cluster") or [])
        if files:
            sources[crds["module"]] = files
        for build in addon.get("local") or []:
            if kind == "cluster" and build.get("crds"):
                sources.setdefault(build["module"], []).extend(build["crds"])
    return sources


OUT = ROOT / "ci" / "crd-schemas"


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
    for module, files in crd_sources("cluster").items():
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
    sources = crd_sources("schemas")
    for stale in OUT.glob("*/*.json"):
        stale.unlink()
    for module, files in sources.items():
        root = module_dir(module)
        for relative in files:
            crd = yaml.safe_load((root / relative).read_text())
            for path, schema in convert(crd).items():
                path.parent.mkdir(parents=True, exist_ok=True)
                path.write_text(json.dumps(schema, indent=1, sort_keys=True) + "\n")
                print(f"{path.relative_to(OUT.parent.parent)}  <- {module} {relative}")
    (OUT / "SOURCES.txt").write_text("".join(f"{module}: {', '.join(files)}\n" for module, files in sources.items()))


if __name__ == "__main__":
    main()
