"""`nchart bench` runs, checks that both sides print the same manifests, and reports medians."""

from __future__ import annotations

import re

import pytest
from click.testing import CliRunner

from nchart.cli import cli
from tests.support.charts import ROOT

pytestmark = pytest.mark.slow


def test_bench_reports_three_rows_with_ratios() -> None:
    # A loose target: this checks the command, not the machine's speed.
    result = CliRunner(mix_stderr=False).invoke(
        cli, ["--root", str(ROOT), "bench", "inf2-xlarge", "--env", "dev", "--runs", "3", "--target", "1000"]
    )
    assert result.exit_code == 0, result.stderr
    rows = [line for line in result.stdout.splitlines() if re.search(r"\s\d+\.\d+\s+\d+\.\d+\s+\d+\.\d\d$", line)]
    assert [row.split("  ")[0].strip() for row in rows] == [
        "bare helm template (process)",
        "nchart render, in-process (values + helm process)",
        "nchart render, CLI process (the nchart command)",
    ]
    assert rows[0].split()[-1] == "1.00"


def test_bench_exit_code_when_target_missed() -> None:
    result = CliRunner(mix_stderr=False).invoke(
        cli, ["--root", str(ROOT), "bench", "inf2-xlarge", "--runs", "3", "--target", "0.01"]
    )
    assert result.exit_code == 6
    assert "over the target 0.01" in result.stderr
