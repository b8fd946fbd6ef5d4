#!/usr/bin/env python3
"""How long the local control plane takes to start, and how long my-scheduler's standby takes to hold
the Lease after the leader dies (SIGKILL: the Lease must expire; SIGTERM: the leader releases it).

Runs what the end-to-end tests run: the local control plane, `helm install` of the prod values for
inf2.24xlarge, two kube-scheduler processes with the chart's configuration, RBAC and flags, and the
stand-in extender from tests/standins. Times are wall-clock on this machine; the tests only assert that
failover happens.

    python bench/cluster/failover.py [--runs N]
"""

from __future__ import annotations

import argparse
import signal
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))  # the tests' support package: the bench runs what they run

from nchart.localcluster.cluster import LocalCluster  # noqa: E402
from tests.standins.extender import StandinExtender  # noqa: E402
from tests.support.charts import PROJECT  # noqa: E402
from tests.support.cluster import (  # noqa: E402
    SchedulerFleet,
    helm,
    my_scheduler_config,
    release_values,
    scheduler_args,
    write_values,
)

RELEASE, NAMESPACE = "eks-neuron", "kube-system"
TIMEOUT_S = 120


def leader(fleet: SchedulerFleet, lease: str) -> object | None:
    holders = [p for p in fleet.alive() if p.acquired(lease)]
    return holders[0] if len(holders) == 1 else None


def wait(predicate: object, what: str) -> None:
    deadline = time.monotonic() + TIMEOUT_S
    while not predicate():  # type: ignore[operator]
        if time.monotonic() > deadline:
            raise SystemExit(f"{what} did not happen within {TIMEOUT_S}s")
        time.sleep(0.05)


def failover_seconds(fleet: SchedulerFleet, lease: str, sig: int) -> float:
    while len(fleet.alive()) < 2:
        fleet.start()
    wait(lambda: leader(fleet, lease) is not None, "a leader")
    old = leader(fleet, lease)
    (standby,) = [p for p in fleet.alive() if p is not old]
    started = time.monotonic()
    old.stop(sig)  # type: ignore[union-attr]
    wait(lambda: standby.acquired(lease), f"the standby taking over after {signal.Signals(sig).name}")
    return time.monotonic() - started


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--runs", type=int, default=3, help="Start-ups and failovers of each kind to time.")
    args = parser.parse_args()
    startups, killed, terminated = [], [], []
    with tempfile.TemporaryDirectory() as tmp:
        for run in range(args.runs):
            cluster = LocalCluster(PROJECT, Path(tmp) / f"cluster-{run}")
            startups.append(cluster.up())
            if run < args.runs - 1:
                cluster.down_or_fail()
        try:
            values = write_values(Path(tmp) / "prod.yaml", release_values("inf2.24xlarge", "prod"))
            helm(cluster, "install", RELEASE, str(ROOT / "charts" / "eks-neuron"), "-n", NAMESPACE, "-f", str(values))
            extender_config = cluster.service_account_kubeconfig(
                NAMESPACE, f"{RELEASE}-neuron-scheduler", Path(tmp) / "x.kubeconfig"
            )
            scheduler_config = cluster.service_account_kubeconfig(
                NAMESPACE, f"{RELEASE}-my-scheduler", Path(tmp) / "s.kubeconfig"
            )
            with StandinExtender(extender_config) as extender:
                config = my_scheduler_config(
                    cluster, NAMESPACE, f"{RELEASE}-my-scheduler-config", extender.url, scheduler_config
                )
                lease = f"{config['leaderElection']['resourceNamespace']}/{config['leaderElection']['resourceName']}"
                fleet = SchedulerFleet(
                    Path(tmp), config, scheduler_config, scheduler_args(cluster, NAMESPACE, f"{RELEASE}-my-scheduler")
                )
                try:
                    for _ in range(args.runs):
                        killed.append(failover_seconds(fleet, lease, signal.SIGKILL))
                        terminated.append(failover_seconds(fleet, lease, signal.SIGTERM))
                finally:
                    fleet.stop_all()
        finally:
            cluster.down_or_fail()
    print(f"local control plane and my-scheduler failover, {args.runs} runs each (leaseDuration 15s, retryPeriod 2s)")
    print("| what | median s | min s | max s |")
    print("|---|---:|---:|---:|")
    for label, samples in (
        ("control plane up (etcd to nodes Ready)", startups),
        ("failover after SIGKILL of the leader", killed),
        ("failover after SIGTERM of the leader", terminated),
    ):
        print(f"| {label} | {statistics.median(samples):.1f} | {min(samples):.1f} | {max(samples):.1f} |")


if __name__ == "__main__":
    main()
