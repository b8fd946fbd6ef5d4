"""Starting and stopping processes by PID (nchart.localcluster.processes) and the session guard that fails when a
test leaves one running (tests/support/process_guard.py), each run for real."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest
from click.testing import CliRunner

from nchart.cli import cli
from nchart.localcluster.cluster import LocalCluster
from nchart.localcluster.processes import LEDGER_ENV, ProcessRecord, ledger_records, running, start_process, start_ticks
from tests.support.charts import PROJECT, ROOT

SLEEP = shutil.which("sleep") or "/bin/sleep"


def test_a_process_started_by_its_full_path_is_stopped_and_gone() -> None:
    process, record = start_process("sleeper", [SLEEP, "300"])
    assert record.argv[0] == SLEEP and Path(SLEEP).is_absolute()
    assert record.alive()
    assert record.stop()
    assert not record.alive()
    assert process.wait(timeout=5) == -signal.SIGTERM
    assert start_ticks(process.pid) is None


def test_a_process_that_ignores_sigterm_is_killed(tmp_path: Path) -> None:
    trapped = tmp_path / "trapped"
    script = f"trap '' TERM; touch {trapped}; while :; do sleep 0.1; done"
    process, record = start_process("stubborn", ["/bin/sh", "-c", script])
    while not trapped.exists():  # SIGTERM before the trap is set would end it
        assert process.poll() is None
        time.sleep(0.02)
    assert record.stop(signal.SIGTERM, timeout_s=0.5)
    assert process.wait(timeout=5) == -signal.SIGKILL


def test_a_reused_pid_is_not_the_process_started() -> None:
    process, record = start_process("short", [SLEEP, "300"])
    try:
        # Same PID, another start time: what a later process that got the number looks like.
        impostor = ProcessRecord("short", record.argv, record.pid, record.start_ticks + 1)
        assert not impostor.alive()
        assert impostor.stop()  # nothing to stop, and nothing signalled
        assert record.alive()
    finally:
        record.stop()
        process.wait(timeout=5)


def test_the_with_block_stops_its_process_when_the_block_raises() -> None:
    with pytest.raises(RuntimeError, match="mid-way"), running("sleeper", [SLEEP, "300"]) as (_, record):
        assert record.alive()
        raise RuntimeError("the fixture failed mid-way")
    assert not record.alive()


def test_starts_are_written_to_the_ledger_with_who_started_them(tmp_path: Path) -> None:
    ledger = tmp_path / "ledger.jsonl"
    env = {**os.environ, LEDGER_ENV: str(ledger), "EKS_NEURON_STARTED_BY": "the ledger test"}
    code = "from nchart.localcluster.processes import start_process; start_process('sleeper', ['sleep', '0'])[0].wait()"
    subprocess.run([sys.executable, "-c", code], env=env, check=True, timeout=60)
    [record] = ledger_records(ledger)
    assert record.name == "sleeper" and record.argv == ("sleep", "0") and record.started_by == "the ledger test"
    assert json.loads(ledger.read_text())["pid"] == record.pid


GUARDED_SESSION = """
import pytest
import shutil
from nchart.localcluster.processes import running, start_process

SLEEP = shutil.which("sleep")


@pytest.fixture
def half_set_up():
    with running("stopped-by-fixture", [SLEEP, "300"]):
        raise RuntimeError("the fixture failed mid-way")
        yield


def test_leaks_a_process():
    start_process("leaked-sleeper", [SLEEP, "300"])


def test_fixture_fails_mid_way(half_set_up):
    pass
"""


def guard_report(output: str) -> list[str]:
    """The guard's lines: its count, then one per process."""
    section = output.split("processes left running", 1)[1].splitlines()[1:]
    return section[: section.index("")] if "" in section else section


def run_inner_session(tmp_path: Path, body: str) -> subprocess.CompletedProcess[str]:
    (tmp_path / "test_inner.py").write_text(textwrap.dedent(body))
    env = {k: v for k, v in os.environ.items() if k not in (LEDGER_ENV, "PYTEST_ADDOPTS")}
    env["PYTHONPATH"] = os.pathsep.join([str(ROOT), env.get("PYTHONPATH", "")])
    return subprocess.run(
        [sys.executable, "-m", "pytest", "-p", "tests.support.process_guard", "-p", "no:cacheprovider", "-q", "--rootdir", str(tmp_path), str(tmp_path)],
        cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300,
    )  # fmt: skip


def test_the_session_fails_naming_a_process_a_test_left_running(tmp_path: Path) -> None:
    result = run_inner_session(tmp_path, GUARDED_SESSION)
    output = result.stdout + result.stderr
    assert result.returncode == 1, output
    report = guard_report(output)
    assert report[0] == "1 process(es) started by the tests still ran at the end of the session:", report
    # The fixture that raised still stopped what it had started: only the leak is named.
    [leak] = report[1:]
    assert leak.startswith("  leaked-sleeper (PID ") and f"{SLEEP} 300)" in leak, leak
    assert leak.endswith("started by test_inner.py::test_leaks_a_process (call) -> stopped now"), leak
    assert "1 failed, 1 passed" in output or "1 passed, 1 error" in output, output


def test_a_clean_session_passes_the_guard(tmp_path: Path) -> None:
    body = """
    import shutil
    from nchart.localcluster.processes import running

    def test_stops_what_it_starts():
        with running("sleeper", [shutil.which("sleep"), "300"]) as (_, record):
            assert record.alive()
    """
    result = run_inner_session(tmp_path, body)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "processes left running" not in result.stdout


def test_cluster_down_reports_a_process_it_could_not_stop(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A process that survives SIGKILL (uninterruptible sleep, say) cannot be made on demand: a real
    running process whose stop is made to fail stands for one. `nchart cluster down` names it, exits
    5 and keeps it in the state file for another try."""
    process, record = start_process("etcd", [SLEEP, "300"])
    try:
        state = tmp_path / "state"
        state.mkdir()
        (state / "state.json").write_text(json.dumps({"ports": {}, "processes": {"etcd": record.to_json()}}))
        monkeypatch.setattr(ProcessRecord, "stop", lambda self, *args, **kwargs: False)
        result = CliRunner(mix_stderr=False).invoke(
            cli, ["--root", str(ROOT), "cluster", "down", "--state-dir", str(state)]
        )
        assert result.exit_code == 5, result.stderr
        assert f"could not stop etcd (PID {record.pid}: {SLEEP} 300)" in result.stderr
        assert json.loads((state / "state.json").read_text())["processes"]["etcd"]["pid"] == record.pid
        monkeypatch.undo()
        assert LocalCluster(PROJECT, state).down() == (["etcd"], [])
        assert not record.alive()
    finally:
        record.stop()
        process.wait(timeout=5)


def test_the_session_fails_on_a_process_started_around_the_mechanism(tmp_path: Path) -> None:
    """How the registry fixture leaked: started by its full path with Popen, stopped by a bare name
    the old check compared against /proc/PID/cmdline, so nothing was signalled."""
    body = """
    import shutil
    import subprocess

    def test_starts_by_path_and_stops_by_name():
        process = subprocess.Popen([shutil.which("sleep"), "300"], start_new_session=True)
        first_word = open(f"/proc/{process.pid}/cmdline", "rb").read().split(b"\\\\0")[0].decode()
        if first_word == "sleep":  # the old stop: only when the names agree
            process.terminate()
    """
    result = run_inner_session(tmp_path, body)
    output = result.stdout + result.stderr
    assert result.returncode == 1, output
    [leak] = guard_report(output)[1:]
    assert leak.startswith("  sleep (PID ") and f"{SLEEP} 300)" in leak, leak
    assert leak.endswith("started by the test session, not through nchart.localcluster.processes -> stopped now"), leak
