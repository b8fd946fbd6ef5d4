"""How a generator writes: a file is written only when it changed, or with --check only compared; the
run's result lists what was written and what is stale."""

from __future__ import annotations

import dataclasses
from pathlib import Path

from ..core.project import Project


@dataclasses.dataclass
class Generated:
    written: list[str] = dataclasses.field(default_factory=list)
    stale: list[str] = dataclasses.field(default_factory=list)


def relative(project: Project, path: Path) -> str:
    return str(path.relative_to(project.root))


def update(project: Project, path: Path, text: str, check: bool, result: Generated) -> None:
    current = path.read_text(encoding="utf-8") if path.is_file() else None
    if current == text:
        return
    if check:
        result.stale.append(relative(project, path))
    else:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text, encoding="utf-8")
        result.written.append(relative(project, path))
