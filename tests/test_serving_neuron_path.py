"""The Neuron code path (traced sub-models, artefact layout, loader) run on CPU with the torch.jit tracer."""

from __future__ import annotations

import io
import json
import tarfile
from pathlib import Path

import numpy as np
import pytest
import serving_support  # noqa: F401
from click.testing import CliRunner
from PIL import Image
from serving_support import ready_app, ready_client

from serving.artefacts import pack, unpack
from serving.cli import cli
from serving.neuron import NEURON_DIR, TracedTextEncoder, TracedUNet, neuron_available
from serving.pipeline import BatchKey, ImageRequest, ModelLoadError, load_generator


def test_compile_writes_the_artefact_layout(traced_model_dir: Path) -> None:
    manifest = json.loads((traced_model_dir / NEURON_DIR / "manifest.json").read_text())
    assert manifest["tracer"] == "jit" and manifest["format"] == 1
    assert manifest["image_size"] == [64, 64]
    assert manifest["latent_shape"] == [1, 4, 32, 32]
    assert manifest["text_max_length"] == 77 and manifest["unet_cores"] == 2
    for name in ("text_encoder.pt", "unet.pt", "vae_decoder.pt", "vae_post_quant_conv.pt"):
        assert (traced_model_dir / NEURON_DIR / name).stat().st_size > 0
    assert (traced_model_dir / "model_index.json").is_file()


def test_traced_pipeline_replaces_the_sub_models_and_matches_eager(
    tiny_model_dir: Path, traced_model_dir: Path
) -> None:
    traced = load_generator(traced_model_dir, "cpu")
    eager = load_generator(tiny_model_dir, "cpu")
    assert traced.traced and not eager.traced
    assert isinstance(traced.pipeline.unet, TracedUNet)
    assert isinstance(traced.pipeline.text_encoder, TracedTextEncoder)
    key = BatchKey(steps=4, guidance_scale=7.5)
    requests = [ImageRequest("a castle", "", 3), ImageRequest("a river", "blurry", 4)]
    traced_images = traced.generate(key, requests)
    eager_images = eager.generate(key, requests)
    # One UNet call per step, with the guidance batch (2 per image) going through it at once.
    assert traced.pipeline.unet.calls == 4
    for a, b in zip(traced_images, eager_images, strict=True):
        assert a.size == (64, 64)
        assert np.abs(np.asarray(a, dtype=np.int16) - np.asarray(b, dtype=np.int16)).max() <= 2


def test_server_runs_on_the_traced_artefacts(traced_model_dir: Path) -> None:
    with ready_client(ready_app(traced_model_dir)) as client:
        response = client.post("/v1/images/generations", json={"prompt": "traced", "seed": 1, "steps": 2})
        assert response.status_code == 200
        assert Image.open(io.BytesIO(response.content)).size == (64, 64)
        assert 'traced="true"' in client.get("/metrics").text


def test_neuron_backend_without_neuron_is_a_clear_error(tiny_model_dir: Path, traced_model_dir: Path) -> None:
    assert not neuron_available()
    with pytest.raises(ModelLoadError, match="needs sub-models compiled for Neuron"):
        load_generator(tiny_model_dir, "neuron")
    with pytest.raises(ModelLoadError, match="needs sub-models compiled for Neuron"):
        load_generator(traced_model_dir, "neuron")


def test_compile_cli_refuses_neuron_tracer_without_torch_neuronx(tiny_model_dir: Path, tmp_path: Path) -> None:
    result = CliRunner(mix_stderr=False).invoke(
        cli, ["compile", "--model-dir", str(tiny_model_dir), "--out", str(tmp_path / "o")]
    )
    assert result.exit_code == 3
    assert "torch-neuronx is not installed" in result.stderr
    assert "Traceback" not in result.stderr


def test_compile_cli_with_jit_tracer_packs_a_verifiable_tarball(tiny_model_dir: Path, tmp_path: Path) -> None:
    tarball = tmp_path / "sd21.tar.gz"
    result = CliRunner(mix_stderr=False).invoke(
        cli,
        [
            "compile",
            "--model-dir",
            str(tiny_model_dir),
            "--out",
            str(tmp_path / "compiled"),
            "--tracer",
            "jit",
            "--pack",
            str(tarball),
        ],
    )
    assert result.exit_code == 0, result.stderr
    digest = (tmp_path / "sd21.tar.gz.sha256").read_text().split()[0]
    assert f"sha256 {digest}" in result.stdout
    unpack(tarball, tmp_path / "unpacked", digest)
    generator = load_generator(tmp_path / "unpacked", "auto")
    assert generator.backend == "cpu" and generator.traced


def test_unpack_refuses_a_wrong_digest_and_escaping_paths(tiny_model_dir: Path, tmp_path: Path) -> None:
    tarball = tmp_path / "model.tar.gz"
    pack(tiny_model_dir, tarball)
    with pytest.raises(ValueError, match="does not match the expected"):
        unpack(tarball, tmp_path / "out", "0" * 64)
    evil = tmp_path / "evil.tar.gz"
    with tarfile.open(evil, "w:gz") as archive:
        info = tarfile.TarInfo("../escape.txt")
        info.size = 2
        archive.addfile(info, io.BytesIO(b"hi"))
    with pytest.raises(tarfile.OutsideDestinationError):
        unpack(evil, tmp_path / "out2")
    assert not (tmp_path / "escape.txt").exists()
