"""The doctor's checks, one per module, each a function (cluster state, now) -> findings, run in this order."""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable

from ..findings import Finding
from ..state import ClusterState
from .autoscaling_wiring import check_node_pools, check_scaled_objects
from .chart_crds import check_chart_crds
from .device_plugin import check_device_plugins
from .monitoring_wiring import check_grafana_dashboards, check_prometheus_selection
from .pending_pod import check_pending_pods
from .platform_controllers import check_platform_controllers
from .quota import check_quota_refusals
from .scheduler import check_schedulers
from .serving_namespace import check_serving_namespaces
from .usage_map import check_usage_maps

Check = Callable[[ClusterState, dt.datetime], list[Finding]]
CHECKS: tuple[Check, ...] = (
    check_device_plugins,
    check_schedulers,
    check_usage_maps,
    check_pending_pods,
    check_quota_refusals,
    check_serving_namespaces,
    check_platform_controllers,
    check_prometheus_selection,
    check_grafana_dashboards,
    check_node_pools,
    check_scaled_objects,
    check_chart_crds,
)

# The `check` name of every finding the checks above report (what `nchart doctor --skip` takes); a test
# holds this to the names the check modules use.
CHECK_NAMES: tuple[str, ...] = (
    "allocatable",
    "chart-crds",
    "device-plugin",
    "extender",
    "grafana-dashboards",
    "nodepool",
    "pending-pod",
    "platform-controller",
    "prometheus-selection",
    "quota",
    "scaledobject",
    "scheduler-lease",
    "serving-namespace",
    "usage-map",
)
