"""The session's local control plane: started once, stopped by PID at the end."""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest

from nchart.localcluster.cluster import LocalCluster, running_cluster
from tests.support.charts import PROJECT


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    here = Path(__file__).parent
    for item in items:
        if here in Path(str(item.fspath)).parents:
            item.add_marker(pytest.mark.e2e)


@pytest.fixture(scope="session")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalCluster]:
    with running_cluster(PROJECT, tmp_path_factory.mktemp("cluster")) as local:
        yield local


# What every e2e test needs; the controllers and model servers tests start may be stopped on purpose.
CONTROL_PLANE = ("etcd", "kube-apiserver", "kube-controller-manager", "kube-scheduler", "kwok")


@pytest.fixture(autouse=True)
def control_plane_still_running(request: pytest.FixtureRequest) -> None:
    """A control plane that died mid-session (a full disk stops etcd) fails each later test at once, naming
    what died, instead of each one waiting out its own timeouts."""
    if "cluster" not in request.fixturenames:
        return
    local: LocalCluster = request.getfixturevalue("cluster")
    dead = [name for name in CONTROL_PLANE if name in local.processes and not local.processes[name].alive()]
    if dead:
        free_gib = shutil.disk_usage(local.state_dir).free / 2**30
        tails = "\n".join(f"--- {name}:\n{local.log_tail(name, 10)}" for name in dead)
        pytest.fail(
            f"the session's control plane lost {', '.join(dead)} ({free_gib:.1f} GiB free under "
            f"{local.state_dir}):\n{tails}",
            pytrace=False,
        )
