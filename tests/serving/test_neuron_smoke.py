"""scripts/neuron-smoke.sh, the operator's end-to-end check on one Neuron instance, run here against
the stand-ins (tests/standins: torch_neuronx and neuron-monitor) on the tiny model: it compiles, serves
with SD_BACKEND=neuron, loads at concurrency 1 and 2, reads neuron-monitor and prints one report. The
figures it prints here are the stand-ins'; on an inf2 they are the hardware's."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from tests.support.charts import ROOT

pytestmark = pytest.mark.slow
STANDINS = ROOT / "tests" / "standins"


def run_smoke(*args: str, monitor: bool = True) -> subprocess.CompletedProcess[str]:
    path = os.environ["PATH"] if not monitor else f"{STANDINS / 'bin'}{os.pathsep}{os.environ['PATH']}"
    env = {
        **os.environ,
        "PATH": path,
        "PYTHON": sys.executable,
        "PYTHONPATH": str(STANDINS),
        "NEURON_STANDIN_INSTANCE_TYPE": "inf2.8xlarge",
        "NEURON_RT_VISIBLE_CORES": "0-1",
        "NEURON_SMOKE_INSTANCE": "inf2.8xlarge (stand-in)",
    }
    return subprocess.run(
        [str(ROOT / "scripts" / "neuron-smoke.sh"), *args], env=env, capture_output=True, text=True, timeout=900
    )


def test_the_smoke_test_compiles_serves_loads_and_reports(tiny_model_dir: Path, tmp_path: Path) -> None:
    result = run_smoke(
        "--model-dir", str(tiny_model_dir), "--out", str(tmp_path), "--images", "3", "--steps", "2",
        "--json", str(tmp_path / "smoke.json"),
    )  # fmt: skip
    assert result.returncode == 0, result.stderr[-3000:]
    report = result.stdout.splitlines()
    assert (
        report[0] == "Neuron smoke test on inf2.8xlarge (stand-in) (inf2, 2 NeuronCores, 2 steps, 3 images per level)"
    )
    assert re.fullmatch(r"compile: \d+ s", report[1]), report[1]
    rows = [line for line in report if re.match(r"\| [12] \|", line)]
    assert len(rows) == 2, report
    for row in rows:
        cells = [c.strip() for c in row.strip("|").split("|")]
        assert float(cells[1]) > 0 and float(cells[2]) >= float(cells[1]) and float(cells[3]) > 0
        utilisation = re.findall(r"nc(\d) (\d+)%", cells[5])
        assert [core for core, _ in utilisation] == ["0", "1"], cells[5]
        assert all(40 <= int(value) <= 60 for _, value in utilisation)
    assert report[-1].startswith("p50 at concurrency 1: ") and "against AWS's published 1679.8 ms" in report[-1]
    results = json.loads((tmp_path / "smoke.json").read_text())
    assert results["target"] == "inf2" and set(results["levels"]) == {"1", "2"}
    assert (tmp_path / "compiled" / "neuron" / "unet.pt").is_file()
    # Without neuron-monitor, the report says so instead of inventing figures; --compiled skips the compile.
    again = run_smoke("--compiled", str(tmp_path / "compiled"), "--images", "1", "--steps", "1", monitor=False)
    assert again.returncode == 0, again.stderr[-3000:]
    assert "compile:" not in again.stdout
    assert "neuron-monitor not on PATH: no device figures" in again.stdout
