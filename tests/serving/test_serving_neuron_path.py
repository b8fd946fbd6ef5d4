"""The Neuron code path (traced sub-models, artefact layout, loader) run on CPU with the torch.jit tracer."""

from __future__ import annotations

import io
import json
import tarfile
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner
from PIL import Image

import tests.support.serving  # noqa: F401
from serving.artefacts import UnsafeArchive, pack, unpack
from serving.cli import cli
from serving.neuron import NEURON_DIR, TracedTextEncoder, TracedUNet, neuron_available
from serving.pipeline import BatchKey, ImageRequest, ModelLoadError, load_generator
from tests.support.serving import ready_app, ready_client


def test_compile_writes_the_artefact_layout(traced_model_dir: Path) -> None:
    manifest = json.loads((traced_model_dir / NEURON_DIR / "manifest.json").read_text())
    assert manifest["tracer"] == "jit" and manifest["format"] == 2
    assert manifest["target"] is None and manifest["compiler_args"] == {} and manifest["attention"] == "sdpa"
    assert set(manifest["dtypes"].values()) == {"float32"}  # the jit tracer runs on CPU, in fp32
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


def test_the_bmm_attention_the_compiler_fuses_computes_what_diffusers_does(tiny_model_dir: Path) -> None:
    """The sample's attention scores (bmm, softmax over the transposed product for self-attention)
    are a layout change for the compiler, not a different model: the UNet's output is the same."""
    import torch
    from diffusers import UNet2DConditionModel

    from serving.neuron import set_unet_attention

    unet = UNet2DConditionModel.from_pretrained(tiny_model_dir / "unet").eval()
    torch.manual_seed(0)
    sample, states = torch.randn(2, 4, 32, 32), torch.randn(2, 77, 32)
    timestep = torch.tensor([500.0, 20.0])
    with torch.no_grad():
        expected = unet(sample, timestep, states).sample
        set_unet_attention(unet, "bmm")
        got = unet(sample, timestep, states).sample
    assert not torch.equal(got, expected)  # another code path ran
    assert torch.allclose(got, expected, atol=1e-5, rtol=1e-4), (got - expected).abs().max()


def test_a_jit_compile_with_the_neuron_attention_matches_eager(tiny_model_dir: Path, tmp_path: Path) -> None:
    from serving.neuron import compile_pipeline

    manifest = compile_pipeline(tiny_model_dir, tmp_path / "bmm", "jit", cores=2, attention="bmm")
    assert manifest["attention"] == "bmm"
    traced = load_generator(tmp_path / "bmm", "cpu")
    eager = load_generator(tiny_model_dir, "cpu")
    key, requests = BatchKey(steps=3, guidance_scale=7.5), [ImageRequest("a bridge", "", 5)]
    [a], [b] = traced.generate(key, requests), eager.generate(key, requests)
    assert np.abs(np.asarray(a, dtype=np.int16) - np.asarray(b, dtype=np.int16)).max() <= 2


def test_an_older_manifest_is_a_load_error_that_says_recompile(traced_model_dir: Path, tmp_path: Path) -> None:
    import shutil

    old = tmp_path / "old"
    shutil.copytree(traced_model_dir, old)
    manifest_file = old / NEURON_DIR / "manifest.json"
    manifest_file.write_text(json.dumps({**json.loads(manifest_file.read_text()), "format": 1}))
    with pytest.raises(ModelLoadError, match="manifest format 1, this server reads 2; compile the model again"):
        load_generator(old, "cpu")


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
    with pytest.raises(UnsafeArchive, match="outside"):
        unpack(evil, tmp_path / "out2")
    assert not (tmp_path / "escape.txt").exists()


@pytest.mark.parametrize("python", ["with tarfile's data filter", "without it (Python before 3.11.4)"])
def test_extraction_refuses_what_the_data_filter_refuses(
    tmp_path: Path, python: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    if python.startswith("without"):
        monkeypatch.delattr(tarfile, "data_filter")
    for name, kind, message in (
        ("../up.txt", tarfile.REGTYPE, "outside"),
        ("link", tarfile.SYMTYPE, "link|plain file"),
    ):
        evil = tmp_path / f"{kind!r}.tar.gz"
        with tarfile.open(evil, "w:gz") as archive:
            info = tarfile.TarInfo(name)
            info.type = kind
            info.linkname = "/etc/passwd" if kind == tarfile.SYMTYPE else ""
            info.size = 0 if kind == tarfile.SYMTYPE else 2
            archive.addfile(info, io.BytesIO(b"hi") if kind == tarfile.REGTYPE else None)
        with pytest.raises(UnsafeArchive, match=message):
            unpack(evil, tmp_path / "out")
    assert not (tmp_path / "up.txt").exists() and not (tmp_path / "out" / "link").exists()
    good = tmp_path / "good.tar.gz"
    with tarfile.open(good, "w:gz") as archive:
        info = tarfile.TarInfo("sub/file.txt")
        info.size = 2
        archive.addfile(info, io.BytesIO(b"ok"))
    unpack(good, tmp_path / "good")
    assert (tmp_path / "good" / "sub" / "file.txt").read_text() == "ok"
