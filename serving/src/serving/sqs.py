"""The SQS side of the queue worker: a received message, the thread that keeps held messages hidden
from other workers, and the clients."""

from __future__ import annotations

import dataclasses
import logging
import threading
from typing import Any

from .jobs import Job

log = logging.getLogger(__name__)


@dataclasses.dataclass
class Held:
    """A received message and, once parsed, its job."""

    message_id: str
    receipt: str
    body: str
    receive_count: int
    job: Job | None = None
    finished: bool = False  # deleted, dead-lettered or put back: no longer ours


class VisibilityKeeper:
    """Extends the visibility of the messages in hand, on a thread, until they are released."""

    def __init__(self, sqs: Any, queue_url: str, timeout_s: int, stop: threading.Event) -> None:
        self.sqs, self.queue_url, self.timeout_s = sqs, queue_url, timeout_s
        self.held: dict[str, Held] = {}
        self.lock = threading.Lock()
        self.stop = stop
        self.thread = threading.Thread(target=self._run, name="visibility", daemon=True)

    def start(self) -> None:
        self.thread.start()

    def hold(self, messages: list[Held]) -> None:
        with self.lock:
            self.held.update({m.message_id: m for m in messages})

    def release(self, message: Held) -> None:
        with self.lock:
            self.held.pop(message.message_id, None)

    def _run(self) -> None:
        period = max(1.0, self.timeout_s / 3)
        while not self.stop.wait(period):
            with self.lock:
                entries = [
                    {"Id": str(i), "ReceiptHandle": m.receipt, "VisibilityTimeout": self.timeout_s}
                    for i, m in enumerate(self.held.values())
                ]
            for start in range(0, len(entries), 10):  # SQS takes ten entries per batch call
                try:
                    answer = self.sqs.change_message_visibility_batch(
                        QueueUrl=self.queue_url, Entries=entries[start : start + 10]
                    )
                    for failure in answer.get("Failed", []):
                        log.warning("could not extend a message's visibility: %s", failure.get("Message"))
                except Exception as error:  # the next period tries again; a worker must not die of it
                    log.warning("could not extend visibility: %s", error)


def aws_clients() -> tuple[Any, Any]:
    """SQS and S3 clients with the pod's credentials (EKS Pod Identity or IRSA) and, where set,
    AWS_ENDPOINT_URL (an SQS- and S3-compatible endpoint)."""
    import boto3
    from botocore.config import Config

    config = Config(retries={"max_attempts": 5, "mode": "standard"})
    return boto3.client("sqs", config=config), boto3.client("s3", config=config)
