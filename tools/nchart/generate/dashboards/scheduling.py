"""*Neuron / Scheduling*: my-scheduler's leadership and the Neuron pods waiting for a node."""

from __future__ import annotations

from .spec import (
    GREEN,
    ORANGE,
    RED,
    AlertLimits,
    DashboardSpec,
    Link,
    PanelSpec,
    Reads,
    Row,
    Variable,
    query,
    zero_if_scraped,
)

SCHEDULER_JOB = Variable("job", "my-scheduler job", "label_values(leader_election_master_status, job)")


KSM_JOB = Variable("ksm_job", "kube-state-metrics job", "label_values(kube_pod_status_phase, job)")


PENDING = 'kube_pod_status_phase{job=~"$ksm_job", phase="Pending"} == 1'


NEURON_REQUESTS = 'kube_pod_container_resource_requests{job=~"$ksm_job", resource=~"aws_amazon_com_neuron.*"}'


def scheduling(limits: AlertLimits) -> DashboardSpec:
    return DashboardSpec(
        uid="neuron-scheduler",
        title="Neuron / Scheduling",
        description="my-scheduler leadership, its queue, and pods waiting for Neuron devices or cores.",
        variables=(SCHEDULER_JOB, KSM_JOB),
        links=(Link("Stable Diffusion serving", "/d/sd21-serving/neuron-stable-diffusion-serving"),),
        rows=(_my_scheduler_row(), _neuron_pods_row(limits)),
    )


def _my_scheduler_row() -> Row:
    return (
        "my-scheduler",
        (
            PanelSpec(
                "Replicas holding the leader Lease",
                (query('sum(leader_election_master_status{job=~"$job"})', "leaders"),),
                "my-scheduler replicas that are leader (leader_election_master_status); exactly one should "
                "be. 0 is red, as MySchedulerNoLeader fires: Neuron pods stay Pending. `nchart doctor` "
                "names the Lease and the fix.",
                kind="stat",
                width=8,
                thresholds=((None, RED), (1, GREEN)),
                reads=Reads(
                    idle="1, green",
                    busy="1, green",
                    broken="0, red (MySchedulerNoLeader): Neuron pods stay Pending",
                ),
            ),
            PanelSpec(
                "Pending pods in the scheduler queue",
                (query('sum by (queue) (scheduler_pending_pods{job=~"$job"})', "{{queue}}"),),
                "Pods my-scheduler holds now, each queue by name (scheduler_pending_pods): numbers, not "
                "lines, because four queues at 0 would draw on top of each other. unschedulable above 0: "
                "no node fits; see the panel below and `nchart doctor`.",
                kind="stat",
                width=8,
                stat_text="value_and_name",
                reads=Reads(
                    idle="0 in each queue",
                    busy="active briefly above 0",
                    broken="unschedulable above 0: no node fits",
                ),
            ),
            PanelSpec(
                "Scheduling attempts by result",
                (
                    query(
                        'sum by (result) (rate(scheduler_schedule_attempts_total{job=~"$job"}[$__rate_interval]))',
                        "{{result}}",
                    ),
                ),
                "Scheduling attempts per second by result (scheduler_schedule_attempts_total). error: the "
                "extender or the API server failed.",
                unit="ops",
                width=8,
                minimum=0,
                reads=Reads(
                    idle="0 on an axis up to 1",
                    busy="scheduled, per second",
                    broken="error above 0: the extender or the API server failed; unschedulable rising",
                ),
            ),
        ),
    )


def _neuron_pods_row(limits: AlertLimits) -> Row:
    return (
        "Neuron pods",
        (
            PanelSpec(
                "Pending pods asking for Neuron resources",
                (
                    query(
                        zero_if_scraped(
                            f"count({PENDING} and on (namespace, pod) "
                            f"(max by (namespace, pod) ({NEURON_REQUESTS}) > 0))",
                            'kube_pod_status_phase{job=~"$ksm_job"}',
                        ),
                        "pending",
                    ),
                ),
                "Pods in Pending that request aws.amazon.com/neuron or neuroncore (kube-state-metrics). Any "
                "is orange: run `nchart doctor` for why each waits.",
                kind="stat",
                width=8,
                thresholds=((None, GREEN), (1, ORANGE)),
                reads=Reads(
                    idle="0",
                    busy="0, or a moment above 0 while Karpenter adds a node",
                    broken="above 0 and staying, orange: run `nchart doctor`",
                ),
            ),
            PanelSpec(
                "Neuron resources requested by pending pods",
                (
                    query(
                        # kube-state-metrics writes the resource name with '_' for '.' and '/'.
                        "label_replace(sum by (resource) "
                        f"({NEURON_REQUESTS} and on (namespace, pod) ({PENDING})), "
                        '"resource", "aws.amazon.com/$1", "resource", "aws_amazon_com_(.+)")',
                        "{{resource}}",
                    ),
                ),
                "Devices and cores that Pending pods wait for: more than the free capacity of the node "
                "pools means Karpenter must add nodes (or its limits stop it).",
                unit="short",
                width=16,
                minimum=0,
                no_value="no pending Neuron pods",
                reads=Reads(
                    idle='"no pending Neuron pods"',
                    busy="a brief bump while nodes are added",
                    broken="more than the node pools' free capacity for long: Karpenter cannot add nodes (its limits, or no capacity)",
                ),
            ),
        ),
    )
