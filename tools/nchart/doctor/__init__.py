"""`nchart doctor`: what keeps Neuron pods from running on a live cluster, one finding per problem, each
with its severity and the command that fixes it. It reads; it changes nothing, except the stale usage
maps `--fix` clears (on nodes where no live pod holds Neuron resources, after confirmation).

The checks: Neuron nodes (by their instance-type label) without a Ready device-plugin pod, or whose
allocatable Neuron resources differ from the catalog; my-scheduler's Lease missing or not renewed; the
extender's Service without ready endpoints; NEURON_DEV_USAGE_MAP / NEURON_CORE_USAGE_MAP node
annotations marking more in use than the live pods on the node hold; Pending pods asking for Neuron
resources, with the reason; ReplicaSets refused by a quota; serving namespaces without what the
serving chart's pods need. And the platform the charts rely on: each add-on whose objects the release made
(NodePools, ScaledObjects, ServiceMonitors and PrometheusRules, an `alb` Ingress) without its controller
Ready, KEDA's external-metrics APIService not Available, a Prometheus whose selectors leave out the
release's ServiceMonitors or PrometheusRules, no Grafana sidecar that loads its dashboards, a NodePool
whose EC2NodeClass is missing or not Ready, a ScaledObject KEDA reports not Ready.

The usage maps are read as the extender is reported to write them (aws-neuron-sdk#1300 and public
troubleshooting notes): one comma-separated `true`/`false` per device or core of the node.
"""

from __future__ import annotations

import datetime as dt

from .checks import CHECKS
from .findings import DoctorExit, Finding, Severity, exit_code
from .state import ClusterState

__all__ = ["CHECKS", "ClusterState", "DoctorExit", "Finding", "Severity", "diagnose", "exit_code"]


def diagnose(state: ClusterState, now: dt.datetime) -> list[Finding]:
    """Every check's findings, in the order of CHECKS."""
    return [finding for check in CHECKS for finding in check(state, now)]
