"""What a lint run found: each failure with its check, chart or render, file and message; a count per check."""

from __future__ import annotations

import dataclasses
from pathlib import Path

from ..core.project import Project


@dataclasses.dataclass(frozen=True)
class Failure:
    check: str
    where: str  # chart, or chart/env/instance for renders
    file: str
    message: str

    def line(self) -> str:
        return f"FAIL [{self.check}] {self.where}: {self.file}: {self.message}"


@dataclasses.dataclass
class LintReport:
    passed: dict[str, int] = dataclasses.field(default_factory=dict)
    failures: list[Failure] = dataclasses.field(default_factory=list)

    def ran(self, check: str, count: int = 1) -> None:
        self.passed[check] = self.passed.get(check, 0) + count

    def fail(self, check: str, where: str, file: str, message: str) -> None:
        self.failures.append(Failure(check, where, file, message))

    def lines(self) -> list[str]:
        out = [failure.line() for failure in self.failures]
        summary = ", ".join(f"{check}: {count}" for check, count in self.passed.items())
        verdict = f"{len(self.failures)} failure(s)" if self.failures else "all checks passed"
        out.append(f"nchart lint: {verdict} ({summary})")
        return out


def relative(project: Project, path: Path) -> str:
    try:
        return str(path.relative_to(project.root))
    except ValueError:
        return str(path)


@dataclasses.dataclass
class LintRun:
    """What every check is given: the project, the environments and instance types in scope, the
    Kubernetes version, and the report it adds to."""

    project: Project
    envs: list[str]
    instances: list[str]
    kube_version: str
    report: LintReport = dataclasses.field(default_factory=LintReport)

    @property
    def env_files(self) -> list[Path]:
        return [self.project.env_values(env) for env in self.envs]
