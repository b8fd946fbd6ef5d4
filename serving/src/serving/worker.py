"""Queued generation: `eks-neuron-serve worker` takes jobs from an SQS queue and writes images to S3.

The loop, per receive (up to SD_QUEUE_MESSAGES messages):
1. Each message becomes a Job (jobs.py); one that can never run goes to the dead-letter queue at once.
2. The jobs' images run through the same ImageGenerator as the HTTP server, in batches of up to
   SD_MAX_BATCH_SIZE images that share steps and guidance (images of different jobs share a batch).
3. Each image is written to S3 as its batch finishes. A job whose images are all written gets its
   result.json (the completion record), then its message is deleted.

While messages are held, a thread extends their visibility every third of SD_QUEUE_VISIBILITY_TIMEOUT_S,
so a long batch is not handed to a second worker; a worker that dies stops extending, and its messages
come back after at most that long. A failed job is retried after SD_QUEUE_RETRY_DELAY_S; on its
SD_QUEUE_MAX_RECEIVES-th failure it is sent to SD_QUEUE_DEAD_LETTER_URL with the reason in its message
attributes, and deleted. SIGTERM lets the batch in hand finish, completes the jobs it finished, and
returns every other message to the queue at once (visibility 0).

What makes a redelivered job harmless: its image keys and seeds come from its id (jobs.py), so a
second run writes the same objects again; and a job whose result.json already exists is deleted
without running.
"""

from __future__ import annotations

import json
import logging
import os
import signal
import socket
import threading
import time
from collections.abc import Callable, Iterator
from types import FrameType
from typing import Any

from .artefacts import S3Object
from .encoding import MEDIA_TYPES, encode
from .jobs import InvalidJob, Job, PromptsUnreadable, parse_message
from .metrics import WorkerMetrics
from .pipeline import ImageGenerator
from .settings import Settings
from .sqs import Held, VisibilityKeeper

log = logging.getLogger(__name__)

# The message attributes a dead-lettered job carries: why, after how many receives, from which queue.
FAILURE_ATTRIBUTE = "eks-neuron-failure"
RECEIVE_COUNT_ATTRIBUTE = "eks-neuron-receive-count"
SOURCE_QUEUE_ATTRIBUTE = "eks-neuron-source-queue"
# SQS refuses a message attribute value over 256 KiB; a reason is one line.
MAX_REASON_CHARS = 2000
# Seconds between tries when SQS or S3 fails outright.
AWS_RETRY_S = 5.0


def parse_output(uri: str) -> S3Object:
    """s3://bucket or s3://bucket/prefix: the folder every job's folder goes under (key ends with / or is empty)."""
    if not uri.startswith("s3://") or not uri[5:].split("/", 1)[0]:
        raise ValueError(f"SD_QUEUE_OUTPUT_URI must look like s3://bucket/prefix/, got {uri!r}")
    bucket, _, prefix = uri[5:].partition("/")
    return S3Object(bucket, prefix if not prefix or prefix.endswith("/") else prefix + "/")


class Worker:
    """The queue loop. `load` gives the generator (tests pass their own); the clients come from boto3."""

    def __init__(
        self,
        settings: Settings,
        load: Callable[[Settings], ImageGenerator],
        sqs: Any,
        s3: Any,
        metrics: WorkerMetrics | None = None,
    ) -> None:
        if not settings.queue_url:
            raise ValueError("SD_QUEUE_URL is not set: the worker needs the job queue's URL")
        if not settings.queue_output_uri:
            raise ValueError("SD_QUEUE_OUTPUT_URI is not set: the worker needs s3://bucket/prefix/ for the images")
        self.settings = settings
        self.output = parse_output(settings.queue_output_uri)
        self.load = load
        self.sqs, self.s3 = sqs, s3
        self.metrics = metrics or WorkerMetrics()
        self.stopping = threading.Event()
        self.keeper = VisibilityKeeper(sqs, settings.queue_url, settings.queue_visibility_timeout_s, self.stopping)
        self.generator: ImageGenerator | None = None
        self.name = os.environ.get("POD_NAME") or socket.gethostname()
        self.queue_name = settings.queue_url.rstrip("/").rsplit("/", 1)[-1]

    # --- life cycle ---------------------------------------------------------------------------------

    def stop(self, signum: int = signal.SIGTERM, frame: FrameType | None = None) -> None:
        """SIGTERM: finish the batch in hand, put the rest back, exit."""
        if not self.stopping.is_set():
            log.info("stopping: finishing the batch in hand, returning the other jobs to the queue")
        self.stopping.set()

    def load_model(self) -> None:
        started = time.perf_counter()
        self.generator = self.load(self.settings)
        loaded = time.perf_counter()
        self.metrics.model_load_phase_seconds.labels("load").set(loaded - started)
        if self.settings.warmup_steps:
            self.generator.warm_up(self.settings.warmup_steps)
        self.metrics.model_load_phase_seconds.labels("warmup").set(time.perf_counter() - loaded)
        self.metrics.model_load_seconds.set(time.perf_counter() - started)
        g = self.generator
        self.metrics.info.labels(g.backend, str(g.traced).lower(), str(g.width), str(g.height)).set(1)
        self.metrics.ready.set(1)
        log.info("ready: %s backend, %dx%d images, queue %s", g.backend, g.width, g.height, self.settings.queue_url)

    def run(self, max_receives: int | None = None) -> None:
        """Receive and run jobs until stopped (or `max_receives` receive calls, for tests)."""
        if self.generator is None:
            self.load_model()
        self.keeper.start()
        received = 0
        while not self.stopping.is_set() and (max_receives is None or received < max_receives):
            try:
                self.run_once()
            except self.aws_errors as error:
                # SQS or S3 out of reach or refusing: the jobs in hand went back; try again shortly
                # rather than exit, which would only restart the pod and load the model again.
                log.error("the queue or the bucket failed: %s; retrying in %gs", error, AWS_RETRY_S)
                self.stopping.wait(AWS_RETRY_S)
            received += 1
        self.metrics.ready.set(0)

    @property
    def aws_errors(self) -> tuple[type[Exception], ...]:
        from botocore.exceptions import BotoCoreError, ClientError

        return (BotoCoreError, ClientError)

    # --- one receive ---------------------------------------------------------------------------------

    def receive(self) -> list[Held]:
        answer = self.sqs.receive_message(
            QueueUrl=self.settings.queue_url,
            MaxNumberOfMessages=self.settings.queue_messages,
            WaitTimeSeconds=self.settings.queue_wait_s,
            VisibilityTimeout=self.settings.queue_visibility_timeout_s,
            MessageSystemAttributeNames=["ApproximateReceiveCount", "SentTimestamp"],
        )
        self._count_queue()
        now_ms = time.time() * 1000
        for m in answer.get("Messages", []):
            self.metrics.job_age_seconds.observe(max(0.0, now_ms - int(m["Attributes"]["SentTimestamp"])) / 1000)
        held = [
            Held(m["MessageId"], m["ReceiptHandle"], m["Body"], int(m["Attributes"]["ApproximateReceiveCount"]))
            for m in answer.get("Messages", [])
        ]
        for message in held:
            self.metrics.jobs_received.inc()
            if message.receive_count > 1:
                self.metrics.jobs_redelivered.inc()
        return held

    def _count_queue(self) -> None:
        states = {
            "ApproximateNumberOfMessages": "visible",
            "ApproximateNumberOfMessagesNotVisible": "in_flight",
            "ApproximateNumberOfMessagesDelayed": "delayed",
        }
        try:
            counts = self.sqs.get_queue_attributes(QueueUrl=self.settings.queue_url, AttributeNames=list(states))
        except Exception as error:  # a gap in a gauge, not a reason to stop working
            log.warning("could not read the queue's counts: %s", error)
            return
        for attribute, state in states.items():
            value = counts["Attributes"].get(attribute)
            if value is not None:
                self.metrics.queue_messages.labels(self.queue_name, state).set(int(value))

    def run_once(self) -> None:
        messages = self.receive()
        if not messages:
            return
        self.keeper.hold(messages)
        self.metrics.jobs_in_hand.set(len(messages))
        try:
            runnable = [m for m in messages if self._prepare(m)]
            for batch in self._batches(runnable):
                if self.stopping.is_set():
                    break
                self._run_batch(batch)
                for message in runnable:
                    if not message.finished and message.job is not None and message.job.complete:
                        self._complete(message)
        finally:
            # Whatever is not finished now goes back: at shutdown, at once, for another worker.
            for message in messages:
                if not message.finished:
                    self._put_back(message, 0)
                    self.metrics.jobs_returned.inc()
            self.metrics.jobs_in_hand.set(0)

    def _prepare(self, message: Held) -> bool:
        """Parses the message into a job; False when it will not run now (failed, or already done)."""
        try:
            body = parse_message(message.body)
            message.job = Job.of(message.message_id, body, self.output, self.settings.default_steps, self.s3)
        except InvalidJob as error:
            self._fail(message, "invalid", str(error), retry=False)
            return False
        except PromptsUnreadable as error:
            self._fail(message, "prompts", str(error))
            return False
        if self._already_done(message.job):
            log.info("job %s already has its result; deleting the redelivered message", message.job.id)
            self._delete(message)
            return False
        return True

    def _already_done(self, job: Job) -> bool:
        from botocore.exceptions import ClientError

        try:
            self.s3.head_object(Bucket=job.bucket, Key=job.result_key)
        except ClientError:
            return False
        return True

    def _batches(self, messages: list[Held]) -> Iterator[list[tuple[Held, int]]]:
        """(message, image index) in job order, cut into batches of one BatchKey and at most
        max_batch_size images; a job that failed meanwhile is skipped."""
        batch: list[tuple[Held, int]] = []
        for message in messages:
            assert message.job is not None
            for index in range(len(message.job.requests)):
                if batch and (len(batch) == self.settings.max_batch_size or batch[0][0].job.key != message.job.key):  # type: ignore[union-attr]
                    yield batch
                    batch = []
                if not message.finished:
                    batch.append((message, index))
        if batch:
            yield batch

    def _run_batch(self, batch: list[tuple[Held, int]]) -> None:
        assert self.generator is not None
        batch = [(m, i) for m, i in batch if not m.finished]
        if not batch:
            return
        key = batch[0][0].job.key  # type: ignore[union-attr]
        requests = [m.job.requests[i] for m, i in batch]  # type: ignore[union-attr]
        started = time.perf_counter()
        try:
            images = self.generator.generate(key, requests, on_step=self.metrics.step_seconds.observe)
        except Exception as error:  # the jobs in this batch fail; the others go on
            for message in {m.message_id: m for m, _ in batch}.values():
                self._fail(message, "generation", f"{type(error).__name__}: {error}")
            return
        self.metrics.generation_seconds.observe(time.perf_counter() - started)
        self.metrics.batch_size.observe(len(batch))
        self.metrics.images.inc(len(images))
        for (message, index), image in zip(batch, images, strict=True):
            if message.finished:
                continue
            job = message.job
            assert job is not None
            image_format = job.message.output_format
            encode_started = time.perf_counter()
            data = encode(image, image_format, self.settings)
            self.metrics.encode_seconds.labels(image_format).observe(time.perf_counter() - encode_started)
            try:
                self.s3.put_object(
                    Bucket=job.bucket, Key=job.image_key(index), Body=data, ContentType=MEDIA_TYPES[image_format]
                )
            except Exception as error:
                self._fail(message, "output", f"writing s3://{job.bucket}/{job.image_key(index)}: {error}")
                continue
            job.written.add(index)

    # --- ends of a message -----------------------------------------------------------------------------

    def _complete(self, message: Held) -> None:
        job = message.job
        assert job is not None
        result = job.result(message.message_id, message.receive_count, self.name)
        try:
            self.s3.put_object(
                Bucket=job.bucket,
                Key=job.result_key,
                Body=json.dumps(result, indent=2).encode(),
                ContentType="application/json",
            )
        except Exception as error:
            self._fail(message, "output", f"writing s3://{job.bucket}/{job.result_key}: {error}")
            return
        self._delete(message)
        self.metrics.jobs_succeeded.inc()
        log.info("job %s: %d images under s3://%s/%s", job.id, len(job.requests), job.bucket, job.folder)

    def _fail(self, message: Held, reason: str, detail: str, retry: bool = True) -> None:
        """A failed attempt: retried after the retry delay, or, when it cannot help or this was the last
        try, sent to the dead-letter queue with the reason."""
        self.metrics.jobs_failed.labels(reason).inc()
        last = not retry or message.receive_count >= self.settings.queue_max_receives
        log.warning("message %s failed (%s, receive %d): %s", message.message_id, reason, message.receive_count, detail)
        if last and self.settings.queue_dead_letter_url:
            self.sqs.send_message(
                QueueUrl=self.settings.queue_dead_letter_url,
                MessageBody=message.body,
                MessageAttributes={
                    FAILURE_ATTRIBUTE: {"DataType": "String", "StringValue": f"{reason}: {detail}"[:MAX_REASON_CHARS]},
                    RECEIVE_COUNT_ATTRIBUTE: {"DataType": "Number", "StringValue": str(message.receive_count)},
                    SOURCE_QUEUE_ATTRIBUTE: {"DataType": "String", "StringValue": self.settings.queue_url},
                },
            )
            self._delete(message)
            self.metrics.jobs_dead_lettered.inc()
            return
        # Without a dead-letter URL the queue's own redrive policy moves it, without the reason.
        self._put_back(message, self.settings.queue_retry_delay_s)

    def _delete(self, message: Held) -> None:
        self.sqs.delete_message(QueueUrl=self.settings.queue_url, ReceiptHandle=message.receipt)
        message.finished = True
        self.keeper.release(message)

    def _put_back(self, message: Held, delay_s: int) -> None:
        self.keeper.release(message)
        message.finished = True
        try:
            self.sqs.change_message_visibility(
                QueueUrl=self.settings.queue_url, ReceiptHandle=message.receipt, VisibilityTimeout=delay_s
            )
        except Exception as error:  # it comes back when its visibility runs out anyway
            log.warning("could not return message %s: %s", message.message_id, error)
