"""Where the charts, values and tools of an eks-neuron checkout are."""

from __future__ import annotations

import functools
import os
from pathlib import Path

from ..errors import ExitCode, NchartError

UMBRELLA = "eks-neuron"


class Project:
    """An eks-neuron checkout, by its root. A plain class, not a dataclass: `nchart render` starts helm
    right after finding the project, and the dataclasses module (with inspect) would cost it ~10 ms."""

    __slots__ = ("root",)
    root: Path

    def __init__(self, root: Path) -> None:
        object.__setattr__(self, "root", root)

    def __setattr__(self, name: str, value: object) -> None:
        raise AttributeError(f"Project is immutable: cannot set {name}")

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Project) and other.root == self.root

    def __hash__(self) -> int:
        return hash(self.root)

    def __repr__(self) -> str:
        return f"Project(root={self.root!r})"

    @property
    def charts_dir(self) -> Path:
        return self.root / "charts"

    @property
    def umbrella(self) -> Path:
        return self.charts_dir / UMBRELLA

    @property
    def values_dir(self) -> Path:
        return self.root / "values"

    @property
    def ci_dir(self) -> Path:
        return self.root / "ci"

    def env_values(self, env: str) -> Path:
        return self.values_dir / f"{env}.yaml"

    def existing_env_values(self, env: str) -> Path:
        """values/<env>.yaml, or the user's error naming the environments there are."""
        path = self.env_values(env)
        if not path.is_file():
            known = ", ".join(self.environments()) or "none"
            raise NchartError(
                f"unknown environment {env!r}: {path.relative_to(self.root)} does not exist (known: {known})",
                ExitCode.USAGE,
            )
        return path

    def generated_values(self, env: str) -> Path:
        """The overlay `nchart tf apply` writes from Terraform outputs."""
        return self.values_dir / "generated" / f"{env}.yaml"

    def environments(self) -> list[str]:
        return sorted(p.stem for p in self.values_dir.glob("*.yaml"))

    def charts(self) -> list[Path]:
        return sorted(p.parent for p in self.charts_dir.glob("*/Chart.yaml"))

    def tool(self, name: str) -> str:
        """A tool from the project's bin/ (built by scripts/install-tools.sh), else from PATH. For helm,
        HELM_BIN first when it is set (the variable Helm itself gives its plugins): bin/helm is Helm 3,
        bin/helm4 Helm 4, and nchart works with either."""
        if name == "helm" and os.environ.get("HELM_BIN"):
            return supported_helm(_helm_bin(os.environ["HELM_BIN"]))
        local = self.root / "bin" / name
        if local.is_file() and os.access(local, os.X_OK):
            return str(local)
        import shutil  # only a tool outside bin/ pays for it

        found = shutil.which(name)
        if found:
            # bin/'s helm builds are pinned; one from PATH may be any release.
            return supported_helm(found) if name == "helm" else found
        raise NchartError(
            f"{name} not found in {self.root / 'bin'} or on PATH; run `make tools` to build the pinned version",
            ExitCode.TOOL_MISSING,
        )


# The Helm majors the charts and nchart support (README, "Supported versions"; bin/ builds 3.22.0 and 4.3.1).
SUPPORTED_HELM_MAJORS = (3, 4)


@functools.cache
def supported_helm(path: str) -> str:
    """`path` when it is a Helm of a supported major; else an error that says which Helm nchart needs."""
    import re
    import subprocess

    needs = "nchart needs Helm 3 (3.x; tested 3.22) or Helm 4 (tested 4.3); `make tools` builds both into bin/"
    try:
        run = subprocess.run(
            [path, "version", "--template", "{{.Version}}"], capture_output=True, text=True, timeout=30, check=False
        )
    except (OSError, subprocess.TimeoutExpired) as error:
        raise NchartError(f"{path} does not run as helm ({error}): {needs}", ExitCode.TOOL_MISSING) from None
    version = re.match(r"v(\d+)\.(\d+)", run.stdout.strip())
    if run.returncode != 0 or version is None:
        said = (run.stderr or run.stdout).strip().splitlines()[:1]
        raise NchartError(
            f"{path} is not a helm nchart can use ({' '.join(said) or 'no version'}): {needs}", ExitCode.TOOL_MISSING
        )
    if int(version[1]) not in SUPPORTED_HELM_MAJORS:
        raise NchartError(f"{path} is Helm {run.stdout.strip()}: {needs}", ExitCode.TOOL_MISSING)
    return path


def _helm_bin(chosen: str) -> str:
    import shutil

    found = chosen if os.path.isfile(chosen) and os.access(chosen, os.X_OK) else shutil.which(chosen)
    if not found:
        raise NchartError(
            f"HELM_BIN={chosen}: not an executable helm; point it at Helm 3 or Helm 4, or unset it to use bin/helm",
            ExitCode.TOOL_MISSING,
        )
    return found


def find_project(start: Path | None = None, explicit: bool = False) -> Project:
    """The checkout containing `start` (default: the working directory), else the one nchart is installed
    from; with `explicit` (--root), `start` itself or an error."""
    if explicit and start is not None:
        root = start.resolve()
        if not (root / "charts" / UMBRELLA / "Chart.yaml").is_file():
            raise NchartError(f"{start}: not an eks-neuron checkout (no charts/{UMBRELLA}/Chart.yaml)", ExitCode.USAGE)
        return Project(root)
    candidates = []
    here = (start or Path.cwd()).resolve()
    candidates.extend([here, *here.parents])
    candidates.append(Path(__file__).resolve().parents[2])
    for candidate in candidates:
        if (candidate / "charts" / UMBRELLA / "Chart.yaml").is_file():
            return Project(candidate)
    raise NchartError(
        f"no eks-neuron checkout found from {here}: expected charts/{UMBRELLA}/Chart.yaml (set NCHART_ROOT)",
        ExitCode.USAGE,
    )
