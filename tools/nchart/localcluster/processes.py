"""Processes the project starts and stops by their own PID: the local control plane, registries,
Prometheus, model servers, benchmark helpers.

A started process is known by its PID *and* its start time (field 22 of /proc/PID/stat, in clock
ticks since boot), both read when it is launched. A stop compares the two, so it never signals a
later process that reused the number, and never misses the one it launched because it is asked for
by another spelling of its name (a full path against a bare command name leaked a registry per test
run). When EKS_NEURON_PROCESS_LEDGER names a file, every start is appended to it as a JSON line,
with who started it; the test session reads it at its end and fails on anything still running.

Only the standard library: the serving benchmark imports this on machines without nchart's
dependencies.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import os
import shlex
import signal
import socket
import ssl
import subprocess
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any

from ..errors import ExitCode, NchartError

LEDGER_ENV = "EKS_NEURON_PROCESS_LEDGER"
# Who started a process: a caller may say; pytest says which test (or fixture setup) runs.
STARTED_BY_ENV = "EKS_NEURON_STARTED_BY"
STOP_TIMEOUT_S = 15.0
# After SIGKILL, how long to wait for the kernel to take the process away.
KILL_WAIT_S = 5.0


def start_ticks(pid: int) -> int | None:
    """The process's start time in clock ticks since boot, or None when no such process runs
    (a zombie counts as gone: it has exited and only waits to be reaped)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text(encoding="utf-8", errors="replace")
    except OSError:
        return None
    # The command name (field 2) is in parentheses and may hold spaces or parentheses itself.
    fields = stat[stat.rfind(")") + 2 :].split()
    if not fields or fields[0] in ("Z", "X"):
        return None
    return int(fields[19])


@dataclasses.dataclass(frozen=True)
class ProcessRecord:
    """What was launched: enough to find the same process again, from this Python process or another."""

    name: str
    argv: tuple[str, ...]
    pid: int
    start_ticks: int
    started_by: str = ""
    log: str = ""

    def alive(self) -> bool:
        return start_ticks(self.pid) == self.start_ticks

    def stop(self, sig: int = signal.SIGTERM, timeout_s: float = STOP_TIMEOUT_S) -> bool:
        """Sends `sig`, then SIGKILL if the process outlives the timeout. True once it is gone."""
        if not self.alive():
            return True
        with contextlib.suppress(ProcessLookupError):
            os.kill(self.pid, sig)
        if self._wait_gone(timeout_s):
            return True
        with contextlib.suppress(ProcessLookupError):
            os.kill(self.pid, signal.SIGKILL)
        return self._wait_gone(KILL_WAIT_S)

    def _wait_gone(self, timeout_s: float) -> bool:
        deadline = time.monotonic() + timeout_s
        while self.alive():
            if time.monotonic() > deadline:
                return False
            time.sleep(0.05)
        return True

    def describe(self) -> str:
        who = f", started by {self.started_by}" if self.started_by else ""
        return f"{self.name} (PID {self.pid}: {shlex.join(self.argv)}){who}"

    def to_json(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> ProcessRecord:
        return cls(**{**data, "argv": tuple(data["argv"])})


def start_process(name: str, argv: Sequence[str], **popen: Any) -> tuple[subprocess.Popen[Any], ProcessRecord]:
    """Launches argv (no shell) with the given Popen options; returns the Popen and its record.

    The start time is read at once: the PID cannot be reused before this process reaps it."""
    process = subprocess.Popen(list(argv), **popen)
    ticks = start_ticks(process.pid)
    if ticks is None:  # it exited already; its record will simply never be alive
        ticks = -1
    log = popen.get("stdout")
    record = ProcessRecord(
        name=name,
        argv=tuple(str(a) for a in argv),
        pid=process.pid,
        start_ticks=ticks,
        started_by=os.environ.get(STARTED_BY_ENV) or os.environ.get("PYTEST_CURRENT_TEST") or "",
        log=str(getattr(log, "name", "")) if log is not None else "",
    )
    _append_to_ledger(record)
    return process, record


@contextlib.contextmanager
def running(
    name: str, argv: Sequence[str], stop_signal: int = signal.SIGTERM, timeout_s: float = STOP_TIMEOUT_S, **popen: Any
) -> Iterator[tuple[subprocess.Popen[Any], ProcessRecord]]:
    """start_process for the length of a with-block: the process is stopped on the way out, whatever
    happened inside; a process that could not be stopped is an error."""
    process, record = start_process(name, argv, **popen)
    try:
        yield process, record
    finally:
        if not record.stop(stop_signal, timeout_s):
            raise RuntimeError(f"could not stop {record.describe()}")
        with contextlib.suppress(subprocess.TimeoutExpired):
            process.wait(timeout=1)


def _append_to_ledger(record: ProcessRecord) -> None:
    ledger = os.environ.get(LEDGER_ENV)
    if not ledger:
        return
    # One short write per line in append mode: concurrent writers do not interleave within a line.
    with open(ledger, "a", encoding="utf-8") as handle:
        handle.write(json.dumps(record.to_json()) + "\n")


def ledger_records(ledger: Path) -> list[ProcessRecord]:
    if not ledger.is_file():
        return []
    return [
        ProcessRecord.from_json(json.loads(line))
        for line in ledger.read_text(encoding="utf-8").splitlines()
        if line.strip()
    ]


def children(parent: int) -> list[ProcessRecord]:
    """The live child processes of `parent` (a zombie is not live), as records."""
    found = []
    for stat_file in Path("/proc").glob("[0-9]*/stat"):
        try:
            stat = stat_file.read_text(encoding="utf-8", errors="replace")
            argv = (stat_file.parent / "cmdline").read_bytes().split(b"\0")
        except OSError:
            continue  # it ended meanwhile
        fields = stat[stat.rfind(")") + 2 :].split()
        if len(fields) < 20 or int(fields[1]) != parent or fields[0] in ("Z", "X"):
            continue
        command = tuple(a.decode(errors="replace") for a in argv if a) or (stat[stat.find("(") + 1 : stat.rfind(")")],)
        found.append(ProcessRecord(command[0].rsplit("/", 1)[-1], command, int(stat_file.parent.name), int(fields[19])))
    return found


def http_ok(url: str, context: ssl.SSLContext | None = None) -> bool:
    """Whether `url` answers 200 within 2 s (a process coming up: no answer yet is False, not an error)."""
    try:
        with urllib.request.urlopen(url, timeout=2, context=context) as response:
            return bool(response.status == 200)
    except (urllib.error.URLError, OSError):
        return False


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def wait_until(check: Callable[[], Any], timeout_s: float, what: str, interval_s: float = 0.2) -> Any:
    """Polls `check` until it returns something truthy; raises NchartError naming `what` on timeout."""
    deadline = time.monotonic() + timeout_s
    last_error: Exception | None = None
    while True:
        try:
            result = check()
            if result:
                return result
        except Exception as error:  # the thing waited for may not answer yet
            last_error = error
        if time.monotonic() > deadline:
            detail = f" (last error: {last_error})" if last_error else ""
            raise NchartError(f"{what} did not happen within {timeout_s:.0f}s{detail}", ExitCode.TOOL_FAILED)
        time.sleep(interval_s)
