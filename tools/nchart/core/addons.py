"""The platform add-ons the charts rely on (terraform/addons.yaml): their versions, how terraform installs
them, and the API kinds each provides. Read by the generators (the umbrella's files/platform.json, the
README table) and by doctor."""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any

import yaml

from ..errors import ExitCode, NchartError

ADDONS_FILE = Path("terraform") / "addons.yaml"
INSTALL_KINDS = ("helm", "eks-addon")


@dataclasses.dataclass(frozen=True)
class LocalBuild:
    """Part of the add-on's controller as the local control plane runs it: built from `module` at `version`."""

    module: str
    version: str
    # binary name in bin/ -> package inside the module
    binaries: tuple[tuple[str, str], ...]
    # CRD files inside the module it watches, installed with the add-on's own
    crds: tuple[str, ...] = ()
    # Source files whose every-interface listeners (`":%d"`) the local build binds to 127.0.0.1
    loopback: tuple[str, ...] = ()
    # Go build tags
    tags: tuple[str, ...] = ()


@dataclasses.dataclass(frozen=True)
class Addon:
    name: str
    description: str
    install: str
    version: str
    provides: tuple[str, ...]
    chart: str = ""
    repository: str = ""
    namespace: str = ""
    crd_module: str = ""
    # Label sets of its controller Deployment (any one matches).
    controllers: tuple[dict[str, str], ...] = ()
    local: tuple[LocalBuild, ...] = ()

    @property
    def version_text(self) -> str:
        return self.version or "EKS default for the cluster version"


def _local_builds(path: Path, name: str, entries: Any) -> tuple[LocalBuild, ...]:
    if entries is None:
        return ()
    if not isinstance(entries, list):
        raise NchartError(f"{path}: {name}.local: expected a list of builds", ExitCode.USAGE)
    return tuple(_local_build(f"{path}: {name}.local[{index}]", entry) for index, entry in enumerate(entries))


def _local_build(where: str, entry: Any) -> LocalBuild:
    if not isinstance(entry, dict):
        raise NchartError(f"{where}: expected a mapping with module and binaries", ExitCode.USAGE)
    module, _, version = str(entry.get("module") or "").partition("@")
    if not module or not version.startswith("v"):
        raise NchartError(f"{where}.module: expected MODULE@vVERSION, got {entry.get('module')!r}", ExitCode.USAGE)
    binaries = entry.get("binaries")
    if (
        not isinstance(binaries, dict)
        or not binaries
        or not all(
            isinstance(k, str) and isinstance(v, str) and (v == "." or v.startswith("./")) for k, v in binaries.items()
        )
    ):
        raise NchartError(f"{where}.binaries: expected a mapping of binary name to . or ./package", ExitCode.USAGE)
    lists = {}
    for key in ("crds", "loopback", "tags"):
        lists[key] = entry.get(key) or []
        if not isinstance(lists[key], list) or not all(isinstance(f, str) and f and " " not in f for f in lists[key]):
            raise NchartError(f"{where}.{key}: expected a list of names without spaces", ExitCode.USAGE)
    return LocalBuild(
        module, version, tuple(binaries.items()), tuple(lists["crds"]), tuple(lists["loopback"]), tuple(lists["tags"])
    )


def _addon(path: Path, name: str, entry: Any) -> Addon:
    if not isinstance(entry, dict):
        raise NchartError(f"{path}: {name}: expected a mapping, got {type(entry).__name__}", ExitCode.USAGE)
    install = entry.get("install")
    if install not in INSTALL_KINDS:
        raise NchartError(
            f"{path}: {name}.install is {install!r}; expected one of {', '.join(INSTALL_KINDS)}", ExitCode.USAGE
        )
    # An EKS add-on may leave its version empty (EKS's default); a Helm chart is always pinned.
    required = ("description", "version", "repository", "chart", "namespace") if install == "helm" else ("description",)
    missing = [key for key in required if not entry.get(key)]
    if missing:
        raise NchartError(f"{path}: {name}: missing {', '.join(missing)}", ExitCode.USAGE)
    controllers = entry.get("controllers") or []
    if not isinstance(controllers, list) or not all(
        isinstance(c, dict) and c and all(isinstance(v, str) for v in c.values()) for c in controllers
    ):
        raise NchartError(f"{path}: {name}.controllers: expected a list of label mappings", ExitCode.USAGE)
    provides = entry.get("provides") or []
    if not isinstance(provides, list) or any(not isinstance(p, str) or p.count("/") < 1 for p in provides):
        raise NchartError(f"{path}: {name}.provides: expected a list of group/version/Kind", ExitCode.USAGE)
    return Addon(
        name=name,
        description=str(entry["description"]),
        install=str(install),
        version=str(entry.get("version") or ""),
        provides=tuple(provides),
        chart=str(entry.get("chart") or ""),
        repository=str(entry.get("repository") or ""),
        namespace=str(entry.get("namespace") or ""),
        crd_module=str((entry.get("crds") or {}).get("module") or ""),
        controllers=tuple(dict(c) for c in controllers),
        local=_local_builds(path, name, entry.get("local")),
    )


def load_addons(root: Path) -> dict[str, Addon]:
    path = root / ADDONS_FILE
    try:
        entries = yaml.safe_load(path.read_text(encoding="utf-8"))
    except (OSError, yaml.YAMLError) as error:
        raise NchartError(f"{path}: cannot read the add-on versions: {error}", ExitCode.USAGE) from None
    if not isinstance(entries, dict):
        raise NchartError(f"{path}: expected a mapping of add-ons", ExitCode.USAGE)
    return {name: _addon(path, name, entry) for name, entry in entries.items()}


def kind_providers(addons: dict[str, Addon]) -> dict[str, Addon]:
    """group/version/Kind -> the add-on that provides it."""
    return {kind: addon for addon in addons.values() for kind in addon.provides}


def local_builds(root: Path) -> list[LocalBuild]:
    """What the local control plane builds for the add-ons' controllers, in file order."""
    return [build for addon in load_addons(root).values() for build in addon.local]
