"""A pytest plugin: the session fails when a process the tests started is still running at its end.

Every process the project starts goes through nchart.localcluster.processes, which appends it to the ledger file
named by EKS_NEURON_PROCESS_LEDGER, with the test (or fixture setup) that started it; subprocesses
(`nchart cluster up` run as a command) inherit the variable and write to the same ledger. A process
started some other way is still a child of the test process. At the end of the session, whatever
happened in it (failed tests, fixtures that raised), each such process that still runs is named
with its command and who started it, then stopped, and the session fails.
"""

from __future__ import annotations

import dataclasses
import os
import tempfile
from pathlib import Path

import pytest

from nchart.localcluster.processes import LEDGER_ENV, ProcessRecord, children, ledger_records


@dataclasses.dataclass(frozen=True)
class _Ledger:
    path: Path
    # Records before this index were written before this session began (an outer session's).
    first: int
    owned: bool


_LEDGER_KEY = pytest.StashKey[_Ledger]()


def pytest_configure(config: pytest.Config) -> None:
    if os.environ.get(LEDGER_ENV):  # an outer session (or the caller) keeps the ledger
        path = Path(os.environ[LEDGER_ENV])
        config.stash[_LEDGER_KEY] = _Ledger(path, len(ledger_records(path)), owned=False)
        return
    handle, name = tempfile.mkstemp(prefix="eks-neuron-processes-", suffix=".jsonl")
    os.close(handle)
    os.environ[LEDGER_ENV] = name
    config.stash[_LEDGER_KEY] = _Ledger(Path(name), 0, owned=True)


# After the runner's own sessionfinish, which tears down the fixtures still set up (after -x, say).
@pytest.hookimpl(trylast=True)
def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    ledger = session.config.stash.get(_LEDGER_KEY, None)
    if ledger is None:
        return
    left = [record for record in ledger_records(ledger.path)[ledger.first :] if record.alive()]
    known = {(record.pid, record.start_ticks) for record in left}
    left += [
        dataclasses.replace(child, started_by="the test session, not through nchart.localcluster.processes")
        for child in children(os.getpid())
        if (child.pid, child.start_ticks) not in known and not _interpreter_helper(child)
    ]
    if not left:
        return
    lines = [f"{len(left)} process(es) started by the tests still ran at the end of the session:"]
    for record in left:
        stopped = record.stop()
        lines.append(f"  {record.describe()} -> {'stopped now' if stopped else 'COULD NOT BE STOPPED'}")
    reporter = session.config.pluginmanager.get_plugin("terminalreporter")
    if reporter is not None:
        reporter.ensure_newline()
        reporter.write_sep("=", "processes left running", red=True)
        for line in lines:
            reporter.write_line(line)
    else:
        print("\n".join(lines))
    session.exitstatus = pytest.ExitCode.TESTS_FAILED


def _interpreter_helper(process: ProcessRecord) -> bool:
    """Python's own helper process (multiprocessing's resource tracker) lives until the interpreter exits."""
    return any("multiprocessing.resource_tracker" in arg for arg in process.argv)


def pytest_unconfigure(config: pytest.Config) -> None:
    ledger = config.stash.get(_LEDGER_KEY, None)
    if ledger is not None and ledger.owned:
        ledger.path.unlink(missing_ok=True)
        os.environ.pop(LEDGER_ENV, None)
