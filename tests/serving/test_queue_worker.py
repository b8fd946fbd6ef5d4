"""Queued generation (`eks-neuron-serve worker`) against real SQS and S3 wire protocols on loopback
(moto's server, bench/serving/local_aws.py): the worker in this process for what a job may be and how
it fails, and as its own process for SIGKILL in the middle of a batch and SIGTERM. What is checked is
what the queues and the bucket hold afterwards."""

from __future__ import annotations

import json
import signal
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any

import httpx
import pytest
from local_aws import LocalAws, Queues, worker_process

from serving.jobs import InvalidJob, derived_seed, parse_message
from serving.pipeline import BatchKey, ImageGenerator, ImageRequest, load_generator
from serving.settings import Settings
from serving.worker import FAILURE_ATTRIBUTE, RECEIVE_COUNT_ATTRIBUTE, Worker, parse_output
from tests.support.cluster import wait_for
from tests.support.serving import metric_value

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def aws() -> Iterator[LocalAws]:
    local = LocalAws()
    yield local
    local.stop()


@pytest.fixture
def queues(aws: LocalAws) -> Queues:
    return aws.queues()


@pytest.fixture(scope="module")
def generator(tiny_model_dir: Path) -> ImageGenerator:
    return load_generator(tiny_model_dir, "cpu")


class Recording:
    """The loaded generator, recording each batch; `then` runs after a chosen batch (to stop a worker
    mid-run), `fail_on` makes batches holding that prompt raise."""

    def __init__(self, generator: ImageGenerator, fail_on: str | None = None) -> None:
        self.generator = generator
        self.batches: list[list[ImageRequest]] = []
        self.fail_on = fail_on
        self.after: dict[int, Callable[[], None]] = {}
        # Set: each batch waits for it (a batch as long as the test wants).
        self.gate: threading.Event | None = None
        self.entered = threading.Event()

    def __getattr__(self, name: str) -> Any:
        return getattr(self.generator, name)

    def generate(self, key: BatchKey, requests: Sequence[ImageRequest], on_step: Any = None) -> list[Any]:
        self.entered.set()
        if self.gate is not None:
            assert self.gate.wait(timeout=300), "the test never let the batch finish"
        if self.fail_on is not None and any(r.prompt == self.fail_on for r in requests):
            raise RuntimeError("the model refused this batch")
        images = self.generator.generate(key, requests, on_step)
        self.batches.append(list(requests))
        if len(self.batches) in self.after:
            self.after[len(self.batches)]()
        return images


def make_worker(queues: Queues, recording: Recording, tiny_model_dir: Path, **overrides: Any) -> Worker:
    values: dict[str, Any] = {
        "model_dir": tiny_model_dir,
        "backend": "cpu",
        "default_steps": 2,
        "warmup_steps": 0,
        "max_batch_size": 4,
        "queue_url": queues.url,
        "queue_dead_letter_url": queues.dead_letter_url,
        "queue_output_uri": queues.output_uri,
        "queue_wait_s": 0,
        "queue_retry_delay_s": 0,
        "queue_messages": 10,
    }
    values.update(overrides)
    settings = Settings(**values)
    return Worker(settings, lambda _: recording, queues.sqs, queues.s3)  # type: ignore[arg-type,return-value]


def drain(worker: Worker, queues: Queues, receives: int = 20) -> None:
    """Runs the worker until the queue is empty (or `receives` receives)."""
    worker.load_model()
    for _ in range(receives):
        worker.run_once()
        if queues.counts() == (0, 0):
            return


def test_jobs_share_batches_and_each_ends_with_its_images_and_one_result(
    queues: Queues, generator: ImageGenerator, tiny_model_dir: Path
) -> None:
    queues.s3.put_object(
        Bucket=queues.bucket,
        Key="in/many.jsonl",
        Body=b'{"prompt": "a red fox"}\n\n{"prompt": "a blue fox", "seed": 7, "negative_prompt": "blur"}\n',
    )
    single = queues.send({"prompt": "a lighthouse", "n": 3, "seed": 100})
    queues.send({"id": "foxes", "prompts_uri": f"s3://{queues.bucket}/in/many.jsonl", "output_format": "jpeg"})
    queues.send({"id": "slow", "prompt": "a harbour", "steps": 3})
    recording = Recording(generator)
    worker = make_worker(queues, recording, tiny_model_dir)
    drain(worker, queues)

    # Images of different jobs share a batch when steps and guidance agree; other steps run apart.
    assert [len(b) for b in recording.batches] == [4, 1, 1], recording.batches
    assert sorted(queues.objects()) == sorted(
        [f"out/{single}/{i:05d}.png" for i in range(3)]
        + [f"out/{single}/result.json", "out/foxes/00000.jpg", "out/foxes/00001.jpg", "out/foxes/result.json"]
        + ["out/slow/00000.png", "out/slow/result.json"]
    )
    foxes = queues.result("foxes")
    assert foxes["status"] == "succeeded" and foxes["receive_count"] == 1
    assert [(i["prompt"], i["seed"]) for i in foxes["images"]] == [
        ("a red fox", derived_seed("foxes", 0)),
        ("a blue fox", 7),
    ]
    assert [i["seed"] for i in queues.result(single)["images"]] == [100, 101, 102]
    assert queues.result("slow")["steps"] == 3
    image = queues.s3.get_object(Bucket=queues.bucket, Key="out/foxes/00001.jpg")
    assert image["ContentType"] == "image/jpeg" and image["Body"].read()[:2] == b"\xff\xd8"
    assert queues.counts() == (0, 0) and queues.dead_letters() == []
    text = worker.metrics.registry.get_sample_value
    assert text("sd_queue_jobs_received_total") == 3
    assert text("sd_queue_jobs_succeeded_total") == 3
    assert text("sd_images_generated_total") == 6
    assert text("sd_queue_job_age_seconds_count") == 3
    queue = queues.url.rsplit("/", 1)[-1]
    assert text("sd_queue_messages", {"queue": queue, "state": "visible"}) == 0  # read after the last receive


@pytest.mark.parametrize(
    ("body", "says"),
    [
        ("not json", "not JSON"),
        ("[1, 2]", "JSON object"),
        ({"prompt": "x", "prompts_uri": "s3://b/k"}, "exactly one of prompt and prompts_uri"),
        ({"prompt": "x", "steps": 500}, "steps"),
        ({"prompt": "x", "colour": "red"}, "colour"),
        ({"id": "../escape", "prompt": "x"}, "id"),
    ],
    ids=["text", "array", "two-sources", "steps", "unknown-key", "id-path"],
)
def test_a_job_that_can_never_run_goes_to_the_dead_letter_queue_at_once_with_why(
    queues: Queues, generator: ImageGenerator, tiny_model_dir: Path, body: Any, says: str
) -> None:
    message_id = queues.send(body)
    worker = make_worker(queues, Recording(generator), tiny_model_dir)
    drain(worker, queues)
    (dead,) = queues.dead_letters()
    assert dead["Body"] == (body if isinstance(body, str) else json.dumps(body))
    reason = dead["MessageAttributes"][FAILURE_ATTRIBUTE]["StringValue"]
    assert reason.startswith("invalid: ") and says in reason, reason
    assert dead["MessageAttributes"][RECEIVE_COUNT_ATTRIBUTE]["StringValue"] == "1"
    assert queues.counts() == (0, 0) and queues.objects() == []
    assert message_id


def test_a_poison_job_is_tried_max_receives_times_then_dead_lettered_and_the_others_finish(
    queues: Queues, generator: ImageGenerator, tiny_model_dir: Path
) -> None:
    poison = queues.send({"id": "poison", "prompt": "the poison prompt"})
    queues.send({"id": "fine", "prompt": "a calm sea"})
    queues.send({"id": "missing", "prompts_uri": f"s3://{queues.bucket}/in/absent.jsonl"})
    recording = Recording(generator, fail_on="the poison prompt")
    worker = make_worker(queues, recording, tiny_model_dir, queue_max_receives=3, max_batch_size=1)
    drain(worker, queues)

    dead = {json.loads(m["Body"])["id"]: m for m in queues.dead_letters()}
    assert set(dead) == {"poison", "missing"}
    for job, reason in (("poison", "generation: RuntimeError: the model refused this batch"), ("missing", "prompts")):
        attributes = dead[job]["MessageAttributes"]
        assert attributes[RECEIVE_COUNT_ATTRIBUTE]["StringValue"] == "3"
        assert attributes[FAILURE_ATTRIBUTE]["StringValue"].startswith(reason), attributes
    assert sorted(queues.objects()) == ["out/fine/00000.png", "out/fine/result.json"]
    poison_tries = [b for b in recording.batches if b[0].prompt == "the poison prompt"]
    assert poison_tries == []  # it failed before an image was made, three times
    text = worker.metrics.registry.get_sample_value
    assert text("sd_queue_jobs_failed_total", {"reason": "generation"}) == 3
    assert text("sd_queue_jobs_failed_total", {"reason": "prompts"}) == 3
    assert text("sd_queue_jobs_dead_lettered_total") == 2
    assert text("sd_queue_jobs_redelivered_total") == 4
    assert queues.counts() == (0, 0) and poison


def test_stopping_finishes_the_batch_in_hand_and_returns_the_rest_at_once(
    queues: Queues, generator: ImageGenerator, tiny_model_dir: Path
) -> None:
    for name in ("one", "two", "three", "four"):
        queues.send({"id": name, "prompt": f"picture {name}"})
    recording = Recording(generator)
    # A visibility far longer than the test: a message is visible again only if the worker returned it.
    worker = make_worker(queues, recording, tiny_model_dir, max_batch_size=2, queue_visibility_timeout_s=3600)
    recording.after[1] = worker.stop
    worker.load_model()
    worker.run_once()
    assert len(recording.batches) == 1
    done = {key.split("/")[1] for key in queues.objects() if key.endswith("result.json")}
    assert len(done) == 2
    assert queues.counts() == (2, 0)
    assert worker.metrics.registry.get_sample_value("sd_queue_jobs_returned_total") == 2


def test_a_batch_longer_than_the_visibility_timeout_keeps_its_message_hidden(
    queues: Queues, generator: ImageGenerator, tiny_model_dir: Path
) -> None:
    queues.send({"id": "long", "prompt": "a slow one"})
    recording = Recording(generator)
    recording.gate = threading.Event()
    worker = make_worker(queues, recording, tiny_model_dir, queue_visibility_timeout_s=3)
    worker.load_model()
    worker.keeper.start()
    running = threading.Thread(target=worker.run_once, daemon=True)
    running.start()
    try:
        assert recording.entered.wait(timeout=120)
        # Three visibility timeouts into the batch: still hidden, because the worker kept extending it.
        deadline = time.monotonic() + 9
        while time.monotonic() < deadline:
            assert queues.counts() == (0, 1)
            time.sleep(0.5)
        stolen = queues.sqs.receive_message(QueueUrl=queues.url, WaitTimeSeconds=0)
        assert "Messages" not in stolen
    finally:
        recording.gate.set()
        running.join(timeout=120)
        worker.stopping.set()
    assert queues.result("long")["receive_count"] == 1
    assert queues.counts() == (0, 0)


def test_a_redelivered_job_that_already_has_its_result_is_deleted_without_running(
    queues: Queues, generator: ImageGenerator, tiny_model_dir: Path
) -> None:
    queues.s3.put_object(Bucket=queues.bucket, Key="out/done-before/result.json", Body=b"{}")
    queues.send({"id": "done-before", "prompt": "x"})
    recording = Recording(generator)
    drain(make_worker(queues, recording, tiny_model_dir), queues)
    assert recording.batches == [] and queues.counts() == (0, 0)


def test_a_queue_that_fails_outright_is_retried_not_fatal(
    queues: Queues,
    generator: ImageGenerator,
    tiny_model_dir: Path,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:
    import serving.worker

    monkeypatch.setattr(serving.worker, "AWS_RETRY_S", 0.0)
    worker = make_worker(queues, Recording(generator), tiny_model_dir)
    worker.load_model()
    queues.sqs.delete_queue(QueueUrl=queues.url)
    try:
        worker.run(max_receives=2)
    finally:
        worker.stopping.set()
    failures = [r for r in caplog.records if "the queue or the bucket failed" in r.getMessage()]
    assert len(failures) == 2 and "NonExistentQueue" in failures[0].getMessage(), caplog.text


def test_message_and_output_parsing_name_what_is_wrong() -> None:
    assert parse_message('{"prompt": "a"}').n == 1
    with pytest.raises(InvalidJob, match="n, negative_prompt and seed go on each line"):
        parse_message('{"prompts_uri": "s3://b/k", "seed": 1}')
    assert parse_output("s3://bucket").key == ""
    assert parse_output("s3://bucket/images").key == "images/"
    with pytest.raises(ValueError, match="SD_QUEUE_OUTPUT_URI"):
        parse_output("bucket/images")


# --- the worker as a process ----------------------------------------------------------------------------


def metric(port: str, name: str) -> float:
    """The worker's metric; 0 while its metrics server is not up yet."""
    try:
        return metric_value(httpx.get(f"http://127.0.0.1:{port}/metrics").text, name)
    except httpx.TransportError:
        return 0.0


def test_sigkill_in_the_middle_of_a_batch_loses_nothing_and_duplicates_nothing(
    queues: Queues, tiny_model_dir: Path, tmp_path: Path
) -> None:
    jobs = {f"job-{i}": 3 for i in range(4)}
    for job, n in jobs.items():
        queues.send({"id": job, "prompt": f"scene {job}", "n": n})
    env = queues.worker_env(tiny_model_dir, SD_MAX_BATCH_SIZE="2", SD_QUEUE_VISIBILITY_TIMEOUT_S="6")
    with worker_process(env, tmp_path / "first.log") as first:
        # Some images written, no job complete yet: the worker is in the middle of its work.
        wait_for(lambda: queues.objects(), "the first images", timeout_s=600, interval_s=0.2)
        first.send_signal(signal.SIGKILL)
        first.wait(timeout=30)
    finished_before = [k for k in queues.objects() if k.endswith("result.json")]
    assert len(finished_before) < len(jobs), finished_before  # it died with work in hand
    with worker_process(dict(env), tmp_path / "second.log") as second:
        wait_for(lambda: queues.counts() == (0, 0), "the queue to empty", timeout_s=600, interval_s=0.2)
        assert second.poll() is None
    expected = {f"out/{job}/{i:05d}.png" for job, n in jobs.items() for i in range(n)}
    expected |= {f"out/{job}/result.json" for job in jobs}
    keys = queues.objects()
    assert sorted(keys) == sorted(expected)  # each once: S3 keys are unique, and nothing extra
    assert queues.dead_letters() == []
    redelivered = [queues.result(job)["receive_count"] for job in jobs]
    assert max(redelivered) >= 2, redelivered  # the killed worker's jobs came back


def test_sigterm_returns_the_jobs_in_hand_and_the_worker_exits_cleanly(
    queues: Queues, tiny_model_dir: Path, tmp_path: Path
) -> None:
    for i in range(6):
        queues.send({"id": f"job-{i}", "prompt": f"scene {i}", "n": 2})
    env = queues.worker_env(
        tiny_model_dir, SD_MAX_BATCH_SIZE="2", SD_QUEUE_MESSAGES="6", SD_QUEUE_VISIBILITY_TIMEOUT_S="3600"
    )
    with worker_process(env, tmp_path / "worker.log") as worker:
        wait_for(lambda: metric(env["SD_PORT"], "sd_queue_jobs_in_hand") > 0, "jobs in hand", 300, 0.2)
        worker.send_signal(signal.SIGTERM)
        assert worker.wait(timeout=300) == 0, (tmp_path / "worker.log").read_text()[-3000:]
    log = (tmp_path / "worker.log").read_text()
    assert "worker: stopped" in log
    done = {key.split("/")[1] for key in queues.objects() if key.endswith("result.json")}
    # Returned, not left hidden for the hour of their visibility timeout.
    assert queues.counts() == (6 - len(done), 0), (done, log[-2000:])
    assert len(done) < 6
