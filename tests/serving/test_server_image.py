"""The server image `make image` builds (the Containerfile's cpu target), run the way the chart runs
it: the user, read-only root, dropped capabilities, no privilege escalation, the command and the
environment of the chart's rendered Deployment, the tiny model mounted read-only where the chart
mounts the model, /tmp a scratch volume. It must become ready, generate an image over HTTP, and on
SIGTERM finish every request it had taken before it exits 0."""

from __future__ import annotations

import io
import json
import shutil
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from PIL import Image

from nchart.localcluster.processes import free_port
from tests.support.charts import ROOT, render_objects
from tests.support.oci import app_version, built_image, podman
from tests.support.readiness import wait_until_answers
from tests.support.serving import metric_value

pytestmark = pytest.mark.slow
ROUTE = "/v1/images/generations"
# Bounds for a busy 2-core machine: the model loads in seconds, a test asserts that it happens.
READY_TIMEOUT_S = 300


def chart_server_container(backend: str = "cpu") -> tuple[dict[str, Any], dict[str, Any]]:
    """The server container and pod spec of the sd21-serving Deployment for a backend."""
    # Timeout and grace period as a slow model needs them (here: the tiny one on a loaded machine),
    # so the drain test waits for work, not for the clock.
    objects = render_objects(
        "inf2.xlarge", "dev", "sd21-serving.enabled=true", f"sd21-serving.server.backend={backend}",
        "sd21-serving.server.requestTimeoutSeconds=1800", "sd21-serving.terminationGracePeriodSeconds=1800",
    )  # fmt: skip
    [deployment] = [o for o in objects if o["kind"] == "Deployment" and o["metadata"]["name"].endswith("sd21-serving")]
    pod = deployment["spec"]["template"]["spec"]
    [server] = [c for c in pod["containers"] if c["name"] == "server"]
    return server, pod


def podman_run_args(server: dict[str, Any], pod: dict[str, Any], model_dir: Path, port: int) -> list[str]:
    """`podman run` options for what the chart asks of the container runtime."""
    pod_context, context = pod.get("securityContext") or {}, server.get("securityContext") or {}
    args = ["--user", f"{pod_context['runAsUser']}:{pod_context['runAsGroup']}"]
    if context.get("readOnlyRootFilesystem"):
        args.append("--read-only")
    for capability in (context.get("capabilities") or {}).get("drop") or []:
        args += ["--cap-drop", capability]
    if context.get("allowPrivilegeEscalation") is False:
        args += ["--security-opt", "no-new-privileges"]
    for variable in server.get("env") or []:
        if "value" in variable:
            args += ["--env", f"{variable['name']}={variable['value']}"]
    mounts = {m["name"]: m for m in server.get("volumeMounts") or []}
    args += ["--volume", f"{model_dir}:{mounts['model']['mountPath']}:ro"]
    args += ["--tmpfs", f"{mounts['tmp']['mountPath']}:rw,size=2g,mode=1777"]
    memory = ((server.get("resources") or {}).get("limits") or {}).get("memory")
    if memory:
        args += ["--memory", str(memory).replace("Gi", "g").replace("Mi", "m")]
    [http] = [p for p in server["ports"] if p["name"] == "http"]
    args += ["--publish", f"127.0.0.1:{port}:{http['containerPort']}"]
    args += ["--entrypoint", json.dumps(server["command"])]
    return args


@pytest.fixture(scope="module")
def readable_model_dir(tiny_model_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The tiny model readable by the container's user, as the chart's initContainer leaves it."""
    copy = tmp_path_factory.mktemp("model-for-image") / "tiny"
    shutil.copytree(tiny_model_dir, copy)
    for path in [copy, *copy.rglob("*")]:
        path.chmod(0o755 if path.is_dir() else 0o644)
    return copy


@pytest.fixture(scope="module")
def running_image(readable_model_dir: Path) -> Iterator[tuple[str, str]]:
    """The container, started as the chart would start it; yields (name, base URL)."""
    image = built_image("cpu")
    server, pod = chart_server_container()
    assert server["image"].endswith(f"sd21-serving:{app_version()}-cpu"), server["image"]
    port = free_port()
    name = f"sd21-serving-test-{port}"
    podman("run", "--detach", "--name", name, *podman_run_args(server, pod, readable_model_dir, port), image)
    base = f"http://127.0.0.1:{port}"
    try:
        wait_until_answers(
            f"{base}/ready", "the server container", READY_TIMEOUT_S, lambda: why_container_failed(name, base), 0.5
        )
        yield name, base
    finally:
        podman("rm", "--force", "--time", "5", name, check=False)


def why_container_failed(name: str, base: str) -> str | None:
    """The container's state and log once it has stopped or its model failed to load (/health 500)."""
    state = podman("inspect", "--format", "{{.State.Status}}", name).stdout.strip()
    try:
        health = httpx.get(f"{base}/health", timeout=5)
        load_error = "" if health.status_code == 200 else f", /health {health.status_code} {health.text[:500]}"
    except httpx.TransportError:
        load_error = ""  # not listening yet
    if state == "running" and not load_error:
        return None
    return f"the container is {state}{load_error}:\n{podman('logs', name).stderr[-3000:]}"


def test_the_image_is_labelled_and_runs_as_its_non_root_user() -> None:
    config = json.loads(podman("image", "inspect", built_image("cpu")).stdout)[0]["Config"]
    labels = config["Labels"]
    assert labels["org.opencontainers.image.version"] == app_version()
    assert labels["org.opencontainers.image.title"] == "sd21-serving"
    assert config["User"] == "65532:65532"
    assert config["Entrypoint"] == ["eks-neuron-serve"] and config["Cmd"] == ["serve"]


def test_the_image_holds_the_server_distribution_and_nothing_of_nchart() -> None:
    """The image installs eks-neuron-serve (serving/pyproject.toml) with pip: metadata, entry point and
    bytecode as pip writes them; nchart and its dependencies stay out."""
    import tomllib

    version = tomllib.loads((ROOT / "serving" / "pyproject.toml").read_text())["project"]["version"]
    script = (
        "import importlib.metadata as m, json, serving, pathlib\n"
        "dist = m.distribution('eks-neuron-serve')\n"
        "cached = list(pathlib.Path(serving.__file__).parent.glob('__pycache__/*.pyc'))\n"
        "try:\n    m.distribution('eks-neuron'); nchart = True\nexcept m.PackageNotFoundError:\n    nchart = False\n"
        "print(json.dumps({'version': dist.version, 'scripts': [e.name for e in dist.entry_points],"
        " 'bytecode': len(cached), 'nchart': nchart}))\n"
    )
    result = podman("run", "--rm", "--entrypoint", "python3", built_image("cpu"), "-c", script)
    found = json.loads(result.stdout)
    assert found["version"] == version
    assert found["scripts"] == ["eks-neuron-serve"]
    assert found["bytecode"] >= 10  # compiled at install: a read-only root never writes it
    assert found["nchart"] is False


def test_the_container_serves_as_the_chart_runs_it(running_image: tuple[str, str]) -> None:
    name, base = running_image
    inspected = json.loads(podman("inspect", name).stdout)[0]
    assert inspected["Config"]["User"] == "65532:65532"
    assert inspected["HostConfig"]["ReadonlyRootfs"] is True
    assert httpx.get(f"{base}/ready").json()["backend"] == "cpu"
    response = httpx.post(f"{base}{ROUTE}", json={"prompt": "a red cube", "steps": 2, "seed": 1}, timeout=120)
    assert response.status_code == 200, response.text
    assert response.headers["content-type"] == "image/png" and response.headers["x-seed"] == "1"
    image = Image.open(io.BytesIO(response.content))
    assert image.size == (64, 64)
    # Nothing outside /tmp was written: the root filesystem would have refused it.
    assert "Read-only file system" not in podman("logs", name).stderr


def test_the_images_load_client_measures_the_server_as_the_load_test_job_runs_it(
    running_image: tuple[str, str],
) -> None:
    """`eks-neuron-serve loadtest` from the image, with the load-test Job's user, read-only root and /tmp,
    against the running server container: the table and the result document it leaves for nchart."""
    _, base = running_image
    result = podman(
        "run", "--rm", "--network", "host", "--user", "65532:65532", "--read-only", "--cap-drop", "ALL",
        "--tmpfs", "/tmp:rw,size=64m,mode=1777", built_image("cpu"),
        "loadtest", f"--url={base}", "--concurrency=1,2", "--requests=2", "--steps=2", "--result-file=/tmp/result",
        timeout=600,
    )  # fmt: skip
    document = json.loads(result.stdout.strip().splitlines()[-1])
    assert [level["concurrency"] for level in document["levels"]] == [1, 2]
    assert all(level["statuses"] == {"200": 2} for level in document["levels"]), document
    assert "| 2 | 1 | 2 | none |" in result.stdout


def test_sigterm_finishes_the_requests_taken_then_exits_0(running_image: tuple[str, str]) -> None:
    name, base = running_image
    answers: list[int] = []

    def client(seed: int) -> None:
        try:
            answer = httpx.post(f"{base}{ROUTE}", json={"prompt": "slow", "steps": 150, "seed": seed}, timeout=600)
            answers.append(answer.status_code)
        except httpx.TransportError as error:
            answers.append(-1)
            raise AssertionError(f"request {seed} lost: {error}") from error

    clients = [threading.Thread(target=client, args=(seed,)) for seed in range(6)]
    for thread in clients:
        thread.start()
    # Work is taken (running and queued) when the signal comes.
    deadline = time.monotonic() + READY_TIMEOUT_S
    while True:
        metrics = httpx.get(f"{base}/metrics").text
        taken = metric_value(metrics, "sd_inflight_requests") + metric_value(metrics, "sd_queue_depth")
        if taken >= 3:
            break
        assert time.monotonic() < deadline, "the requests never reached the server"
        time.sleep(0.05)
    podman("kill", "--signal", "TERM", name)
    for thread in clients:
        thread.join(timeout=600)
    assert answers == [200] * 6, answers
    exit_code = podman("wait", name, timeout=300).stdout.strip()
    assert exit_code == "0", podman("logs", name).stderr[-3000:]


# --- the Neuron path, through the neuron-standin image -------------------------------------------

# What the device plugin gives an inf2.xlarge pod asking for 2 NeuronCores (its Allocate answer sets
# NEURON_RT_VISIBLE_CORES); NEURON_STANDIN_INSTANCE_TYPE tells the stand-in which hardware it is on.
INF2_NODE_ENV = {"NEURON_STANDIN_INSTANCE_TYPE": "inf2.xlarge", "NEURON_RT_VISIBLE_CORES": "0-1"}


def containerfile_env(target: str) -> str:
    """The ENV instruction of a Containerfile target, as written."""
    text = (ROOT / "Containerfile").read_text(encoding="utf-8")
    stage = text.split(f" AS {target}\n", 1)[1].split("\nFROM ", 1)[0]
    return stage[stage.index("ENV ") : stage.index("\nUSER ")]


def test_the_standin_image_has_the_neuron_images_environment() -> None:
    assert containerfile_env("neuron-standin") == containerfile_env("neuron")
    assert "NEURON_FUSE_SOFTMAX=1" in containerfile_env("neuron") and "SD_BACKEND=neuron" in containerfile_env("neuron")
    config = json.loads(podman("image", "inspect", built_image("neuron-standin")).stdout)[0]["Config"]
    assert config["User"] == "65532:65532" and config["Entrypoint"] == ["eks-neuron-serve"]
    # The Neuron image's library pins, not the cpu image's.
    versions = podman(
        "run", "--rm", "--entrypoint", "python3", built_image("neuron-standin"), "-c",
        "import diffusers, transformers; print(diffusers.__version__, transformers.__version__)",
    ).stdout.split()  # fmt: skip
    assert versions == ["0.29.2", "4.42.3"]


@pytest.fixture(scope="module")
def standin_compiled_model(readable_model_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The tiny model compiled in the neuron-standin image by the compile Job's own command."""
    objects = render_objects(
        "inf2.xlarge",
        "dev",
        "sd21-serving.compileJob.enabled=true",
        "sd21-serving.compileJob.sourceS3Uri=s3://m/s.tar.gz",
    )
    [job] = [o for o in objects if o["kind"] == "Job"]
    [compile_step] = [c for c in job["spec"]["template"]["spec"]["initContainers"] if c["name"] == "compile"]
    work = tmp_path_factory.mktemp("standin-compile")
    work.chmod(0o777)
    options = [
        "--rm",
        "--user",
        "65532:65532",
        "--read-only",
        "--cap-drop",
        "ALL",
        "--tmpfs",
        "/tmp:rw,size=1g,mode=1777",
    ]
    options += ["--volume", f"{readable_model_dir}:/work/source:ro", "--volume", f"{work}:/work"]
    for variable in compile_step["env"]:
        options += ["--env", f"{variable['name']}={variable['value']}"]
    command = compile_step["command"]
    podman("run", *options, "--entrypoint", command[0], built_image("neuron-standin"), *command[1:], timeout=900)
    compiled = work / "compiled"
    assert json.loads((compiled / "neuron" / "manifest.json").read_text())["target"] == "inf2"
    assert (work / "model.tar.gz.sha256").is_file()
    for path in [compiled, *compiled.rglob("*")]:
        path.chmod(0o755 if path.is_dir() else 0o644)
    return compiled


def test_the_neuron_image_serves_the_compiled_model_as_the_chart_runs_it(standin_compiled_model: Path) -> None:
    server, pod = chart_server_container("neuron")
    assert server["image"].endswith(f"sd21-serving:{app_version()}"), server["image"]  # the neuron image: no suffix
    assert {e["name"]: e.get("value") for e in server["env"]}["SD_BACKEND"] == "neuron"
    port = free_port()
    name = f"sd21-serving-standin-{port}"
    node = [arg for key, value in INF2_NODE_ENV.items() for arg in ("--env", f"{key}={value}")]
    args = podman_run_args(server, pod, standin_compiled_model, port)
    podman("run", "--detach", "--name", name, *node, *args, built_image("neuron-standin"))
    base = f"http://127.0.0.1:{port}"
    try:
        wait_until_answers(
            f"{base}/ready",
            "the neuron server container",
            READY_TIMEOUT_S,
            lambda: why_container_failed(name, base),
            0.5,
        )
        assert httpx.get(f"{base}/ready").json() == {"status": "ready", "backend": "neuron"}
        response = httpx.post(f"{base}{ROUTE}", json={"prompt": "a harbour", "steps": 2, "seed": 4}, timeout=300)
        assert response.status_code == 200, response.text
        assert Image.open(io.BytesIO(response.content)).size == (64, 64)
    finally:
        podman("rm", "--force", "--time", "5", name, check=False)
