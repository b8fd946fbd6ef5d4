"""Incompatible settings fail at render time with a message that says what to change."""

from __future__ import annotations

import pytest

from nchart.errors import ExitCode, NchartError
from tests.support.charts import find, render_objects, render_text


def render_error(*sets: str) -> NchartError:
    with pytest.raises(NchartError) as caught:
        render_text("inf2.xlarge", "dev", *sets)
    assert caught.value.exit_code == ExitCode.USAGE
    return caught.value


def test_my_scheduler_without_extender_is_refused() -> None:
    error = render_error("neuron-scheduler.enabled=false")
    assert "my-scheduler.enabled is true but neuron-scheduler.enabled is false" in error.message
    assert "Enable neuron-scheduler, or disable my-scheduler" in error.message


def test_extender_without_my_scheduler_is_refused() -> None:
    error = render_error("my-scheduler.enabled=false")
    assert "neuron-scheduler.enabled is true but my-scheduler.enabled is false" in error.message


def test_both_schedulers_off_is_a_valid_stack() -> None:
    objects = render_objects(
        "inf2.xlarge",
        "dev",
        "my-scheduler.enabled=false",
        "neuron-scheduler.enabled=false",
        "global.neuron.schedulerName=",
    )
    scheduler_objects = [
        o
        for o in objects
        if o["metadata"]["name"].startswith(("eks-neuron-my-scheduler", "eks-neuron-neuron-scheduler"))
    ]
    assert not scheduler_objects
    find(objects, "DaemonSet", "neuron-device-plugin")
    assert "schedulerName" not in find(objects, "Deployment", "sd21-serving")["spec"]["template"]["spec"]


def test_serving_must_not_wait_for_a_disabled_scheduler() -> None:
    error = render_error("my-scheduler.enabled=false", "neuron-scheduler.enabled=false")
    assert 'global.neuron.schedulerName is "my-scheduler" but my-scheduler is disabled' in error.message
    error = render_error("global.neuron.schedulerName=")
    assert "Neuron workloads would bypass the extender. Set global.neuron.schedulerName: my-scheduler" in error.message


def test_recovery_without_an_iam_role_is_refused() -> None:
    error = render_error("neuron-problem-detector.recovery.enabled=true")
    assert "serviceAccount.iamRoleArn is empty" in error.message
    assert "autoscaling:SetInstanceHealth" in error.message


def test_several_scheduler_replicas_need_leader_election() -> None:
    error = render_error("my-scheduler.replicaCount=3", "my-scheduler.leaderElection.enabled=false")
    assert "replicaCount is 3 but leaderElection.enabled is false" in error.message


def test_renamed_extender_needs_the_scheduler_told() -> None:
    error = render_error("neuron-scheduler.fullnameOverride=neuron-extender")
    assert "set my-scheduler.extender.serviceName" in error.message
    objects = render_objects(
        "inf2.xlarge",
        "dev",
        "neuron-scheduler.fullnameOverride=neuron-extender",
        "my-scheduler.extender.serviceName=neuron-extender",
    )
    assert find(objects, "Service", "neuron-extender")
    assert (
        "http://neuron-extender.kube-system.svc"
        in find(objects, "ConfigMap", "my-scheduler-config")["data"]["scheduler-config.yaml"]
    )


def test_typo_in_a_key_names_the_key_and_the_layer() -> None:
    error = render_error("neuron-monitor.servicMonitor.enabled=true")
    assert "--set: neuron-monitor.servicMonitor: unknown key (did you mean 'serviceMonitor'?)" in error.message


def test_wrong_type_names_the_key() -> None:
    error = render_error("my-scheduler.replicaCount=two")
    assert "my-scheduler.replicaCount" in error.message and "'two' is not of type 'integer'" in error.message


def test_hpa_cannot_scale_to_zero() -> None:
    # The API server refuses an HPA with minReplicas 0 on a CPU metric; the render says so first.
    error = render_error("sd21-serving.autoscaling.mode=hpa", "sd21-serving.autoscaling.minReplicas=0")
    assert "sd21-serving: autoscaling.minReplicas is 0 with autoscaling.mode hpa" in error.message
    assert "autoscaling.mode: keda to scale to zero" in error.message


def test_values_the_api_server_would_refuse_are_refused_with_their_key() -> None:
    assert (
        "sd21-serving.nameOverride: 'Serving' is not a DNS-1123 label"
        in render_error("sd21-serving.nameOverride=Serving").message
    )
    assert (
        "sd21-serving.tolerations.0.operater: unknown key (did you mean 'operator'?)"
        in render_error("sd21-serving.tolerations[0].operater=Exists").message
    )
    assert (
        "sd21-serving.podLabels: 'team/a/b' is not a label or annotation key"
        in render_error("sd21-serving.podLabels.team/a/b=x").message
    )


def test_patterns_are_read_as_helm_reads_them() -> None:
    # RE2's \s is ASCII: a schedule spaced with U+00A0 passes Python's re but not helm's check.
    assert (
        "sd21-serving.karpenter.disruption.budgets.0.schedule: '0\\xa00\\xa00\\xa00\\xa00' does not match"
        in render_error("sd21-serving.karpenter.disruption.budgets[0].schedule=0\u00a00\u00a00\u00a00\u00a00",
                        "sd21-serving.karpenter.disruption.budgets[0].duration=1h",
                        "sd21-serving.karpenter.disruption.budgets[0].nodes=10%").message
    )  # fmt: skip


def test_network_policy_cidrs_are_checked_at_render() -> None:
    on = ("global.networkPolicy.enabled=true", "sd21-serving.enabled=true", "sd21-serving.ingress.enabled=true")
    # The schema: not a CIDR at all.
    assert (
        "sd21-serving.networkPolicy.ingressCIDRs.0: '10.30.52.0' is not an IPv4 CIDR block"
        in render_error(*on, "sd21-serving.networkPolicy.ingressCIDRs[0]=10.30.52.0").message
    )
    # The template: bits past the prefix, which the API server would only warn about.
    message = render_error(*on, "sd21-serving.networkPolicy.ingressCIDRs[0]=10.30.52.1/24").message
    assert '"10.30.52.1/24" has address bits set past its /24 prefix' in message
    assert "write 10.30.52.0/24 (the block) or 10.30.52.1/32 (the one address)" in message
    message = render_error(*on, "sd21-serving.networkPolicy.egress.httpsCIDRs[0]=52.216.0.0/8").message
    assert "sd21-serving.networkPolicy.egress.httpsCIDRs" in message and "write 52.0.0.0/8" in message
    # An Ingress the policy would keep the load balancer from.
    message = render_error(*on).message
    assert "networkPolicy.ingressCIDRs is empty, so the load balancer could not reach the server" in message
    objects = render_objects("inf2.xlarge", "dev", *on, "sd21-serving.networkPolicy.ingressCIDRs[0]=10.30.52.0/24")
    serving = find(objects, "NetworkPolicy", "sd21-serving")
    assert {"ipBlock": {"cidr": "10.30.52.0/24"}} in serving["spec"]["ingress"][0]["from"]
