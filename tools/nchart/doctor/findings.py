"""What a check reports (a Finding: severity, check, object, message, fix) and the exit code they make."""

from __future__ import annotations

import dataclasses
import enum
from collections.abc import Iterable
from typing import Any


class DoctorExit(enum.IntEnum):
    CLEAN = 0
    WARNINGS = 1
    ERRORS = 3


class Severity(str, enum.Enum):
    ERROR = "error"
    WARNING = "warning"


@dataclasses.dataclass(frozen=True)
class Finding:
    severity: Severity
    check: str
    object: str
    message: str
    fix: str

    def as_json(self) -> dict[str, Any]:
        return {**dataclasses.asdict(self), "severity": self.severity.value}


def exit_code(findings: Iterable[Finding]) -> DoctorExit:
    severities = {f.severity for f in findings}
    if Severity.ERROR in severities:
        return DoctorExit.ERRORS
    return DoctorExit.WARNINGS if severities else DoctorExit.CLEAN


def table(findings: list[Finding]) -> list[str]:
    if not findings:
        return ["no problems found"]
    widths = [max(len(getattr(f, field) if field != "severity" else f.severity.value) for f in findings) for field in
              ("severity", "check", "object")]  # fmt: skip
    lines = []
    for finding in findings:
        cells = (finding.severity.value, finding.check, finding.object)
        lines.append("  ".join(c.ljust(w) for c, w in zip(cells, widths, strict=True)) + "  " + finding.message)
        lines.append(" " * (sum(widths) + 6) + "fix: " + finding.fix)
    return lines
