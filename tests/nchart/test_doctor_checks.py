"""The doctor's check names: the list `nchart doctor --skip` accepts is the set its checks report."""

from __future__ import annotations

import ast
from pathlib import Path

from click.testing import CliRunner

from nchart.cli import cli
from nchart.doctor.checks import CHECK_NAMES
from tests.support.charts import ROOT

CHECKS_DIR = ROOT / "tools" / "nchart" / "doctor" / "checks"


def reported_check_names(path: Path) -> set[str]:
    """The `check` argument of every Finding(...) in a check module: a literal or a module constant."""
    tree = ast.parse(path.read_text(encoding="utf-8"))
    constants = {
        node.targets[0].id: node.value.value
        for node in tree.body
        if isinstance(node, ast.Assign)
        and isinstance(node.targets[0], ast.Name)
        and isinstance(node.value, ast.Constant)
    }
    names = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Call) and getattr(node.func, "id", "") == "Finding" and len(node.args) > 1:
            argument = node.args[1]
            assert isinstance(argument, ast.Constant | ast.Name), f"{path.name}: a check name that is not a constant"
            names.add(argument.value if isinstance(argument, ast.Constant) else constants[argument.id])
    return names


def test_check_names_are_the_ones_the_checks_report() -> None:
    reported = set().union(*(reported_check_names(p) for p in CHECKS_DIR.glob("*.py")))
    assert reported == set(CHECK_NAMES)


def test_skip_refuses_an_unknown_check_naming_the_known_ones() -> None:
    result = CliRunner().invoke(cli, ["doctor", "--skip", "grafana", "--kubeconfig", __file__])
    assert result.exit_code == 2
    assert "grafana: expected one of" in result.output and "grafana-dashboards" in result.output
