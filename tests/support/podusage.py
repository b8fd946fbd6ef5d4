"""The pod usage exporter as a process on loopback, and short unix socket paths for the stand-in
kubelet it reads."""

from __future__ import annotations

import contextlib
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path

from nchart.localcluster.processes import free_port, running
from tests.support.readiness import wait_until_answers

EXPORTER = [sys.executable, "-m", "neuron_pod_usage"]


@contextlib.contextmanager
def socket_dir() -> Iterator[Path]:
    """A directory for a unix socket: its path must stay under ~107 bytes, which pytest's tmp paths
    can pass."""
    with tempfile.TemporaryDirectory(prefix="pod-resources-", dir="/tmp") as directory:
        yield Path(directory)


@contextlib.contextmanager
def pod_usage_exporter(socket_path: Path, *arguments: str, instance_id: str | None = None) -> Iterator[int]:
    """The exporter reading `socket_path`, until the block ends; yields its metrics port."""
    port = free_port()
    argv = [*EXPORTER, "--socket", str(socket_path), "--listen-address", "127.0.0.1", "--port", str(port), *arguments]
    if instance_id is not None:
        argv += ["--instance-id", instance_id]
    with running("neuron-pod-usage-exporter", argv, stdout=subprocess.PIPE, stderr=subprocess.STDOUT) as (process, _):
        wait_until_answers(
            f"http://127.0.0.1:{port}/metrics",
            "the pod usage exporter",
            timeout_s=120,
            why_dead=lambda: None if process.poll() is None else process.stdout.read().decode(),  # type: ignore[union-attr]
        )
        yield port
