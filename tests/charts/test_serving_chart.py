"""sd21-serving rendered through nchart for every Neuron-v2+ instance type and environment."""

from __future__ import annotations

from typing import Any

import pytest
from click.testing import CliRunner

from nchart.cli import cli
from nchart.core.catalog import load_catalog
from nchart.core.sizing import pod_capacity
from nchart.errors import ExitCode, NchartError
from tests.support.charts import ENVS, INSTANCES, ROOT, find, find_all, render_objects

CATALOG = load_catalog()
SERVING_INSTANCES = [name for name in INSTANCES if CATALOG[name].core_version != "NC-v1"]
MATRIX = [(env, instance) for env in ENVS for instance in SERVING_INSTANCES]


def quantity(value: str) -> float:
    units = {"m": 1e-3, "Mi": 2**20, "Gi": 2**30}
    for suffix, factor in units.items():
        if value.endswith(suffix):
            return float(value[: -len(suffix)]) * factor
    return float(value)


def server(objects: list[dict[str, Any]]) -> tuple[dict[str, Any], dict[str, Any]]:
    deployment = find(objects, "Deployment", "sd21-serving")
    pod = deployment["spec"]["template"]["spec"]
    return pod, {c["name"]: c for c in pod["containers"]}["server"]


@pytest.mark.parametrize("env,instance", MATRIX)
def test_replicas_fill_a_node_without_overcommit(env: str, instance: str) -> None:
    facts = CATALOG[instance]
    pod, container = server(render_objects(instance, env))
    requests, limits = container["resources"]["requests"], container["resources"]["limits"]
    assert requests["aws.amazon.com/neuroncore"] == limits["aws.amazon.com/neuroncore"] == 2
    env_vars = {e["name"]: e.get("value") for e in container["env"]}
    assert env_vars["SD_NEURON_CORES"] == "2"  # the cores asked for are the cores the UNet is spread over
    replicas = facts.cores // 2
    assert replicas * quantity(requests["cpu"]) <= facts.vcpu - 1
    assert replicas * quantity(requests["memory"]) <= (facts.host_memory_gib - 2) * 2**30
    assert quantity(requests["cpu"]) >= 0.8 * (facts.vcpu - 1) / replicas  # and the node is used, not left idle
    assert limits["memory"] == requests["memory"]
    assert pod["nodeSelector"] == {"node.kubernetes.io/instance-type": instance}


@pytest.mark.parametrize("env,instance", MATRIX)
def test_scheduler_tolerations_probes_and_init(env: str, instance: str) -> None:
    objects = render_objects(instance, env)
    pod, container = server(objects)
    assert pod["schedulerName"] == "my-scheduler"
    for pool in find_all(objects, "NodePool"):
        for taint in pool["spec"]["template"]["spec"]["taints"]:
            assert any(
                t.get("key") == taint["key"] and t.get("effect") == taint["effect"] and t.get("operator") == "Exists"
                for t in pod["tolerations"]
            ), taint
    assert container["startupProbe"]["httpGet"]["path"] == "/ready"
    assert container["startupProbe"]["periodSeconds"] * container["startupProbe"]["failureThreshold"] >= 300
    assert container["readinessProbe"]["httpGet"]["path"] == "/ready"
    assert container["livenessProbe"]["httpGet"]["path"] == "/health"
    (init,) = pod["initContainers"]
    # The fetch runs in the server's own image (the AWS CLI image has no tar: aws/aws-cli#5106).
    assert init["command"] == ["eks-neuron-serve", "fetch-model"]
    assert init["image"] == container["image"] and "aws-cli" not in init["image"]
    assert not any("configMap" in volume for volume in pod["volumes"])
    init_env = {e["name"]: e["value"] for e in init["env"]}
    assert init_env["MODEL_S3_URI"] == f"s3://eks-neuron-{env}-models/sd21-512/model.tar.gz"
    mounts = {m["name"]: m for m in container["volumeMounts"]}
    assert mounts["model"]["readOnly"] is True and mounts["model"]["mountPath"] == "/models/sd21"
    assert {m["name"]: m["mountPath"] for m in init["volumeMounts"]}["model"] == "/model"
    for c in (container, init):
        assert c["securityContext"]["readOnlyRootFilesystem"] is True
        assert c["securityContext"]["capabilities"]["drop"] == ["ALL"]
    assert pod["securityContext"]["runAsNonRoot"] is True


def test_environments_choose_autoscaling_and_monitoring() -> None:
    dev = render_objects("inf2.xlarge", "dev")
    assert not find_all(dev, "HorizontalPodAutoscaler") and not find_all(dev, "ScaledObject")
    assert find(dev, "Deployment", "sd21-serving")["spec"]["replicas"] == 1
    staging = render_objects("inf2.xlarge", "staging")
    hpa = find(staging, "HorizontalPodAutoscaler", "sd21-serving")
    assert (hpa["spec"]["minReplicas"], hpa["spec"]["maxReplicas"]) == (1, 4)
    assert "replicas" not in find(staging, "Deployment", "sd21-serving")["spec"]
    prod = render_objects("inf2.24xlarge", "prod")
    scaled = find(prod, "ScaledObject", "sd21-serving")
    trigger = scaled["spec"]["triggers"][0]
    assert trigger["type"] == "prometheus"
    assert trigger["metadata"]["query"] == (
        'sum(sd_queue_depth{namespace="sd-serving",service="eks-neuron-sd21-serving"}) + '
        'sum(sd_inflight_requests{namespace="sd-serving",service="eks-neuron-sd21-serving"})'
    )
    assert find(prod, "ServiceMonitor", "sd21-serving")["spec"]["endpoints"][0]["path"] == "/metrics"
    assert find(prod, "PodDisruptionBudget", "sd21-serving")["spec"]["maxUnavailable"] == 1
    account = find(prod, "ServiceAccount", "sd21-serving")
    assert account["metadata"]["annotations"]["eks.amazonaws.com/role-arn"].endswith(
        ":role/eks-neuron-prod-sd21-serving"
    )
    ingress = find(prod, "Ingress", "sd21-serving")
    assert ingress["spec"]["ingressClassName"] == "alb"
    pod, _ = server(prod)
    assert pod["volumes"][0] == {"name": "model", "emptyDir": {"sizeLimit": "20Gi"}}
    node_class = find(prod, "EC2NodeClass", "")
    assert "userData" not in node_class["spec"]
    assert node_class["spec"]["role"] == "eks-neuron-prod-karpenter-node"
    assert node_class["spec"]["subnetSelectorTerms"] == [{"tags": {"karpenter.sh/discovery": "eks-neuron-prod"}}]


def test_karpenter_node_pool_for_inf2() -> None:
    pool = find(render_objects("inf2.48xlarge", "prod"), "NodePool", "sd21-serving-inf2")
    spec = pool["spec"]
    requirements = {r["key"]: r["values"] for r in spec["template"]["spec"]["requirements"]}
    assert requirements["karpenter.k8s.aws/instance-family"] == ["inf2"]
    assert requirements["karpenter.k8s.aws/instance-size"] == ["xlarge", "8xlarge", "24xlarge", "48xlarge"]
    assert spec["template"]["spec"]["taints"] == [
        {"key": "aws.amazon.com/neuron", "value": "true", "effect": "NoSchedule"}
    ]
    assert spec["disruption"]["consolidationPolicy"] == "WhenEmptyOrUnderutilized"
    assert spec["disruption"]["budgets"] == [{"nodes": "10%"}]
    node_class = find(render_objects("inf2.48xlarge", "prod"), "EC2NodeClass", "")
    assert spec["template"]["spec"]["nodeClassRef"] == {
        "group": "karpenter.k8s.aws",
        "kind": "EC2NodeClass",
        "name": node_class["metadata"]["name"],
    }


def test_node_class_name_follows_the_immutable_role() -> None:
    """EC2NodeClass.spec.role is immutable: a role change must make a new node class, with the pools on it."""

    def names(role: str) -> tuple[str, set[str]]:
        objects = render_objects(
            "inf2.xlarge",
            "prod",
            f"sd21-serving.karpenter.nodeClass.role={role}",
            "sd21-serving.karpenter.nodePools.trn1.enabled=true",
        )
        node_class = find(objects, "EC2NodeClass", "")
        assert node_class["spec"]["role"] == role
        refs = {p["spec"]["template"]["spec"]["nodeClassRef"]["name"] for p in objects if p["kind"] == "NodePool"}
        return node_class["metadata"]["name"], refs

    first, first_refs = names("eks-neuron-staging-karpenter-node")
    second, second_refs = names("eks-neuron-prod-karpenter-node")
    assert first != second
    assert first.startswith("eks-neuron-sd21-serving-neuron-") and len(first) <= 63
    assert first_refs == {first} and second_refs == {second}
    assert names("eks-neuron-staging-karpenter-node")[0] == first  # stable for the same role


def test_whole_device_mode_asks_for_devices() -> None:
    objects = render_objects(
        "trn1.32xlarge", "dev", "sd21-serving.neuron.resource=neuron", "sd21-serving.neuron.coresPerReplica=8"
    )
    _, container = server(objects)
    assert container["resources"]["requests"]["aws.amazon.com/neuron"] == 4
    assert "aws.amazon.com/neuroncore" not in container["resources"]["requests"]
    assert {e["name"]: e["value"] for e in container["env"]}["SD_NEURON_CORES"] == "8"


@pytest.mark.parametrize(
    "instance,sets,message",
    [
        (
            "inf2.8xlarge",
            ["sd21-serving.neuron.coresPerReplica=4"],
            "sd21-serving: neuron.coresPerReplica 4 does not fit inf2.8xlarge, which has 2 NeuronCores",
        ),
        (
            "inf2.24xlarge",
            ["sd21-serving.neuron.resource=neuron", "sd21-serving.neuron.coresPerReplica=3"],
            "neuron.coresPerReplica 3 is not a multiple of the 2 cores per device",
        ),
        (
            "trn1.32xlarge",
            ["sd21-serving.neuron.resource=neuron", "sd21-serving.neuron.coresPerReplica=4"],
            "sd21-serving: trn1.32xlarge pods take [1 4 8 16] devices; neuron.coresPerReplica 4 means 2",
        ),
        ("inf1.6xlarge", [], "sd21-serving: inf1.6xlarge has NC-v1 cores, which torch-neuronx cannot compile for"),
        (
            "inf2.xlarge",
            ["sd21-serving.neuron.resource=gpu"],
            "sd21-serving.neuron.resource: 'gpu' is not one of ['neuroncore', 'neuron']",
        ),
        (
            "inf2.xlarge",
            ["sd21-serving.neuron.coresPerReplica=two"],
            "sd21-serving.neuron.coresPerReplica: 'two' is not of type 'integer'",
        ),
    ],
)
def test_bad_sizing_is_refused_with_the_charts_message(instance: str, sets: list[str], message: str) -> None:
    """nchart plans replicas and resources but leaves each sizing rule to the chart, which says it once."""
    from nchart.core.catalog import resolve_instance
    from nchart.core.project import find_project
    from nchart.core.render import render
    from nchart.core.values import value_sources

    project = find_project(ROOT)
    sources = value_sources(project, resolve_instance(instance), "dev", set_values=["sd21-serving.enabled=true", *sets])
    with pytest.raises(NchartError) as caught:
        render(project, sources)
    assert caught.value.exit_code == ExitCode.USAGE
    assert message in caught.value.message


def test_chart_refuses_bad_values_when_rendered_without_nchart() -> None:
    from nchart.core.project import find_project
    from nchart.core.render import render
    from nchart.core.values import ValuesSource

    project = find_project(ROOT)
    base = {"sd21-serving": {"enabled": True, "model": {"s3Uri": "s3://b/m.tar.gz"}}}
    cases = [
        ({"sd21-serving": {"model": {"s3Uri": ""}}}, "model.s3Uri must be the S3 URI of the compiled model tarball"),
        (
            {"sd21-serving": {"neuron": {"resource": "neuron", "coresPerReplica": 3}}},
            "is not a multiple of the 2 cores per device",
        ),
        (
            {
                "global": {
                    "neuron": {
                        "instanceTypes": ["inf2.xlarge"],
                        "instance": {"type": "inf2.xlarge", "cores": 2, "coresPerChip": 2},
                    }
                },
                "sd21-serving": {"neuron": {"coresPerReplica": 4}},
            },
            "neuron.coresPerReplica 4 does not fit inf2.xlarge, which has 2 NeuronCores",
        ),
        (
            {
                "global": {
                    "neuron": {
                        "instanceTypes": ["inf1.xlarge"],
                        "instance": {"type": "inf1.xlarge", "cores": 4, "coresPerChip": 4, "coreVersion": "NC-v1"},
                    }
                },
                "sd21-serving": {"neuron": {"coresPerDevice": 4}},
            },
            "inf1.xlarge has NC-v1 cores, which torch-neuronx cannot compile for",
        ),
        (
            {"sd21-serving": {"neuron": {"resource": "device"}}},
            "sd21-serving.neuron.resource: 'device' is not one of ['neuroncore', 'neuron']",
        ),
        (
            {"sd21-serving": {"autoscaling": {"minReplicas": 5, "maxReplicas": 2}}},
            "autoscaling.minReplicas 5 is above maxReplicas 2",
        ),
        (
            {"sd21-serving": {"server": {"compile": "reduce-overhead"}}},
            "sd21-serving.server.compile=reduce-overhead is for the cuda backend; server.backend is neuron",
        ),
        (
            {"sd21-serving": {"server": {"compile": "always"}}},
            "sd21-serving.server.compile: 'always' is not one of ['off', 'reduce-overhead', 'max-autotune']",
        ),
    ]
    for override, message in cases:
        with pytest.raises(NchartError) as caught:
            render(project, [ValuesSource("base", base), ValuesSource("case", override)])
        assert message in caught.value.message, (override, caught.value.message)


def test_render_prints_replicas_per_node() -> None:
    result = CliRunner(mix_stderr=False).invoke(cli, ["--root", str(ROOT), "render", "inf2-24xlarge", "--env", "prod"])
    assert result.exit_code == 0, result.stderr
    assert (
        "sd21-serving on inf2.24xlarge: 6 replica(s) per node (2 of 12 NeuronCores each, requested as aws.amazon.com/neuroncore: 2;"
        in result.stderr
    )
    assert (
        "sd21-serving on inf2.xlarge: 1 replica(s) per node"
        in CliRunner(mix_stderr=False)
        .invoke(cli, ["--root", str(ROOT), "render", "inf2.xlarge", "--env", "dev"])
        .stderr
    )


def test_serving_runs_in_its_own_restricted_namespace() -> None:
    objects = render_objects("inf2.xlarge", "prod")
    namespace = find(objects, "Namespace", "sd-serving")
    labels = namespace["metadata"]["labels"]
    assert {labels[f"pod-security.kubernetes.io/{mode}"] for mode in ("enforce", "warn", "audit")} == {"restricted"}
    serving = [
        o for o in objects if o["metadata"].get("labels", {}).get("helm.sh/chart", "").startswith("sd21-serving-")
    ]
    assert {
        o["metadata"].get("namespace") for o in serving if o["kind"] not in ("Namespace", "EC2NodeClass", "NodePool")
    } == {"sd-serving"}
    system = find(objects, "DaemonSet", "neuron-device-plugin")
    assert system["metadata"]["namespace"] == "kube-system"


def test_hostpath_model_cache_makes_the_namespace_privileged_and_says_so() -> None:
    objects = render_objects("inf2.xlarge", "prod", "sd21-serving.model.volume=hostPath")
    labels = find(objects, "Namespace", "sd-serving")["metadata"]["labels"]
    assert labels["pod-security.kubernetes.io/enforce"] == "privileged"
    node_class = find(objects, "EC2NodeClass", "")
    assert "chown 65532:65532 /var/cache/eks-neuron/sd21" in node_class["spec"]["userData"]
    with pytest.raises(NchartError) as caught:
        render_objects(
            "inf2.xlarge", "prod", "sd21-serving.model.volume=hostPath", "sd21-serving.podSecurityLevel=restricted"
        )
    assert "restricted level forbids hostPath volumes" in caught.value.message


def test_compiled_cuda_and_encodings_reach_the_server() -> None:
    objects = render_objects(
        "inf2.xlarge", "dev", "sd21-serving.server.backend=cuda", "sd21-serving.server.compile=max-autotune",
        "sd21-serving.server.encoding.jpegQuality=75",
    )  # fmt: skip
    _, container = server(objects)
    env = {e["name"]: e.get("value") for e in container["env"]}
    assert env["SD_COMPILE"] == "max-autotune" and env["SD_JPEG_QUALITY"] == "75"
    assert env["SD_PNG_COMPRESS_LEVEL"] == "6" and env["SD_WEBP_QUALITY"] == "90"
    # The compiler's caches must be writable under a read-only root filesystem.
    assert container["securityContext"]["readOnlyRootFilesystem"] is True
    mounts = {m["mountPath"] for m in container["volumeMounts"]}
    assert env["TORCHINDUCTOR_CACHE_DIR"].startswith("/tmp/") and env["TRITON_CACHE_DIR"].startswith("/tmp/")
    assert "/tmp" in mounts
    eager = {e["name"] for e in server(render_objects("inf2.xlarge", "dev"))[1]["env"]}
    assert "SD_COMPILE" not in eager and "TRITON_CACHE_DIR" not in eager


# --- the compile Job --------------------------------------------------------------------------

COMPILE_JOB = (
    "sd21-serving.compileJob.enabled=true",
    "sd21-serving.compileJob.sourceS3Uri=s3://models/sd21/source.tar.gz",
)
NEURON_RESOURCES = ("aws.amazon.com/neuron", "aws.amazon.com/neuroncore", "aws.amazon.com/neurondevice")
PLACEMENTS = {
    "the compile NodePool": (),
    "the default node (no Karpenter)": ("sd21-serving.karpenter.enabled=false",),
    "the serving type, chosen by the user": ("SERVING_TYPE",),
}


def compile_pod(objects: list[dict[str, Any]]) -> dict[str, Any]:
    pod: dict[str, Any] = find(objects, "Job", "sd21-serving-compile")["spec"]["template"]["spec"]
    return pod


def memory_mib(value: str) -> float:
    return quantity(value) / 2**20


@pytest.mark.parametrize("placement", list(PLACEMENTS))
@pytest.mark.parametrize("instance", SERVING_INSTANCES)
def test_the_compile_job_fits_where_it_is_placed_or_is_refused_naming_the_key(instance: str, placement: str) -> None:
    """Tracing runs on the CPU: the Job asks for no Neuron device or core, is not pinned to the serving
    type unless the user pins it, uses the default scheduler, and asks for no more than its node gives."""
    sets = [
        f"sd21-serving.compileJob.nodeSelector.node\\.kubernetes\\.io/instance-type={instance}"
        if s == "SERVING_TYPE"
        else s
        for s in PLACEMENTS[placement]
    ]
    try:
        objects = render_objects(instance, "prod", *COMPILE_JOB, *sets)
    except NchartError as error:
        # Only a node too small for the compile may refuse it, and the message says which key to change.
        _, memory = pod_capacity(CATALOG[instance])
        assert placement == "the serving type, chosen by the user" and memory < 64 * 1024, error.message
        assert f"but {instance} from compileJob.nodeSelector gives pods" in error.message
        assert "(compileJob.resources.requests)" in error.message
        return
    pod = compile_pod(objects)
    containers = [*pod["initContainers"], *pod["containers"]]
    for c in containers:
        asked = {**c["resources"].get("requests", {}), **c["resources"].get("limits", {})}
        assert not set(asked) & set(NEURON_RESOURCES), (c["name"], asked)
        assert "aws-cli" not in c["image"]
    assert "schedulerName" not in pod  # nothing for the Neuron extender to place
    compile_step = next(c for c in pod["initContainers"] if c["name"] == "compile")
    command = compile_step["command"]
    assert command[command.index("--target") + 1] == CATALOG[instance].compiler_target
    assert ("--logical-nc-config" in command) == (CATALOG[instance].compiler_target == "trn2")
    requests = compile_step["resources"]["requests"]
    selected = pod["nodeSelector"].get("node.kubernetes.io/instance-type")
    if placement == "the compile NodePool":
        assert pod["nodeSelector"] == {"eks-neuron/node-pool": "compile"}
        pool = find(objects, "NodePool", "sd21-serving-compile")["spec"]["template"]
        assert pool["metadata"]["labels"] == pod["nodeSelector"]
        for taint in pool["spec"]["taints"]:
            assert any(t["key"] == taint["key"] and t["effect"] == taint["effect"] for t in pod["tolerations"]), taint
        return
    assert selected == ("inf2.8xlarge" if placement.startswith("the default") else instance)
    cpu, memory = pod_capacity(CATALOG[selected])
    assert quantity(requests["cpu"]) * 1000 <= cpu and memory_mib(requests["memory"]) <= memory
    assert any(t["key"] == "aws.amazon.com/neuron" for t in pod["tolerations"])


def test_the_compile_job_takes_its_target_from_the_serving_type_or_asks_for_one() -> None:
    from nchart.core.project import find_project
    from nchart.core.render import render
    from nchart.core.values import ValuesSource

    job = {"enabled": True, "sourceS3Uri": "s3://b/src.tar.gz"}
    base = {"sd21-serving": {"enabled": True, "model": {"s3Uri": "s3://b/m.tar.gz"}, "compileJob": job}}
    with pytest.raises(NchartError) as caught:
        render(find_project(ROOT), [ValuesSource("plain helm values", base)])
    assert "sd21-serving: compileJob.target: say which Neuron instance family" in caught.value.message
    with pytest.raises(NchartError) as caught:
        render_objects("inf2.xlarge", "dev", *COMPILE_JOB, "sd21-serving.compileJob.target=trn1")
    assert (
        "compileJob.target is trn1, but the release serves on inf2.xlarge (neuronx-cc --target inf2)"
        in caught.value.message
    )
    objects = render_objects("inf2.24xlarge", "prod", *COMPILE_JOB, "sd21-serving.compileJob.attention=nki")
    command = next(c for c in compile_pod(objects)["initContainers"] if c["name"] == "compile")["command"]
    assert command[command.index("--attention") + 1] == "nki"
    assert command[-4:] == ["--cores", "2", "--pack", "/work/model.tar.gz"]


def test_the_compile_job_fetches_and_uploads_with_the_servers_image() -> None:
    objects = render_objects("inf2.24xlarge", "prod", *COMPILE_JOB, "sd21-serving.compileJob.sourceSha256=" + "a" * 64)
    pod = compile_pod(objects)
    _, container = server(objects)
    steps = {c["name"]: c for c in [*pod["initContainers"], *pod["containers"]]}
    assert list(steps) == ["fetch-source", "compile", "upload"]
    assert {c["image"] for c in steps.values()} == {container["image"]}
    fetch_env = {e["name"]: e["value"] for e in steps["fetch-source"]["env"]}
    assert steps["fetch-source"]["command"] == ["eks-neuron-serve", "fetch-model"]
    assert fetch_env == {
        "MODEL_S3_URI": "s3://models/sd21/source.tar.gz",
        "MODEL_SHA256": "a" * 64,
        "MODEL_DIR": "/work/source",
        "WORK_DIR": "/work/download",
    }
    assert steps["upload"]["command"] == ["eks-neuron-serve", "upload-model", "--file", "/work/model.tar.gz"]
    assert {e["name"]: e["value"] for e in steps["upload"]["env"]} == {
        "MODEL_S3_URI": "s3://eks-neuron-prod-models/sd21-512/model.tar.gz"
    }
    assert {e["name"]: e["value"] for e in steps["compile"]["env"]}["NEURON_FUSE_SOFTMAX"] == "1"
    assert pod["volumes"][0] == {"name": "work", "emptyDir": {"sizeLimit": "40Gi"}}


def test_the_served_model_names_reach_the_server_and_bad_ones_are_refused() -> None:
    _, container = server(render_objects("inf2.xlarge", "dev", "sd21-serving.server.modelAliases={dall-e-3,sd21}"))
    env = {e["name"]: e.get("value") for e in container["env"]}
    assert env["SD_MODEL_ID"] == "stable-diffusion-2-1-base" and env["SD_MODEL_ALIASES"] == "dall-e-3,sd21"
    with pytest.raises(NchartError) as caught:
        render_objects("inf2.xlarge", "dev", "sd21-serving.server.modelAliases={a b}")
    assert 'server.modelAliases: "a b" is empty or holds a comma or a space' in caught.value.message


# --- the server's settings and its API tokens --------------------------------------------------

# Read by the command line, not by Settings.
CLI_SETTINGS = {"SD_LOG_LEVEL"}


@pytest.mark.parametrize("env", ENVS)
def test_every_setting_the_chart_writes_is_one_the_server_reads(env: str, monkeypatch: pytest.MonkeyPatch) -> None:
    from serving.settings import Settings

    _, container = server(render_objects("inf2.xlarge", env, "sd21-serving.auth.tokens.ci=abcdefghijklmnop0123"))
    written = {e["name"]: e["value"] for e in container["env"] if e["name"].startswith("SD_")}
    unknown = {name for name in written if name[3:].lower() not in Settings.model_fields} - CLI_SETTINGS
    assert not unknown, f"the chart sets settings the server does not have: {unknown}"
    for name, value in written.items():
        monkeypatch.setenv(name, value)
    read = Settings()  # a value the server cannot parse (e.g. 1.048576e+06 for an int) raises here
    assert read.max_body_bytes == 1_048_576 and read.max_connections == 512


def test_api_tokens_from_the_charts_secret_reach_the_server_and_prometheus() -> None:
    objects = render_objects(
        "inf2.xlarge", "prod", "sd21-serving.auth.existingSecret=", "sd21-serving.auth.protectMetrics=true",
        "sd21-serving.auth.tokens.prometheus=scrape-token-0123456789", "sd21-serving.auth.tokens.team-a=t0ken-of-team-a-xyz",
    )  # fmt: skip
    secret = find(objects, "Secret", "sd21-serving-api-tokens")
    assert secret["stringData"] == {"prometheus": "scrape-token-0123456789", "team-a": "t0ken-of-team-a-xyz"}
    pod, container = server(objects)
    env = {e["name"]: e.get("value") for e in container["env"]}
    mount = {m["name"]: m for m in container["volumeMounts"]}["api-tokens"]
    assert env["SD_API_TOKENS_DIR"] == mount["mountPath"] and mount["readOnly"] is True and "subPath" not in mount
    assert env["SD_METRICS_REQUIRE_TOKEN"] == "true"
    volume = {v["name"]: v for v in pod["volumes"]}["api-tokens"]
    assert volume["secret"]["secretName"] == secret["metadata"]["name"]
    endpoint = find(objects, "ServiceMonitor", "sd21-serving")["spec"]["endpoints"][0]
    assert endpoint["authorization"] == {
        "type": "Bearer",
        "credentials": {"name": secret["metadata"]["name"], "key": "prometheus"},
    }


def test_prod_requires_tokens_from_an_existing_secret() -> None:
    objects = render_objects("inf2.xlarge", "prod")
    assert not [o for o in objects if o["kind"] == "Secret" and "api-tokens" in o["metadata"]["name"]]
    pod, container = server(objects)
    assert {v["name"]: v for v in pod["volumes"]}["api-tokens"]["secret"]["secretName"] == "eks-neuron-api-tokens"
    assert {"SD_API_TOKENS_DIR", "SD_METRICS_REQUIRE_TOKEN"} <= {e["name"] for e in container["env"]}
    plain = server(render_objects("inf2.xlarge", "dev", "sd21-serving.auth.enabled=false"))[1]
    assert not {"SD_API_TOKENS_DIR", "SD_METRICS_REQUIRE_TOKEN"} & {e["name"] for e in plain["env"]}


@pytest.mark.parametrize(
    "settings,message",
    [
        (["sd21-serving.auth.enabled=true"], "auth.enabled needs tokens"),
        (
            ["sd21-serving.auth.enabled=true", "sd21-serving.auth.protectMetrics=true",
             "sd21-serving.auth.tokens.ci=abcdefghijklmnop0123"],
            'auth.protectMetrics has Prometheus present the token "prometheus", which auth.tokens lacks',
        ),
        (["sd21-serving.auth.tokens.ci=short"], "sd21-serving.auth.tokens.ci"),
        (["sd21-serving.auth.tokens.ci=has spaces in it, many"], "sd21-serving.auth.tokens.ci"),
    ],
)  # fmt: skip
def test_auth_settings_that_cannot_work_are_refused(settings: list[str], message: str) -> None:
    with pytest.raises(NchartError) as caught:
        render_objects("inf2.xlarge", "dev", *settings)
    assert message in caught.value.message


def test_a_neuron_device_group_reaches_the_nodes_and_the_pods() -> None:
    objects = render_objects("inf2.xlarge", "prod", *COMPILE_JOB, "sd21-serving.neuron.deviceGroupId=1500")
    pod, _ = server(objects)
    assert pod["securityContext"]["supplementalGroups"] == [1500]
    job = find(objects, "Job", "sd21-serving-compile")["spec"]["template"]["spec"]
    assert job["securityContext"]["supplementalGroups"] == [1500]
    user_data = find(objects, "EC2NodeClass", "")["spec"]["userData"]
    assert "groupadd --system --gid 1500 neuron" in user_data
    assert 'KERNEL=="neuron*", GROUP="neuron", MODE="0660"' in user_data
    # 0 (the default): the devices keep their mode, and nothing is added.
    default = render_objects("inf2.xlarge", "prod", *COMPILE_JOB)
    assert "supplementalGroups" not in server(default)[0]["securityContext"]
    assert "udev" not in find(default, "EC2NodeClass", "")["spec"].get("userData", "")
