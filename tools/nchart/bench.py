"""`nchart bench`: nchart render against bare `helm template` of the same values."""

from __future__ import annotations

import dataclasses
import json
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path

from .core.catalog import resolve_instance
from .core.names import DEFAULT_NAMESPACE, DEFAULT_RELEASE
from .core.project import Project
from .core.render import helm_template_args, render
from .core.tools import run_tool
from .core.values import merged, value_sources
from .errors import NchartError


@dataclasses.dataclass(frozen=True)
class Timing:
    label: str
    samples: list[float]

    @property
    def median(self) -> float:
        return statistics.median(self.samples)

    @property
    def spread(self) -> float:
        return max(self.samples) - min(self.samples)


@dataclasses.dataclass(frozen=True)
class BenchResult:
    instance: str
    env: str
    runs: int
    helm: Timing
    in_process: Timing
    cli: Timing

    @property
    def in_process_ratio(self) -> float:
        return self.in_process.median / self.helm.median

    @property
    def cli_ratio(self) -> float:
        return self.cli.median / self.helm.median

    def lines(self) -> list[str]:
        rows = [
            ("bare helm template (process)", self.helm, 1.0),
            ("nchart render, in-process (values + helm process)", self.in_process, self.in_process_ratio),
            ("nchart render, CLI process (the nchart command)", self.cli, self.cli_ratio),
        ]
        out = [f"nchart bench: {self.instance} --env {self.env}, median of {self.runs} runs each"]
        out.append(f"{'what':58} {'median ms':>10} {'spread ms':>10} {'x helm':>7}")
        for label, timing, ratio in rows:
            out.append(f"{label:58} {timing.median * 1000:10.1f} {timing.spread * 1000:10.1f} {ratio:7.2f}")
        return out


def _time_interleaved(runs: int, actions: list[Callable[[], object]]) -> list[list[float]]:
    """Samples of each action, taken in turns (a, b, c, a, b, c, ...) so that a machine that slows down
    or speeds up during the benchmark moves every action's samples alike instead of biasing the ratio."""
    for action in actions:
        action()  # warm the page cache and any lazy imports
    samples: list[list[float]] = [[] for _ in actions]
    for _ in range(runs):
        for index, action in enumerate(actions):
            start = time.perf_counter()
            action()
            samples[index].append(time.perf_counter() - start)
    return samples


def _run(args: list[str], input_text: str | None = None) -> str:
    result = run_tool(args, input_text)
    if result.returncode != 0:
        raise NchartError(f"{args[0]} failed while benchmarking: {result.stderr.strip()[:500]}")
    return result.stdout


def run_bench(project: Project, instance_name: str, env: str, runs: int) -> BenchResult:
    instance = resolve_instance(instance_name)
    sources = value_sources(project, instance, env)
    values_json = json.dumps(merged(sources))
    # The same arguments nchart render gives helm, values on stdin.
    helm_args = [project.tool("helm"), *helm_template_args(project.umbrella, DEFAULT_RELEASE, DEFAULT_NAMESPACE)]
    # The console script, as users run it (python -m nchart where there is none).
    script = Path(sys.executable).with_name("nchart")
    launcher = [str(script)] if script.is_file() else [sys.executable, "-m", "nchart"]
    cli_args = [*launcher, "--root", str(project.root), "render", instance_name, "--env", env]
    # The three must print the same manifests, or the comparison means nothing.
    reference = _run(helm_args, values_json)
    if _run(cli_args) != reference or render(project, sources) != reference:
        raise NchartError("nchart render and helm template printed different manifests; not benchmarking")
    helm_samples, in_process_samples, cli_samples = _time_interleaved(
        runs,
        [
            lambda: _run(helm_args, values_json),
            lambda: render(project, value_sources(project, instance, env)),
            lambda: _run(cli_args),
        ],
    )
    return BenchResult(
        instance.name, env, runs, Timing("helm", helm_samples), Timing("in-process", in_process_samples),
        Timing("cli", cli_samples),
    )  # fmt: skip
