"""Every nchart command against a corpus of malformed input (tests/bad_input/corpus.yaml): each exits
with its documented code and says, in one line, which file and key and what was expected; never a
traceback. The real `nchart` runs each case."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.support.charts import ROOT

CORPUS = yaml.safe_load((ROOT / "tests" / "bad_input" / "corpus.yaml").read_text(encoding="utf-8"))
NCHART = Path(sys.executable).with_name("nchart")


def write_scratch(tmp: Path) -> None:
    for name, content in CORPUS["files"].items():
        path = tmp / name
        path.parent.mkdir(parents=True, exist_ok=True)
        if isinstance(content, dict):
            path.write_bytes(bytes.fromhex(content["binary"]))
        else:
            path.write_text(content, encoding="utf-8")


def edited_project(tmp: Path, edits: dict[str, str]) -> Path:
    """A copy of what nchart reads (charts, values, terraform settings, README), with the edits."""
    root = tmp / "project"
    for name in ("charts", "values", "ci", "terraform"):
        shutil.copytree(ROOT / name, root / name, symlinks=True, ignore=shutil.ignore_patterns(".terraform*"))
    shutil.copy(ROOT / "README.md", root / "README.md")
    shutil.copytree(ROOT / "build" / "chart-deps", root / "build" / "chart-deps")
    (root / "bin").symlink_to(ROOT / "bin")
    for relative, content in edits.items():
        (root / relative).write_text(content, encoding="utf-8")
    return root


@pytest.mark.parametrize("case", CORPUS["cases"], ids=[c["id"] for c in CORPUS["cases"]])
def test_bad_input_gets_a_clear_error(case: dict[str, Any], tmp_path: Path) -> None:
    write_scratch(tmp_path)
    root = edited_project(tmp_path, case["edit"]) if "edit" in case else ROOT
    args = [str(a).replace("{tmp}", str(tmp_path)) for a in case["args"]]
    if args[0] != "--root":
        args = ["--root", str(root), *args]
    env = {k: v for k, v in os.environ.items() if not k.startswith("NCHART_")}
    result = subprocess.run(
        [str(NCHART), *args], capture_output=True, text=True, timeout=300, cwd=tmp_path, env=env, check=False
    )
    shown = f"exit {result.returncode}\nstdout:\n{result.stdout[-3000:]}\nstderr:\n{result.stderr[-3000:]}"
    assert "Traceback" not in result.stdout + result.stderr, shown
    assert "internal error" not in result.stderr, shown
    assert result.returncode == case["exit"], shown
    if case["exit"] == 3:
        # A lint finding: a FAIL line in the report names the file and the problem.
        lines = [line for line in result.stdout.splitlines() if line.startswith("FAIL ")]
    else:
        lines = [line for line in result.stderr.splitlines() if line.startswith("nchart: ")]
        assert len(lines) == 1 and lines[0].startswith("nchart: error: "), shown
    assert any(all(words in line for words in case["says"]) for line in lines), shown
