"""The render fast path (nchart.commands.fast_render) accepts only what the click command parses the
same way: its option table is the click command's, its result is click's own parse over a corpus of
command lines, it leaves everything else to click, and a render through it prints what the click path
prints, errors included, without importing click."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import click
import pytest

from nchart.commands import common, fast_render
from nchart.commands.group import cli
from nchart.commands.render import render
from tests.support.charts import ROOT


def test_the_option_table_is_the_click_commands() -> None:
    declared: dict[str, tuple[str, bool, bool]] = {}
    defaults: dict[str, Any] = {}
    for param in render.params:
        if isinstance(param, click.Argument):
            assert param.name == "instance"
            continue
        assert isinstance(param, click.Option) and param.name
        for option in param.opts + param.secondary_opts:
            declared[option] = (param.name, not param.is_flag, param.multiple)
        defaults[param.name] = tuple(param.default or ()) if param.multiple else param.default
        if isinstance(param.type, click.Choice):
            assert tuple(param.type.choices) == fast_render.OUTPUTS
    assert declared == fast_render.OPTIONS
    assert defaults == fast_render.DEFAULTS
    assert fast_render.KUBE_VERSION.pattern == common.KUBE_VERSION.pattern
    # The group's options a render may carry: --root (and --version/--help, left to click).
    assert {o for p in cli.params for o in p.opts} == {"--root", "--version", "--help", "-h"} - {"--help", "-h"} | {
        "--root",
        "--version",
    }


def click_parse(argv: list[str]) -> tuple[str | None, dict[str, Any]]:
    ctx = cli.make_context("nchart", list(argv))
    name, command, rest = cli.resolve_command(ctx, ctx.protected_args + ctx.args)
    assert name == "render" and command is not None
    sub = command.make_context(name, rest, parent=ctx)
    return ctx.params["root"], sub.params


PLAIN = [
    ["render", "inf2-24xlarge"],
    ["render", "inf2.24xlarge", "--env", "prod"],
    ["--root", str(ROOT), "render", "inf2-xlarge", "-e", "dev"],
    [f"--root={ROOT}", "render", "--env=dev", "inf2-xlarge"],
    ["render", "trn1.32xlarge", "-f", "a.yaml", "--values", "b.yaml", "--values=c.yaml", "--set", "x=1", "--set=y=2"],
    ["render", "inf2-xlarge", "--set-json", 'a.b={"c": "0"}', "--set-json=d=[1]", "--set", "e=f"],
    [
        "render",
        "inf2-xlarge",
        "-o",
        "json",
        "--release",
        "r",
        "-n",
        "ns",
        "--namespace=other",
        "--kube-version",
        "1.34.0",
    ],
    ["render", "inf2-xlarge", "--values-only", "--output", "yaml", "--kube-version=v1.31"],
    ["render", "inf2-xlarge", "--output-dir", "out", "--env", "staging", "--env", "prod"],
]


@pytest.mark.parametrize("argv", PLAIN, ids=lambda a: " ".join(a))
def test_plain_render_parses_as_click_parses_it(
    argv: list[str], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    parsed = fast_render.parse(argv, {})
    assert parsed is not None
    assert parsed == click_parse(argv)


LEFT_TO_CLICK = [
    [],
    ["--help"],
    ["--version"],
    ["render", "--help"],
    ["render", "-h"],
    ["render"],  # missing INSTANCE
    ["rendr", "inf2-xlarge"],
    ["lint"],
    ["render", "a", "b"],  # an extra argument
    ["render", "inf2-xlarge", "--bogus"],
    ["render", "inf2-xlarge", "-o", "xml"],
    ["render", "inf2-xlarge", "--kube-version", "fast"],
    ["render", "inf2-xlarge", "--env"],
    ["render", "inf2-xlarge", "-edev"],  # attached short value: click takes it, this parser does not
    ["render", "inf2-xlarge", "--values-only=yes"],
    ["render", "inf2-xlarge", "-f", "."],  # a directory for a file
    ["render", "inf2-xlarge", "--", "x"],
    ["--root", "render", "inf2-xlarge"],
    ["--debug", "render", "inf2-xlarge"],
]


@pytest.mark.parametrize("argv", LEFT_TO_CLICK, ids=lambda a: " ".join(a) or "(none)")
def test_anything_else_is_left_to_click(argv: list[str]) -> None:
    assert fast_render.parse(argv, {}) is None


def test_option_variables_leave_it_to_click() -> None:
    argv = ["render", "inf2-xlarge"]
    assert fast_render.parse(argv, {"NCHART_DEBUG": "1"}) is not None
    assert fast_render.parse(argv, {"NCHART_RENDER_ENV": "prod"}) is None
    assert fast_render.parse(argv, {"NCHART_ROOT": str(ROOT)}) is None


def nchart(
    *args: str, env: dict[str, str] | None = None, block_click: bool = False
) -> subprocess.CompletedProcess[str]:
    prelude = "import sys\nsys.modules['click'] = None\n" if block_click else ""
    script = prelude + "from nchart.cli import main\nmain()\n"
    return subprocess.run(
        [sys.executable, "-c", script, "--root", str(ROOT), *args],
        capture_output=True, text=True, timeout=120, check=False, env={**os.environ, **(env or {})},
    )  # fmt: skip


# NCHART_RENDER_RELEASE at its default sends the same command line through click.
THROUGH_CLICK = {"NCHART_RENDER_RELEASE": "eks-neuron"}


@pytest.mark.parametrize(
    "args",
    [
        ["render", "inf2-xlarge", "--env", "dev"],
        ["render", "inf2-xlarge", "--env", "dev", "-o", "json", "--values-only"],
        ["render", "inf9-xlarge"],
        ["render", "inf2-xlarge", "--set", "sd21-serving.replicaCount=lots"],
    ],
    ids=["yaml", "values json", "unknown instance", "refused value"],
)
def test_the_fast_path_prints_what_click_prints_without_importing_click(args: list[str]) -> None:
    fast = nchart(*args, block_click=True)
    slow = nchart(*args, env=THROUGH_CLICK)
    assert (fast.returncode, fast.stdout, fast.stderr) == (slow.returncode, slow.stdout, slow.stderr)
    assert "Traceback" not in fast.stderr and fast.stdout + fast.stderr
