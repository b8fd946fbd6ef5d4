"""The Neuron path through a stand-in torch_neuronx (tests/standins), in processes of their own as a
pod runs them: compile with `eks-neuron-serve compile --tracer neuron`, serve with `SD_BACKEND=neuron`
as the chart sets it. The stand-in keeps the real library's contract (its docstring lists it), so
these fail where a real inf2 would: an artefact loaded before torch_neuronx is imported, a flag
neuronx-cc refuses, more UNet copies than the pod's cores, a model compiled for another logical
NeuronCore config."""

from __future__ import annotations

import io
import json
import os
import subprocess
import sys
from pathlib import Path

import httpx
import pytest
from local_server import ModelLoadFailed, server_process
from PIL import Image

from serving.neuron import PART_COMPILER_ARGS
from tests.support.charts import ROOT

pytestmark = pytest.mark.slow
STANDINS = ROOT / "tests" / "standins"
# What an inf2.xlarge pod sees: the device plugin gives it both cores of the one device.
INF2_POD = {"NEURON_STANDIN_INSTANCE_TYPE": "inf2.xlarge", "NEURON_RT_VISIBLE_CORES": "0-1"}
STATE_TIMEOUT_S = 300


def standin_env(**extra: str) -> dict[str, str]:
    return {
        **os.environ,
        "HF_HUB_OFFLINE": "1",
        "PYTHONPATH": os.pathsep.join([str(STANDINS), os.environ.get("PYTHONPATH", "")]),
        **extra,
    }


def serve_cli(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "serving", *args],
        env=env or standin_env(),
        capture_output=True,
        text=True,
        timeout=STATE_TIMEOUT_S,
    )


def compile_with_standin(source: Path, out: Path, *args: str) -> Path:
    result = serve_cli("compile", "--model-dir", str(source), "--out", str(out), "--tracer", "neuron", *args)
    assert result.returncode == 0, result.stderr[-3000:]
    return out


@pytest.fixture(scope="module")
def inf2_model(tiny_model_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    return compile_with_standin(tiny_model_dir, tmp_path_factory.mktemp("standin") / "inf2", "--target", "inf2")


@pytest.fixture(scope="module")
def trn2_lnc1_model(tiny_model_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("standin") / "trn2"
    return compile_with_standin(tiny_model_dir, out, "--target", "trn2", "--logical-nc-config", "1")


def settings(model_dir: Path, **extra: str) -> dict[str, str]:
    """The server's environment as the chart sets it for the neuron backend, plus the node's."""
    return {
        **standin_env(**INF2_POD),
        "SD_MODEL_DIR": str(model_dir),
        "SD_BACKEND": "neuron",
        "SD_NEURON_CORES": "2",
        "SD_DEFAULT_STEPS": "2",
        "SD_LOG_LEVEL": "warning",
        **extra,
    }


def test_the_server_serves_a_neuron_compiled_model_with_backend_neuron(inf2_model: Path) -> None:
    with server_process(settings(inf2_model), ready_timeout_s=STATE_TIMEOUT_S) as (base, _):
        assert httpx.get(f"{base}/ready").json() == {"status": "ready", "backend": "neuron"}
        response = httpx.post(
            f"{base}/v1/images/generations", json={"prompt": "a lighthouse", "seed": 3, "steps": 2}, timeout=120
        )
        assert response.status_code == 200, response.text
        assert Image.open(io.BytesIO(response.content)).size == (64, 64)
        assert (
            'sd_model_info{backend="neuron",height="64",traced="true",width="64"} 1.0'
            in httpx.get(f"{base}/metrics").text
        )


LOAD_BEFORE_IMPORT = """
import sys, torch
try:
    torch.jit.load(sys.argv[1])
except RuntimeError as error:
    print("before import:", str(error).splitlines()[1])
import torch_neuronx
module = torch.jit.load(sys.argv[1])
print("after import:", json.dumps(torch_neuronx.load_settings(module)))
"""


def test_a_neuron_artefact_loads_only_after_torch_neuronx_is_imported(inf2_model: Path) -> None:
    code = "import json\n" + LOAD_BEFORE_IMPORT
    result = subprocess.run(
        [sys.executable, "-c", code, str(inf2_model / "neuron" / "unet.pt")],
        env=standin_env(),
        capture_output=True,
        text=True,
        timeout=STATE_TIMEOUT_S,
    )
    assert result.returncode == 0, result.stderr
    before, after = result.stdout.splitlines()
    assert before == "before import: Unknown builtin op: neuron::forward_v2."
    loaded = json.loads(after.removeprefix("after import: "))
    # The sample's UNet flags, the target, and both load settings the sample sets on the UNet.
    assert loaded["compiler_args"] == sorted([*PART_COMPILER_ARGS["unet"], "--target=inf2"])
    assert loaded["async_load"] and loaded["lazy_load"]
    assert loaded["inputs"] == [[[1, 4, 32, 32], "bfloat16"], [[1], "bfloat16"], [[1, 77, 32], "bfloat16"]]


def test_the_manifest_says_what_was_compiled_and_how(inf2_model: Path) -> None:
    manifest = json.loads((inf2_model / "neuron" / "manifest.json").read_text())
    assert manifest["format"] == 2 and manifest["tracer"] == "neuron" and manifest["target"] == "inf2"
    assert manifest["torch_neuronx"].endswith("+standin") and manifest["logical_nc_config"] is None
    assert manifest["dtypes"] == {
        "text_encoder": "bfloat16",
        "unet": "bfloat16",
        "vae_decoder": "float32",
        "post_quant_conv": "float32",
    }
    assert manifest["attention"] == "bmm"
    assert manifest["compiler_args"]["post_quant_conv"] == ["--target", "inf2"]
    assert manifest["compiler_args"]["vae_decoder"] == [
        "--model-type=unet-inference",
        "--enable-fast-loading-neuron-binaries",
        "--target",
        "inf2",
    ]
    assert manifest["load"] == {"async": ["text_encoder", "unet", "vae_decoder", "post_quant_conv"], "lazy": ["unet"]}


def test_more_unet_copies_than_the_pods_cores_is_a_load_error(inf2_model: Path) -> None:
    with (
        pytest.raises(ModelLoadFailed, match=r"device_ids \[0, 1, 2, 3\] are not among the 2 NeuronCore"),
        server_process(settings(inf2_model, SD_NEURON_CORES="4"), ready_timeout_s=STATE_TIMEOUT_S),
    ):
        pass


def test_a_model_for_another_logical_core_config_is_refused(trn2_lnc1_model: Path) -> None:
    manifest = json.loads((trn2_lnc1_model / "neuron" / "manifest.json").read_text())
    assert manifest["target"] == "trn2" and manifest["logical_nc_config"] == 1
    assert "--logical-nc-config" in manifest["compiler_args"]["unet"]
    trn2 = {"NEURON_STANDIN_INSTANCE_TYPE": "trn2.48xlarge", "NEURON_RT_VISIBLE_CORES": "0-1"}
    with (
        pytest.raises(
            ModelLoadFailed, match="compiled with --logical-nc-config 1 but this runtime has NEURON_LOGICAL_NC_CONFIG=2"
        ),
        server_process({**settings(trn2_lnc1_model), **trn2}, ready_timeout_s=STATE_TIMEOUT_S),
    ):
        pass
    lnc1 = {**settings(trn2_lnc1_model), **trn2, "NEURON_LOGICAL_NC_CONFIG": "1"}
    with server_process(lnc1, ready_timeout_s=STATE_TIMEOUT_S) as (base, _):
        assert httpx.get(f"{base}/ready").json()["backend"] == "neuron"


def test_an_inf2_model_does_not_load_on_trn2(inf2_model: Path) -> None:
    trn2 = {"NEURON_STANDIN_INSTANCE_TYPE": "trn2.48xlarge", "NEURON_RT_VISIBLE_CORES": "0-1"}
    with (
        pytest.raises(ModelLoadFailed, match="compiled for inf2, cannot load on trn2.48xlarge"),
        server_process({**settings(inf2_model), **trn2}, ready_timeout_s=STATE_TIMEOUT_S),
    ):
        pass


@pytest.mark.parametrize(
    "args,code,message",
    [
        ([], 2, "--tracer neuron needs --target"),
        (["--target", "inf2", "--logical-nc-config", "1"], 2, "--logical-nc-config is for --target trn2"),
        (["--target", "inf2", "--attention", "nki"], 3, "--attention nki needs the Neuron compiler's NKI kernels"),
    ],
)
def test_compile_refuses_what_neuron_cannot_do(
    tiny_model_dir: Path, tmp_path: Path, args: list[str], code: int, message: str
) -> None:
    result = serve_cli(
        "compile", "--model-dir", str(tiny_model_dir), "--out", str(tmp_path / "o"), "--tracer", "neuron", *args
    )
    assert result.returncode == code, result.stderr
    assert message in result.stderr and "Traceback" not in result.stderr


STANDIN_REFUSES = """
import torch, torch_neuronx
module, x = torch.nn.Linear(2, 2), torch.ones(1, 2)
for args, cpu_backend in (
    (["--target", "inf2", "--auto-cast=matmul"], True),
    (["--target", "inf2", "--no-such-flag"], True),
    (["--target", "inf2", "--logical-nc-config=1"], True),
    (["--model-type=unet-inference"], True),
    (["--target", "inf2"], False),
):
    try:
        torch_neuronx.trace(module, x, compiler_args=args, cpu_backend=cpu_backend)
        print("accepted", args)
    except RuntimeError as error:
        print(error)
"""


def test_the_standin_refuses_what_neuronx_cc_and_trace_refuse() -> None:
    """The stand-in can fail: otherwise a test through it would prove nothing."""
    result = subprocess.run(
        [sys.executable, "-c", STANDIN_REFUSES], env=standin_env(), capture_output=True, text=True, timeout=120
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.splitlines() == [
        "neuronx-cc compile: error: --auto-cast: invalid choice 'matmul' (choose from none, matmult, all)",
        "neuronx-cc compile: error: unrecognized arguments: --no-such-flag",
        "neuronx-cc compile: error: --logical-nc-config is only available on trn2, not inf2",
        "torch_neuronx.trace: cpu_backend=True needs --target in compiler_args",
        "torch_neuronx.trace: tracing runs the model on a NeuronCore, and this host has none; "
        "trace with cpu_backend=True and --target to compile on CPU",
    ], result.stdout
