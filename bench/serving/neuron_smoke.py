#!/usr/bin/env python3
"""The Neuron path on one Neuron instance, end to end, in one report: what an operator with one
inf2.8xlarge (or any inf2/trn1/trn2) runs to prove it before deploying the charts.

1. compile: `eks-neuron-serve compile --tracer neuron` of the given pipeline, timed (--compiled skips it);
2. serve: the server with SD_BACKEND=neuron, as the chart runs it, on NEURON_RT_VISIBLE_CORES;
3. load: N images at concurrency 1 and 2 (batch 1 each, 50 steps), p50/p99 latency and images/s;
4. device: neuron-monitor, when it is on PATH, reports each NeuronCore's utilisation during the load;
5. compare: p50 at concurrency 1 against AWS's published 1,679.8 ms (SD 2.1 512, inf2.xlarge, batch 1,
   50 steps, Neuron 2.21: aws-neuron-sdk about-neuron/benchmarks/inf2/latency_data_vision_sd.csv).

It needs the Neuron SDK 2.31 (the server's neuron image, or a Deep Learning AMI's Neuron venv with
this checkout installed). It cannot run where there is no Neuron device; the tests run it against the
stand-in torch_neuronx, which proves the wiring, not the figures.

    scripts/neuron-smoke.sh --model-dir /models/sd21-base --target inf2 --out /tmp/smoke
    scripts/neuron-smoke.sh --compiled /tmp/smoke/compiled --images 20 --json smoke.json
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

os.environ.setdefault("HF_HUB_OFFLINE", "1")

from loadtest import batch_sizes, batches_by_size, drive
from local_server import server_process

# aws-neuron-sdk, about-neuron/benchmarks/inf2/latency_data_vision_sd.csv (Neuron 2.21, inf2.xlarge).
PUBLISHED_P50_MS = 1679.8
PUBLISHED_IMAGES_PER_S = 0.596
CONCURRENCY = (1, 2)


def say(message: str) -> None:
    print(f"neuron-smoke: {message}", file=sys.stderr, flush=True)


class NeuronMonitor:
    """neuron-monitor (aws-neuronx-tools) with a 1 s period, its JSON reports read as they come:
    per NeuronCore, the utilisation samples taken while `recording` is set."""

    CONFIG = {
        "period": "1s",
        "neuron_runtimes": [{"tag_filter": ".*", "metrics": [{"type": "neuroncore_counters"}]}],
        "system_metrics": [],
    }

    def __init__(self, binary: str, workdir: Path) -> None:
        self.binary = binary
        self.config = workdir / "neuron-monitor.json"
        self.config.write_text(json.dumps(self.CONFIG), encoding="utf-8")
        self.samples: dict[str, list[float]] = {}
        self.recording = False
        self.errors: list[str] = []
        # Set at each report: a report covers the period before it, so the one after a load ends
        # is the load's last.
        self.reported = threading.Event()

    def read(self, lines: Any) -> None:
        for line in lines:
            try:
                report = json.loads(line)
            except ValueError:
                continue  # neuron-monitor writes one whole JSON document per line
            for runtime in report.get("neuron_runtime_data") or []:
                counters = (runtime.get("report") or {}).get("neuroncore_counters") or {}
                if counters.get("error"):
                    self.errors.append(counters["error"])
                if not self.recording:
                    continue
                for core, data in (counters.get("neuroncores_in_use") or {}).items():
                    self.samples.setdefault(core, []).append(float(data.get("neuroncore_utilization", 0.0)))
            self.reported.set()

    def record(self, load: Callable[[], dict[str, Any]], report_timeout_s: float = 30.0) -> dict[str, Any]:
        """Runs the load while recording, and through the first report that ends after it: a load
        shorter than neuron-monitor's period still gets the report that covers it."""
        self.samples.clear()
        self.recording = True
        try:
            result = load()
            self.reported.clear()
            self.reported.wait(report_timeout_s)
        finally:
            self.recording = False
        result["neuroncore_utilisation"] = self.utilisation()
        return result

    @contextlib.contextmanager
    def running(self) -> Iterator[NeuronMonitor]:
        from nchart.localcluster.processes import running

        argv = [self.binary, "-c", str(self.config)]
        with running("neuron-monitor", argv, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True) as (
            process,
            _,
        ):
            reader = threading.Thread(target=self.read, args=(process.stdout,), daemon=True)
            reader.start()
            yield self

    def utilisation(self) -> dict[str, float]:
        return {
            core: statistics.fmean(values) for core, values in sorted(self.samples.items(), key=lambda i: int(i[0]))
        }


def compile_model(args: argparse.Namespace, out: Path) -> float:
    command = [sys.executable, "-m", "serving", "compile", "--model-dir", str(args.model_dir), "--out", str(out)]
    command += ["--tracer", "neuron", "--target", args.target, "--cores", str(args.cores)]
    if args.logical_nc_config:
        command += ["--logical-nc-config", str(args.logical_nc_config)]
    say(f"compiling {args.model_dir} for {args.target} (neuronx-cc; about an hour on an inf2.8xlarge for SD 2.1)")
    started = time.monotonic()
    result = subprocess.run(command, capture_output=True, text=True)
    if result.returncode != 0:
        raise SystemExit(f"neuron-smoke: compile failed ({result.returncode}):\n{result.stderr[-3000:]}")
    return time.monotonic() - started


def measure(args: argparse.Namespace, model_dir: Path, monitor: NeuronMonitor | None) -> dict[str, Any]:
    settings = {
        "SD_MODEL_DIR": str(model_dir),
        "SD_BACKEND": "neuron",
        "SD_NEURON_CORES": str(args.cores),
        "SD_MAX_BATCH_SIZE": "4",
        "SD_LOG_LEVEL": "warning",
        "SD_REQUEST_TIMEOUT_S": "3600",
    }
    results: dict[str, Any] = {"levels": {}}
    say("starting the server (SD_BACKEND=neuron)")
    started = time.monotonic()
    with server_process(settings, ready_timeout_s=3600) as (base, _):
        results["load_seconds"] = time.monotonic() - started
        for concurrency in CONCURRENCY:
            say(f"{args.images} images at concurrency {concurrency}, {args.steps} steps")
            asyncio.run(drive(base, concurrency, concurrency, args.steps, "png"))  # untimed: one wave
            before = batch_sizes(base)

            def load(concurrency: int = concurrency) -> dict[str, Any]:
                return asyncio.run(drive(base, concurrency, args.images, args.steps, "png"))

            level = monitor.record(load) if monitor is not None else load()
            after = batch_sizes(base)
            level["batches"] = batches_by_size({k: after[k] - before.get(k, 0) for k in after})
            results["levels"][str(concurrency)] = level
    return results


def report(results: dict[str, Any]) -> str:
    lines = [
        f"Neuron smoke test on {results['instance']} ({results['target']}, {results['cores']} NeuronCores, "
        f"{results['steps']} steps, {results['images']} images per level)",
    ]
    if results.get("compile_seconds") is not None:
        lines.append(f"compile: {results['compile_seconds']:.0f} s")
    lines.append(f"server load and warm-up: {results['load_seconds']:.1f} s")
    lines.append("| concurrency | p50 ms | p99 ms | images/s | batches | NeuronCore utilisation |")
    lines.append("|---:|---:|---:|---:|---|---|")
    for concurrency, level in results["levels"].items():
        use = level.get("neuroncore_utilisation")
        cores = ", ".join(f"nc{core} {value:.0f}%" for core, value in use.items()) if use else results["monitor"]
        lines.append(
            f"| {concurrency} | {level['p50'] * 1000:.1f} | {level['p99'] * 1000:.1f} | {level['images_per_s']:.3f} "
            f"| {level['batches']} | {cores} |"
        )
    p50_ms = results["levels"]["1"]["p50"] * 1000
    lines.append(
        f"p50 at concurrency 1: {p50_ms:.1f} ms against AWS's published {PUBLISHED_P50_MS} ms "
        f"({PUBLISHED_IMAGES_PER_S} images/s; inf2.xlarge, batch 1, 50 steps, Neuron 2.21): "
        f"{p50_ms / PUBLISHED_P50_MS:.2f}x"
    )
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    source = parser.add_mutually_exclusive_group(required=True)
    source.add_argument("--model-dir", type=Path, help="A diffusers SD 2.1 base pipeline to compile.")
    source.add_argument("--compiled", type=Path, help="An already compiled model directory (skips the compile).")
    parser.add_argument("--target", default="inf2", choices=["inf2", "trn1", "trn1n", "trn2"])
    parser.add_argument("--logical-nc-config", type=int, choices=[1, 2], help="trn2 only.")
    parser.add_argument("--cores", type=int, default=2, help="NeuronCores for the UNet (default 2, one inf2 chip).")
    parser.add_argument("--images", type=int, default=20, help="Timed images per concurrency level.")
    parser.add_argument("--steps", type=int, default=50)
    parser.add_argument("--out", type=Path, help="Where the compiled model goes (default: a temporary directory).")
    parser.add_argument("--instance", default=os.environ.get("NEURON_SMOKE_INSTANCE", "this host"))
    parser.add_argument("--json", type=Path, help="Also write the results here.")
    args = parser.parse_args()

    with tempfile.TemporaryDirectory() as tmp:
        workdir = Path(tmp)
        compile_seconds = None
        model_dir = args.compiled
        if model_dir is None:
            model_dir = (args.out or workdir) / "compiled"
            compile_seconds = compile_model(args, model_dir)
        binary = shutil.which("neuron-monitor")
        monitor = NeuronMonitor(binary, workdir) if binary else None
        with monitor.running() if monitor else contextlib.nullcontext():
            results = measure(args, model_dir, monitor)
        results.update(
            instance=args.instance,
            target=json.loads((model_dir / "neuron" / "manifest.json").read_text())["target"],
            cores=args.cores,
            steps=args.steps,
            images=args.images,
            compile_seconds=compile_seconds,
            monitor="neuron-monitor not on PATH: no device figures" if monitor is None else "no samples",
            monitor_errors=monitor.errors if monitor else [],
        )
    print(report(results))
    if args.json:
        args.json.write_text(json.dumps(results, indent=2) + "\n", encoding="utf-8")


if __name__ == "__main__":
    main()
