"""Names one chart gives and another refers to stay in agreement under nameOverride / fullnameOverride:
my-scheduler's extender URL and the extender's Service, the IAM trust Terraform makes and the
ServiceAccounts the pods run as."""

from __future__ import annotations

import json
from typing import Any
from urllib.parse import urlparse

import pytest
import yaml
from click.testing import CliRunner

from nchart.cli import cli
from nchart.core.project import Project
from nchart.errors import NchartError
from tests.support.charts import find, render_objects

RENAMES = [
    (),
    ("my-scheduler.nameOverride=sched",),
    ("my-scheduler.fullnameOverride=neuron-sched",),
    ("neuron-scheduler.nameOverride=extender", "my-scheduler.extender.serviceName=eks-neuron-extender"),
    ("neuron-scheduler.fullnameOverride=ext", "my-scheduler.extender.serviceName=ext"),
    ("neuron-scheduler.namespaceOverride=neuron", "my-scheduler.extender.namespace=neuron"),
]


def extender_url(objects: list[dict[str, Any]]) -> str:
    config = next(o for o in objects if o["kind"] == "ConfigMap" and "scheduler-config.yaml" in o.get("data", {}))
    return str(yaml.safe_load(config["data"]["scheduler-config.yaml"])["extenders"][0]["urlPrefix"])


@pytest.mark.parametrize("sets", RENAMES, ids=lambda s: ",".join(s) or "defaults")
def test_scheduler_calls_the_extender_service_the_chart_creates(sets: tuple[str, ...]) -> None:
    objects = render_objects("inf2.xlarge", "dev", *sets)
    (service,) = [
        o
        for o in objects
        if o["kind"] == "Service" and o["metadata"]["labels"]["helm.sh/chart"].startswith("neuron-scheduler-")
    ]
    host = urlparse(extender_url(objects)).hostname
    assert host == f"{service['metadata']['name']}.{service['metadata']['namespace']}.svc.cluster.local"


@pytest.mark.parametrize(
    "sets,expected_name",
    [
        (("neuron-scheduler.nameOverride=extender",), "eks-neuron-extender"),
        (("neuron-scheduler.fullnameOverride=ext",), "ext"),
    ],
)
def test_renamed_extender_without_the_scheduler_told_fails_with_the_fix(
    sets: tuple[str, ...], expected_name: str
) -> None:
    with pytest.raises(NchartError) as caught:
        render_objects("inf2.xlarge", "dev", *sets)
    assert f'neuron-scheduler names its Service "{expected_name}"' in caught.value.message
    assert f"set my-scheduler.extender.serviceName={expected_name}" in caught.value.message


def test_extender_in_another_namespace_fails_with_the_fix() -> None:
    with pytest.raises(NchartError) as caught:
        render_objects("inf2.xlarge", "dev", "neuron-scheduler.namespaceOverride=neuron")
    assert "set my-scheduler.extender.namespace=neuron" in caught.value.message


def test_release_named_after_the_extender_keeps_the_url_right() -> None:
    from nchart.core.catalog import resolve_instance
    from nchart.core.render import parse_manifests, render
    from nchart.core.values import value_sources
    from tests.support.charts import PROJECT

    objects = parse_manifests(
        render(PROJECT, value_sources(PROJECT, resolve_instance("inf2.xlarge"), "dev"), release="neuron-scheduler")
    )
    service = find(objects, "Service", "neuron-scheduler")
    assert service["metadata"]["name"] == "neuron-scheduler"
    assert urlparse(extender_url(objects)).hostname.startswith("neuron-scheduler.kube-system.")


@pytest.mark.parametrize(
    "overrides",
    [
        {"sd21-serving": {"nameOverride": "sd"}},
        {"sd21-serving": {"fullnameOverride": "image-gen"}},
        {"sd21-serving": {"serviceAccount": {"name": "sd-runner"}}},
        {"neuron-problem-detector": {"nameOverride": "npd"}},
        {"neuron-problem-detector": {"namespaceOverride": "neuron-health"}},
    ],
    ids=lambda o: json.dumps(o, separators=(",", ":")),
)
def test_iam_roles_trust_the_service_accounts_the_pods_run_as(project_copy: Project, overrides: dict[str, Any]) -> None:
    from nchart.core.render import parse_manifests, render
    from nchart.core.values import merge, value_sources

    dev = project_copy.env_values("dev")
    dev.write_text(yaml.safe_dump(merge(yaml.safe_load(dev.read_text()), overrides)))
    result = CliRunner(mix_stderr=False).invoke(cli, ["--root", str(project_copy.root), "tf", "vars", "--env", "dev"])
    assert result.exit_code == 0, result.stderr
    variables = json.loads(result.stdout)
    objects = parse_manifests(render(project_copy, value_sources(project_copy, None, "dev")))
    for key, chart, kind in (
        ("serving_service_account", "sd21-serving", "Deployment"),
        ("recovery_service_account", "neuron-problem-detector", "DaemonSet"),
    ):
        (workload,) = [
            o for o in objects if o["kind"] == kind and o["metadata"]["labels"]["helm.sh/chart"].startswith(chart)
        ]
        runs_as = {
            "namespace": workload["metadata"]["namespace"],
            "name": workload["spec"]["template"]["spec"]["serviceAccountName"],
        }
        assert variables[key] == runs_as
        assert any(
            o["kind"] == "ServiceAccount"
            and o["metadata"]["name"] == runs_as["name"]
            and o["metadata"]["namespace"] == runs_as["namespace"]
            for o in objects
        )
