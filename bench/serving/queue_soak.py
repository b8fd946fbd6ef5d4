"""The queue soak: a worker process (`eks-neuron-serve worker`, the tiny random model on CPU) takes jobs
from SQS and writes images to S3 (moto on loopback, local_aws.py) for a duration, while jobs keep
arriving at about the rate it showed it can take. It passes when, once the queue is empty, every job
has exactly its images and one result.json, nothing is in the dead-letter queue, and the worker's RSS
grew less than 5% from the baseline mark.

    python bench/serving/queue_soak.py --duration 600     # make soak-queue
The short version runs in the tests (tests/serving/test_queue_soak.py).
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import sys
import tempfile
import time
from pathlib import Path

from local_aws import LocalAws, Queues, worker_process
from soak import RSS_GROWTH_LIMIT, rss_bytes, rss_growth

# Each job asks for 1-3 images: the worker's batches mix jobs and cut across them.
IMAGES_PER_JOB = (1, 2, 3)


@dataclasses.dataclass
class QueueSoakResult:
    duration_s: float
    rss_baseline_s: float
    jobs: dict[str, int] = dataclasses.field(default_factory=dict)  # id -> images asked
    rss_samples: list[tuple[float, int]] = dataclasses.field(default_factory=list)
    objects: list[str] = dataclasses.field(default_factory=list)
    dead_letters: int = 0
    drained_s: float = 0.0

    def rss_growth(self) -> float:
        return rss_growth(self.rss_samples, self.rss_baseline_s, tail=3, least=2)

    def problems(self) -> list[str]:
        found = []
        expected = {f"out/{job}/{i:05d}.png" for job, n in self.jobs.items() for i in range(n)}
        expected |= {f"out/{job}/result.json" for job in self.jobs}
        missing, extra = expected - set(self.objects), set(self.objects) - expected
        if missing:
            found.append(f"{len(missing)} objects missing, e.g. {sorted(missing)[:3]}")
        if extra:
            found.append(f"{len(extra)} objects no job asked for, e.g. {sorted(extra)[:3]}")
        if self.dead_letters:
            found.append(f"{self.dead_letters} jobs in the dead-letter queue")
        if self.rss_growth() >= RSS_GROWTH_LIMIT:
            found.append(f"RSS grew {self.rss_growth():.1%} after {self.rss_baseline_s:.0f}s")
        return found

    def summary(self) -> str:
        return json.dumps(
            {
                "jobs": len(self.jobs),
                "images": sum(self.jobs.values()),
                "objects": len(self.objects),
                "dead_letters": self.dead_letters,
                "drained_after_s": round(self.drained_s, 1),
                "rss_mib_first_and_last": [
                    round(r / 2**20, 1) for _, r in self.rss_samples[:1] + self.rss_samples[-1:]
                ],
                "rss_growth": round(self.rss_growth(), 4),
                "problems": self.problems(),
            },
            indent=2,
        )


def in_flight(queues: Queues) -> int:
    visible, hidden = queues.counts()
    return visible + hidden


def run_queue_soak(model_dir: Path, duration_s: float, rss_baseline_s: float, log: Path) -> QueueSoakResult:
    aws = LocalAws()
    try:
        queues = aws.queues()
        result = QueueSoakResult(duration_s, rss_baseline_s)
        env = queues.worker_env(model_dir, SD_MAX_BATCH_SIZE="4", SD_QUEUE_VISIBILITY_TIMEOUT_S="30")
        with worker_process(env, log) as worker:
            started = time.monotonic()
            next_sample = 0.0
            while (elapsed := time.monotonic() - started) < duration_s:
                if worker.poll() is not None:
                    raise RuntimeError(f"the worker exited with {worker.returncode}: {log.read_text()[-2000:]}")
                # Keep a few jobs waiting: the worker is always busy, the queue never runs away.
                while in_flight(queues) < 8:
                    job = f"job-{len(result.jobs):05d}"
                    images = IMAGES_PER_JOB[len(result.jobs) % len(IMAGES_PER_JOB)]
                    queues.send({"id": job, "prompt": f"soak {job}", "n": images})
                    result.jobs[job] = images
                if elapsed >= next_sample:
                    result.rss_samples.append((elapsed, rss_bytes(worker.pid)))
                    next_sample += max(1.0, duration_s / 60)
                time.sleep(0.2)
            drain_started = time.monotonic()
            while in_flight(queues):
                if time.monotonic() - drain_started > 600:
                    raise RuntimeError("the queue did not empty within 600s of the soak's end")
                time.sleep(0.2)
            result.drained_s = time.monotonic() - drain_started
        result.objects = queues.objects()
        result.dead_letters = len(queues.dead_letters())
        return result
    finally:
        aws.stop()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--duration", type=float, default=600.0, help="seconds of jobs arriving (default 600)")
    args = parser.parse_args()
    sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "serving" / "src"))
    from serving.random_model import build_random_pipeline

    with tempfile.TemporaryDirectory() as scratch:
        model = build_random_pipeline("tiny", Path(scratch) / "tiny")
        started = time.monotonic()
        print(f"queue soak: {args.duration:.0f}s of jobs into one worker ...", file=sys.stderr, flush=True)
        result = run_queue_soak(model, args.duration, min(120.0, args.duration / 3), Path(scratch) / "worker.log")
        print(result.summary())
        print(f"queue soak: done in {time.monotonic() - started:.0f}s", file=sys.stderr)
    sys.exit(1 if result.problems() else 0)


if __name__ == "__main__":
    main()
