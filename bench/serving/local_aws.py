"""SQS and S3 on loopback (moto in server mode, a real HTTP server speaking both wire protocols), the
queue, dead-letter queue and bucket a queue worker needs, and the worker as a process: for the queue
tests and the queue soak (not shipped).

Why moto: one pip-installed process serves both SQS and S3 (ElasticMQ is SQS only and needs a JVM
plus a second store for S3; LocalStack wants a container runtime and many services). It keeps the
SQS semantics the worker relies on: visibility timeouts and their extension, ApproximateReceiveCount,
redrive to a dead-letter queue, message attributes.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import os
import signal
import subprocess
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

try:
    from nchart.localcluster.processes import free_port, running
except ImportError:  # a machine with only the checkout
    sys.path.append(str(Path(__file__).resolve().parents[2] / "tools"))
    from nchart.localcluster.processes import free_port, running

CREDENTIALS = {"AWS_ACCESS_KEY_ID": "test", "AWS_SECRET_ACCESS_KEY": "test", "AWS_DEFAULT_REGION": "us-east-1"}


@dataclasses.dataclass
class Queues:
    """One test's job queue, dead-letter queue and output bucket."""

    endpoint: str
    sqs: Any
    s3: Any
    url: str
    dead_letter_url: str
    bucket: str

    @property
    def output_uri(self) -> str:
        return f"s3://{self.bucket}/out/"

    def send(self, body: dict[str, Any] | str) -> str:
        text = body if isinstance(body, str) else json.dumps(body)
        return str(self.sqs.send_message(QueueUrl=self.url, MessageBody=text)["MessageId"])

    def counts(self, url: str | None = None) -> tuple[int, int]:
        """(visible, in flight) messages."""
        attributes = self.sqs.get_queue_attributes(
            QueueUrl=url or self.url,
            AttributeNames=["ApproximateNumberOfMessages", "ApproximateNumberOfMessagesNotVisible"],
        )["Attributes"]
        return int(attributes["ApproximateNumberOfMessages"]), int(attributes["ApproximateNumberOfMessagesNotVisible"])

    def dead_letters(self) -> list[dict[str, Any]]:
        """Every message in the dead-letter queue (received once, left there)."""
        found: dict[str, dict[str, Any]] = {}
        for _ in range(5):
            answer = self.sqs.receive_message(
                QueueUrl=self.dead_letter_url,
                MaxNumberOfMessages=10,
                VisibilityTimeout=600,
                MessageAttributeNames=["All"],
                MessageSystemAttributeNames=["All"],
            )
            for message in answer.get("Messages", []):
                found[message["MessageId"]] = message
            if not answer.get("Messages"):
                break
        return list(found.values())

    def objects(self, prefix: str = "out/") -> list[str]:
        keys: list[str] = []
        for page in self.s3.get_paginator("list_objects_v2").paginate(Bucket=self.bucket, Prefix=prefix):
            keys.extend(item["Key"] for item in page.get("Contents", []))
        return keys

    def result(self, job_id: str) -> dict[str, Any]:
        body = self.s3.get_object(Bucket=self.bucket, Key=f"out/{job_id}/result.json")["Body"].read()
        return dict(json.loads(body))

    def worker_env(self, model_dir: Path, **settings: str) -> dict[str, str]:
        return {
            **CREDENTIALS,
            "AWS_ENDPOINT_URL": self.endpoint,
            "HF_HUB_OFFLINE": "1",
            "SD_MODEL_DIR": str(model_dir),
            "SD_BACKEND": "cpu",
            "SD_DEFAULT_STEPS": "2",
            "SD_WARMUP_STEPS": "0",
            "SD_QUEUE_URL": self.url,
            "SD_QUEUE_DEAD_LETTER_URL": self.dead_letter_url,
            "SD_QUEUE_OUTPUT_URI": self.output_uri,
            "SD_QUEUE_WAIT_S": "1",
            **settings,
        }


class LocalAws:
    """moto's server on 127.0.0.1 (a free port), in this process's threads."""

    def __init__(self) -> None:
        import logging

        from moto.server import ThreadedMotoServer

        logging.getLogger("werkzeug").setLevel(logging.WARNING)  # a line per request otherwise

        os.environ.update({k: os.environ.get(k, v) for k, v in CREDENTIALS.items()})
        self.server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
        self.server.start()
        host, port = self.server.get_host_and_port()
        self.endpoint = f"http://{host}:{port}"

    def client(self, service: str) -> Any:
        import boto3

        return boto3.client(
            service,
            endpoint_url=self.endpoint,
            region_name=CREDENTIALS["AWS_DEFAULT_REGION"],
            aws_access_key_id=CREDENTIALS["AWS_ACCESS_KEY_ID"],
            aws_secret_access_key=CREDENTIALS["AWS_SECRET_ACCESS_KEY"],
        )

    def queues(self, redrive_max_receives: int = 10) -> Queues:
        """A fresh queue (its redrive policy moving a message after `redrive_max_receives` receives, as
        the Terraform sets it), its dead-letter queue, and a bucket."""
        name = f"jobs-{uuid.uuid4().hex[:12]}"
        sqs, s3 = self.client("sqs"), self.client("s3")
        dead = sqs.create_queue(QueueName=f"{name}-dlq")["QueueUrl"]
        dead_arn = sqs.get_queue_attributes(QueueUrl=dead, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]
        redrive = json.dumps({"deadLetterTargetArn": dead_arn, "maxReceiveCount": str(redrive_max_receives)})
        url = sqs.create_queue(QueueName=name, Attributes={"RedrivePolicy": redrive})["QueueUrl"]
        s3.create_bucket(Bucket=name)
        return Queues(self.endpoint, sqs, s3, url, dead, name)

    def stop(self) -> None:
        self.server.stop()


@contextlib.contextmanager
def local_aws() -> Iterator[LocalAws]:
    aws = LocalAws()
    try:
        yield aws
    finally:
        aws.stop()


@contextlib.contextmanager
def worker_process(env: dict[str, str], log: Path, stop_timeout_s: float = 120) -> Iterator[subprocess.Popen[bytes]]:
    """`python -m serving worker` with the given settings, its metrics on a free loopback port
    (env SD_PORT after the call); SIGTERM on exit if it still runs."""
    port = free_port()
    env.update({"SD_HOST": "127.0.0.1", "SD_PORT": str(port)})
    with (
        log.open("ab") as out,
        running(
            "queue worker",
            [sys.executable, "-m", "serving", "worker"],
            signal.SIGTERM,
            stop_timeout_s,
            env={**os.environ, **env},
            stdout=out,
            stderr=subprocess.STDOUT,
        ) as (process, _),
    ):
        yield process
