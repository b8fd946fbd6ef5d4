"""scripts/test-under-load.sh: runs a command N times while CPU hogs run, stops at the first failure,
and leaves no hog behind."""

from __future__ import annotations

import os
import re
import subprocess
from pathlib import Path

from tests.support.charts import ROOT

SCRIPT = ROOT / "scripts" / "test-under-load.sh"
# The command sees its siblings: the hogs are the script's other `yes` children.
COUNT_HOGS = ["bash", "-c", "pgrep -x -P $PPID yes | wc -l"]


def under_load(logs: Path, *args: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "UNDER_LOAD_LOGS": str(logs)}
    return subprocess.run(
        ["bash", str(SCRIPT), *args], capture_output=True, text=True, env=env, timeout=120, check=False
    )


def hog_pids(output: str) -> list[int]:
    match = re.search(r"\(PIDs ([\d ]+)\)", output)
    assert match, output
    return [int(pid) for pid in match.group(1).split()]


def is_running(pid: int) -> bool:
    stat = Path(f"/proc/{pid}/stat")
    return stat.exists() and stat.read_text().split(") ")[-1][0] != "Z"


def test_every_run_passes_with_the_hogs_running_and_the_hogs_stop(tmp_path: Path) -> None:
    result = under_load(tmp_path, "--runs", "2", "--hogs", "2", "--", *COUNT_HOGS)
    assert result.returncode == 0, result.stderr
    assert "2 of 2 passed" in result.stdout
    assert [(tmp_path / f"run-{i}.log").read_text().strip() for i in (1, 2)] == ["2", "2"]
    pids = hog_pids(result.stdout)
    assert len(pids) == 2 and not any(is_running(pid) for pid in pids)


def test_the_first_failing_run_stops_the_loop_with_its_status(tmp_path: Path) -> None:
    result = under_load(tmp_path, "--runs", "3", "--hogs", "1", "--", "bash", "-c", "echo broken; exit 7")
    assert result.returncode == 7
    assert "run 1 of 3: exit 7" in result.stdout and "broken" in result.stderr
    assert not (tmp_path / "run-2.log").exists()
    assert not any(is_running(pid) for pid in hog_pids(result.stdout))


def test_bad_arguments_get_one_line_and_exit_2(tmp_path: Path) -> None:
    for args, message in (
        (["--runs", "many"], "'many' is not a whole number"),
        (["--bogus"], "unknown argument '--bogus'"),
    ):
        result = under_load(tmp_path, *args)
        assert result.returncode == 2, result.stderr
        [line] = result.stderr.splitlines()
        assert line.startswith("test-under-load: ") and message in line
