#!/usr/bin/env python3
"""Load test of the SD server against the bare diffusers pipeline, same model, same inputs, one run.

1. Bare pipeline, in this process: latency of one image (p50/p99), PNG encoding, and images/s at batch
   sizes 1, 2, 4, 8.
2. The server as its own process (uvicorn on 127.0.0.1): an asyncio/httpx client at concurrency
   1, 2, 4, 8 reports p50/p99 latency and images/s.
Targets: server p50 at concurrency 1 within 2% of the bare call plus PNG encoding; server images/s at
saturation >= 95% of the bare pipeline's best batched images/s.

    python bench/serving/loadtest.py                      # tiny random model on CPU
    python bench/serving/loadtest.py --preset sd21-base   # SD 2.1 base architecture, random weights (GPU)
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

os.environ.setdefault("HF_HUB_OFFLINE", "1")

import httpx

PROMPT = "a photograph of an astronaut riding a horse"
CONCURRENCY = (1, 2, 4, 8)


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    index = min(len(ordered) - 1, max(0, round(q / 100 * (len(ordered) - 1))))
    return ordered[index]


class BarePipeline:
    """The diffusers pipeline called directly, as a user of diffusers would."""

    def __init__(self, model_dir: Path, backend: str, steps: int) -> None:
        from serving.pipeline import load_generator

        self.pipeline = load_generator(model_dir, backend).pipeline
        self.steps = steps
        self.call(1, 0)  # warm-up, as the server does

    def call(self, batch: int, seed: int) -> list[Any]:
        import torch

        with torch.inference_mode():
            return list(
                self.pipeline(
                    prompt=[PROMPT] * batch,
                    num_inference_steps=self.steps,
                    guidance_scale=7.5,
                    generator=[torch.Generator().manual_seed(seed + i) for i in range(batch)],
                    output_type="pil",
                ).images
            )

    def throughput(self, runs: int) -> dict[int, float]:
        result = {}
        for batch in CONCURRENCY:
            repeats = max(3, runs // (2 * batch))
            started = time.perf_counter()
            for run in range(repeats):
                self.call(batch, 1000 + run * batch)
            result[batch] = batch * repeats / (time.perf_counter() - started)
        return result


def paired_latency(bare: BarePipeline, base: str, runs: int) -> dict[str, list[float]]:
    """Bare call and server request alternately, so drift on a shared machine hits both alike."""
    from serving.routes import encode_png

    samples: dict[str, list[float]] = {"bare": [], "png": [], "server": []}
    with httpx.Client(base_url=base, timeout=600) as client:
        for run in range(runs):
            started = time.perf_counter()
            image = bare.call(1, run)[0]
            samples["bare"].append(time.perf_counter() - started)
            started = time.perf_counter()
            encode_png(image)
            samples["png"].append(time.perf_counter() - started)
            started = time.perf_counter()
            response = client.post("/v1/images/generations", json={"prompt": PROMPT, "steps": bare.steps, "seed": run})
            samples["server"].append(time.perf_counter() - started)
            if response.status_code != 200:
                raise SystemExit(f"server answered {response.status_code}")
    return samples


async def drive(base: str, concurrency: int, requests: int, steps: int) -> dict[str, float]:
    latencies: list[float] = []
    counter = iter(range(requests))
    statuses: list[int] = []

    async def worker(client: httpx.AsyncClient) -> None:
        for index in counter:
            started = time.perf_counter()
            response = await client.post(
                "/v1/images/generations", json={"prompt": PROMPT, "steps": steps, "seed": index}
            )
            latencies.append(time.perf_counter() - started)
            statuses.append(response.status_code)

    async with httpx.AsyncClient(base_url=base, timeout=600) as client:
        started = time.perf_counter()
        await asyncio.gather(*(worker(client) for _ in range(concurrency)))
        wall = time.perf_counter() - started
    if set(statuses) != {200}:
        raise SystemExit(f"server answered {sorted(set(statuses))} at concurrency {concurrency}")
    return {"p50": statistics.median(latencies), "p99": percentile(latencies, 99), "images_per_s": requests / wall}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--preset", choices=["tiny", "sd21-base"], default="tiny")
    parser.add_argument("--model-dir", type=Path, help="Use this pipeline instead of building a random one.")
    parser.add_argument("--backend", default="auto", choices=["auto", "neuron", "cuda", "cpu"])
    parser.add_argument("--steps", type=int, default=20)
    parser.add_argument("--runs", type=int, default=15, help="Requests per measurement (more at higher concurrency).")
    parser.add_argument("--max-batch", type=int, default=8)
    parser.add_argument("--json", type=Path, help="Also write the results here.")
    args = parser.parse_args()

    from local_server import server_process

    from serving.pipeline import resolve_backend
    from serving.random_model import build_random_pipeline

    with tempfile.TemporaryDirectory() as tmp:
        model_dir = args.model_dir or build_random_pipeline(args.preset, Path(tmp) / args.preset)
        backend = resolve_backend(args.backend, model_dir)
        settings = {
            "SD_MODEL_DIR": str(model_dir),
            "SD_BACKEND": backend,
            "SD_MAX_BATCH_SIZE": str(args.max_batch),
            "SD_MAX_QUEUE": "256",
            "SD_LOG_LEVEL": "warning",
            "SD_REQUEST_TIMEOUT_S": "3600",
        }
        with server_process(settings, ready_timeout_s=1800) as (base, _):
            bare = BarePipeline(model_dir, backend, args.steps)
            asyncio.run(drive(base, 1, 2, args.steps))  # warm the HTTP path
            paired = paired_latency(bare, base, args.runs)
            bare_throughput = bare.throughput(args.runs)
            served = {}
            for c in CONCURRENCY:
                # An untimed wave first, so the timed one sees the server's steady state at this load.
                asyncio.run(drive(base, c, 2 * c, args.steps))
                served[c] = asyncio.run(drive(base, c, max(args.runs, 6 * c), args.steps))

    bare_p50, png_p50, server_p50 = (statistics.median(paired[k]) for k in ("bare", "png", "server"))
    best_bare = max(bare_throughput.values())
    best_served = max(s["images_per_s"] for s in served.values())
    latency_budget = bare_p50 * 1.02 + png_p50
    print(f"model: {args.model_dir or args.preset}, backend {backend}, {args.steps} steps, max batch {args.max_batch}")
    print(
        f"concurrency 1, {args.runs} alternating pairs: bare p50 {bare_p50 * 1000:.1f} ms (p99 {percentile(paired['bare'], 99) * 1000:.1f}), "
        f"PNG encoding {png_p50 * 1000:.2f} ms, server p50 {server_p50 * 1000:.1f} ms (p99 {percentile(paired['server'], 99) * 1000:.1f})"
    )
    print()
    print(
        "| concurrency | server p50 ms | server p99 ms | server images/s | bare pipeline, batch = concurrency: images/s |"
    )
    print("|---:|---:|---:|---:|---:|")
    for c in CONCURRENCY:
        s = served[c]
        print(
            f"| {c} | {s['p50'] * 1000:.1f} | {s['p99'] * 1000:.1f} | {s['images_per_s']:.2f} | {bare_throughput[c]:.2f} |"
        )
    print()
    p50_ok = server_p50 <= latency_budget
    throughput_ok = best_served >= 0.95 * best_bare
    print(
        f"p50 at concurrency 1: server {server_p50 * 1000:.1f} ms vs bare {bare_p50 * 1000:.1f} ms + PNG {png_p50 * 1000:.2f} ms "
        f"({server_p50 / (bare_p50 + png_p50) - 1:+.1%}) -> {'met' if p50_ok else 'MISSED'} (budget {latency_budget * 1000:.1f} ms)"
    )
    print(
        f"saturation: server {best_served:.2f} images/s vs bare best {best_bare:.2f} images/s = {best_served / best_bare:.1%} "
        f"-> {'met' if throughput_ok else 'MISSED'} (target 95%)"
    )
    if args.json:
        results = {
            "backend": backend,
            "steps": args.steps,
            "paired_latency_s": paired,
            "bare_images_per_s": bare_throughput,
            "server": served,
        }
        args.json.write_text(json.dumps(results, indent=2))
    sys.exit(0 if p50_ok and throughput_ok else 1)


if __name__ == "__main__":
    main()
