"""The NetworkPolicies mean what the README says: computed by a real policy engine (cyclonus, offline)
over every rendered pod and the peers around them, the allowed connections are exactly the expected
matrix, each policy is needed for it, and an ordinary pod can no longer call the extender's /bind."""

from __future__ import annotations

from typing import Any

import pytest

from tests.support.charts import render_objects
from tests.support.netpol import Flow, Peer, Port, allowed_flows, matrix_table, rendered_pods

# The compile Job on too, so that its pods are in the matrix.
WITH_COMPILE = (
    "sd21-serving.compileJob.enabled=true",
    "sd21-serving.compileJob.sourceS3Uri=s3://models/sd21/source.tar.gz",
)

# Around the release, at the addresses terraform/ gives prod (vpc_cidr 10.30.0.0/16): pods in the first
# private subnet, the internal ALB in its own subnets (10.30.52.0/24...), the rest of the VPC elsewhere.
NEIGHBOURS = [
    Peer("ordinary-pod", "10.30.1.10", "default", {"app": "ordinary"}, (Port(8080, "http"),)),
    Peer("prometheus", "10.30.1.11", "monitoring", {"app.kubernetes.io/name": "prometheus"}, (Port(9090, "web"),)),
    Peer(
        "coredns", "10.30.1.12", "kube-system", {"k8s-app": "kube-dns"}, (Port(53, "dns", "UDP"), Port(53, "dns-tcp"))
    ),
    # Another pod of the release's namespace (the load balancer controller lives there on EKS).
    Peer("kube-system-pod", "10.30.1.13", "kube-system", {"app": "other"}, (Port(9443, "webhook"),)),
    # Another pod of the serving namespace (a debugging pod, a sidecar-less job).
    Peer("serving-namespace-pod", "10.30.1.14", "sd-serving", {"app": "debug"}, (Port(8080, "http"),)),
    Peer("load-balancer", "10.30.52.10"),
    Peer("vpc-address", "10.30.2.50"),
    Peer("internet", "52.216.8.1", None, {}, (Port(443), Port(80), Port(25))),
    Peer("api-server", "10.30.3.4", None, {}, (Port(443),)),
    Peer("pod-identity-agent", "169.254.170.23", None, {}, (Port(80),)),
]

SERVING_EGRESS = {
    ("coredns", "dns"),
    ("coredns", "dns-tcp"),
    ("internet", "443"),
    ("api-server", "443"),
    ("pod-identity-agent", "80"),
}


def expected_ingress(env: str) -> dict[str, dict[str, set[str]]]:
    """Each pod a policy isolates for ingress: per port, the only sources it admits."""
    serving_sources = {"prometheus"} | ({"load-balancer"} if env == "prod" else set())
    return {
        "neuron-scheduler": {"http": {"my-scheduler"}},
        "my-scheduler": {"healthz": {"prometheus"}},
        "neuron-monitor": {"metrics": {"prometheus"}, "pod-usage": {"prometheus"}},
        "neuron-problem-detector": {"metrics": {"prometheus"}, "http": set()},
        "sd21-serving": {"http": serving_sources},
        "sd21-serving-compile": {},
        "serving-namespace-pod": {"http": set()},
    }


# Each pod a policy limits for egress: the only (destination, port) it may open.
EXPECTED_EGRESS = {"sd21-serving": SERVING_EGRESS, "sd21-serving-compile": SERVING_EGRESS}


def expected_matrix(env: str, flows: list[Flow]) -> dict[Flow, bool]:
    ingress = expected_ingress(env)
    result = {}
    for source, destination, port in flows:
        admitted = source in ingress[destination].get(port, set()) if destination in ingress else True
        opened = (destination, port) in EXPECTED_EGRESS[source] if source in EXPECTED_EGRESS else True
        result[(source, destination, port)] = admitted and opened
    return result


def cluster(env: str, *sets: str) -> tuple[list[dict[str, Any]], list[Peer]]:
    objects = render_objects("inf2.xlarge", env, *WITH_COMPILE, *sets)
    policies = [o for o in objects if o["kind"] == "NetworkPolicy"]
    return policies, rendered_pods(objects, "10.30.0.10") + NEIGHBOURS


def differences(actual: dict[Flow, bool], expected: dict[Flow, bool]) -> set[Flow]:
    assert actual.keys() == expected.keys()
    return {flow for flow in actual if actual[flow] != expected[flow]}


@pytest.mark.parametrize("env", ["staging", "prod"])
def test_the_allowed_connections_are_exactly_the_expected_matrix(env: str) -> None:
    policies, peers = cluster(env)
    names = {peer.name for peer in peers}
    # Every workload of the stack is in the matrix (none renamed away from the expectations).
    assert {"neuron-scheduler", "my-scheduler", "neuron-monitor", "sd21-serving", "sd21-serving-compile"} <= names
    actual = allowed_flows(policies, peers)
    expected = expected_matrix(env, list(actual))
    wrong = differences(actual, expected)
    assert not wrong, "cyclonus disagrees with the expected matrix on:\n" + matrix_table(actual, wrong)
    # Enough flows of both kinds that the matrix says something.
    assert sum(actual.values()) > 20 and sum(not allowed for allowed in actual.values()) > 20


def test_only_my_scheduler_can_call_the_extender() -> None:
    policies, peers = cluster("prod")
    flows = allowed_flows(policies, peers)
    callers = {
        source
        for (source, destination, port), allowed in flows.items()
        if destination == "neuron-scheduler" and allowed
    }
    assert callers == {"my-scheduler"}
    assert flows[("ordinary-pod", "neuron-scheduler", "http")] is False
    assert flows[("kube-system-pod", "neuron-scheduler", "http")] is False


def test_without_the_policies_every_pod_reaches_the_extender() -> None:
    """The engine is not denying by itself: the same peers, policies off, all connect."""
    policies, peers = cluster("prod", "global.networkPolicy.enabled=false")
    assert policies == []
    flows = allowed_flows(policies, peers)
    assert all(flows.values())
    assert flows[("ordinary-pod", "neuron-scheduler", "http")] is True


def test_each_policy_is_needed_for_the_matrix() -> None:
    """Leave any one policy out and some connection the matrix denies goes through."""
    policies, peers = cluster("prod")
    assert len(policies) == 7, [p["metadata"]["name"] for p in policies]
    expected = expected_matrix("prod", list(allowed_flows(policies, peers)))
    for left_out in policies:
        rest = [p for p in policies if p is not left_out]
        opened = {flow for flow, allowed in allowed_flows(rest, peers).items() if allowed and not expected[flow]}
        assert opened, f"without {left_out['metadata']['name']} the matrix is unchanged: the policy does nothing"


def test_a_chart_can_turn_its_policy_off_alone() -> None:
    policies, _ = cluster("prod", "neuron-monitor.networkPolicy.enabled=false")
    names = {p["metadata"]["name"] for p in policies}
    assert "eks-neuron-neuron-monitor" not in names and "eks-neuron-neuron-scheduler" in names
    policies, _ = cluster("dev", "neuron-scheduler.networkPolicy.enabled=true")
    assert [p["metadata"]["name"] for p in policies] == ["eks-neuron-neuron-scheduler"]
