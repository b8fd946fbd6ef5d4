"""Traced sub-models: compiling with torch_neuronx.trace and loading them into a diffusers pipeline.

The Neuron path follows AWS's Stable Diffusion 2.1 (512) sample (aws-neuron/aws-neuron-samples,
torch-neuronx/inference/hf_pretrained_sd2_512_inference.ipynb at release 2.27, and
sd2_512_compile.py / sd2_512_benchmark.py in aws-neuron/aws-neuron-sdk's archive/src/benchmark/pytorch):
the CLIP text encoder and the UNet traced in bf16, the VAE decoder and post_quant_conv in fp32, each
at batch 1; the UNet and VAE decoder compiled with --model-type=unet-inference; every part but
post_quant_conv with --enable-fast-loading-neuron-binaries; the UNet's attention computed as plain
bmm + softmax for the compiler (NEURON_FUSE_SOFTMAX=1) or by the sample's NKI kernel; async load for
every part and lazy load for the UNet, which torch_neuronx.DataParallel then puts on each core.

Two things differ from the sample, on purpose: tracing always runs on CPU (cpu_backend=True, with
--target; and --logical-nc-config on trn2), so the compile needs no NeuronCore and runs on any x86
node with the memory; and DataParallel keeps dynamic batching on, because the server batches a
varying number of requests (the sample runs one image at a time with it off).

The same code traces with torch.jit on any machine (tracer "jit", fp32 throughout), which is how the
layout and the loader are tested without Neuron hardware; the Neuron tracer is tested against a
stand-in torch_neuronx (tests/standins) that keeps the real library's contract.
"""

from __future__ import annotations

import dataclasses
import json
import os
import shutil
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
from torch import nn

from .attention import set_unet_attention
from .traced import SplitBatch, TextEncoderForTrace, TracedTextEncoder, TracedUNet, UNetForTrace

MANIFEST_FORMAT = 2
NEURON_DIR = "neuron"
TEXT_ENCODER_FILE = "text_encoder.pt"
UNET_FILE = "unet.pt"
VAE_DECODER_FILE = "vae_decoder.pt"
POST_QUANT_CONV_FILE = "vae_post_quant_conv.pt"

# neuronx-cc --target values (the compiler CLI reference) and the instance families they serve.
TARGETS = ("inf2", "trn1", "trn1n", "trn2")
# Compiler flags per part, as AWS's SD 2.1 512 sample passes them (see the module docstring).
FAST_LOADING = "--enable-fast-loading-neuron-binaries"
UNET_INFERENCE = "--model-type=unet-inference"
PART_COMPILER_ARGS = {
    "text_encoder": [FAST_LOADING],
    "unet": [UNET_INFERENCE, FAST_LOADING],
    "vae_decoder": [UNET_INFERENCE, FAST_LOADING],
    "post_quant_conv": [],
}


class NeuronUnavailable(RuntimeError):
    """torch-neuronx (or the Neuron compiler) is not installed."""


class ArtefactMismatch(ValueError):
    """The compiled artefacts do not fit this runtime (format, target, logical NeuronCore config)."""


def import_torch_neuronx() -> Any:
    try:
        import torch_neuronx
    except ImportError as error:
        raise NeuronUnavailable(
            "torch-neuronx is not installed: the Neuron backend and `compile --tracer neuron` need the Neuron "
            "SDK 2.31 (the server's neuron image, or pip install torch-neuronx from the Neuron repository)"
        ) from error
    return torch_neuronx


def neuron_available() -> bool:
    try:
        import_torch_neuronx()
    except NeuronUnavailable:
        return False
    return True


@dataclasses.dataclass(frozen=True)
class CompileTarget:
    """What the compiled model runs on: the instance family and, on trn2, the logical NeuronCore config."""

    family: str
    logical_nc_config: int | None = None

    def __post_init__(self) -> None:
        if self.family not in TARGETS:
            raise ValueError(f"target {self.family!r}: expected one of {', '.join(TARGETS)}")
        if self.family == "trn2" and self.logical_nc_config not in (1, 2):
            raise ValueError("target trn2 needs a logical NeuronCore config of 1 or 2")
        if self.family != "trn2" and self.logical_nc_config is not None:
            raise ValueError(f"--logical-nc-config is for trn2 (NeuronCore-v3) only, not {self.family}")

    @classmethod
    def of(cls, family: str, logical_nc_config: int | None = None) -> CompileTarget:
        """trn2 without a config gets the compiler's and the runtime's default, 2."""
        return cls(family, logical_nc_config or 2 if family == "trn2" else logical_nc_config)

    def compiler_args(self) -> list[str]:
        args = ["--target", self.family]
        if self.logical_nc_config is not None:
            args += ["--logical-nc-config", str(self.logical_nc_config)]
        return args


# --- compile ---------------------------------------------------------------------------------------


def _manifest_path(model_dir: Path) -> Path:
    return model_dir / NEURON_DIR / "manifest.json"


def read_manifest(model_dir: Path) -> dict[str, Any] | None:
    path = _manifest_path(model_dir)
    if not path.is_file():
        return None
    manifest: dict[str, Any] = json.loads(path.read_text(encoding="utf-8"))
    if manifest.get("format") != MANIFEST_FORMAT:
        raise ArtefactMismatch(
            f"{path}: manifest format {manifest.get('format')!r}, this server reads {MANIFEST_FORMAT}; "
            "compile the model again with this version (eks-neuron-serve compile)"
        )
    return manifest


@dataclasses.dataclass(frozen=True)
class _Part:
    name: str
    file: str
    module: nn.Module
    inputs: tuple[torch.Tensor, ...]
    dtype: torch.dtype


def _parts(pipeline: Any, low_precision: torch.dtype) -> list[_Part]:
    """The four sub-models, wrapped for tracing, with example inputs of the shapes they run at (batch 1)."""
    text_len = pipeline.tokenizer.model_max_length
    hidden = pipeline.text_encoder.config.hidden_size
    latent_channels, latent_size = pipeline.unet.config.in_channels, pipeline.unet.config.sample_size
    latents = torch.randn((1, pipeline.vae.config.latent_channels, latent_size, latent_size))
    return [
        _Part(
            "text_encoder",
            TEXT_ENCODER_FILE,
            TextEncoderForTrace(pipeline.text_encoder.to(low_precision).eval()),
            # Token ids inside the vocabulary (the sample warns that random ones may index out of range).
            (torch.ones((1, text_len), dtype=torch.int64),),
            low_precision,
        ),
        _Part(
            "unet",
            UNET_FILE,
            UNetForTrace(pipeline.unet.to(low_precision).eval()),
            (
                torch.randn((1, latent_channels, latent_size, latent_size), dtype=low_precision),
                torch.tensor([999.0], dtype=low_precision),
                torch.randn((1, text_len, hidden), dtype=low_precision),
            ),
            low_precision,
        ),
        _Part("vae_decoder", VAE_DECODER_FILE, pipeline.vae.decoder.eval(), (latents,), torch.float32),
        _Part("post_quant_conv", POST_QUANT_CONV_FILE, pipeline.vae.post_quant_conv.eval(), (latents,), torch.float32),
    ]


def _trace_parts(
    parts: list[_Part], traced_dir: Path, neuronx: Any, target: CompileTarget | None
) -> dict[str, list[str]]:
    """Traces and saves each part (torch_neuronx on CPU for a target, else torch.jit); the compiler
    arguments given per part."""
    compiler_args: dict[str, list[str]] = {}
    # Tracing fixes every shape by design, so the tracer's "might not generalize" warnings say nothing.
    with torch.no_grad(), warnings.catch_warnings():
        warnings.filterwarnings("ignore", category=torch.jit._trace.TracerWarning)
        for part in parts:
            if neuronx is not None and target is not None:
                compiler_args[part.name] = [*PART_COMPILER_ARGS[part.name], *target.compiler_args()]
                traced = neuronx.trace(
                    part.module, part.inputs, compiler_args=compiler_args[part.name], cpu_backend=True
                )
                # Loading overlaps (async) and the UNet waits for DataParallel to place it (lazy).
                neuronx.async_load(traced)
                if part.name == "unet":
                    neuronx.lazy_load(traced)
            else:
                traced = torch.jit.trace(part.module, part.inputs, check_trace=False)
            torch.jit.save(traced, traced_dir / part.file)
    return compiler_args


def _tracer(tracer: str, target: CompileTarget | None) -> tuple[Any, torch.dtype]:
    """torch_neuronx (None for the jit tracer) and the dtype the traced parts run in."""
    if tracer == "neuron":
        if target is None:
            raise ValueError("the neuron tracer needs a target (--target inf2, trn1, trn1n or trn2)")
        return import_torch_neuronx(), torch.bfloat16
    if tracer == "jit":
        if target is not None:
            raise ValueError("--target is for the neuron tracer; the jit tracer runs on CPU")
        return None, torch.float32
    raise ValueError(f"unknown tracer {tracer!r}; expected neuron or jit")


def compile_pipeline(
    source_dir: Path,
    out_dir: Path,
    tracer: str,
    cores: int,
    target: CompileTarget | None = None,
    attention: str | None = None,
) -> dict[str, Any]:
    """Traces the four sub-models of the pipeline in source_dir and writes the artefact layout to out_dir.

    out_dir gets the diffusers pipeline (configs, tokenizer, scheduler, weights) and neuron/ with the
    traced modules and manifest.json, which is what the server loads. The Neuron tracer needs the
    target (the instance family the model will run on)."""
    from diffusers import StableDiffusionPipeline

    neuronx, low_precision = _tracer(tracer, target)
    attention = attention or ("bmm" if tracer == "neuron" else "sdpa")

    pipeline = StableDiffusionPipeline.from_pretrained(source_dir, local_files_only=True, safety_checker=None)
    if out_dir.resolve() != source_dir.resolve():
        if out_dir.exists():
            shutil.rmtree(out_dir)
        pipeline.save_pretrained(out_dir, safe_serialization=True)
    traced_dir = out_dir / NEURON_DIR
    traced_dir.mkdir(parents=True, exist_ok=True)
    set_unet_attention(pipeline.unet, attention)
    parts = _parts(pipeline, low_precision)
    compiler_args = _trace_parts(parts, traced_dir, neuronx, target)
    latent_size = pipeline.unet.config.sample_size
    image_size = latent_size * pipeline.vae_scale_factor
    manifest = {
        "format": MANIFEST_FORMAT,
        "tracer": tracer,
        "torch": torch.__version__,
        "torch_neuronx": getattr(neuronx, "__version__", None),
        "target": target.family if target else None,
        "logical_nc_config": target.logical_nc_config if target else None,
        "image_size": [image_size, image_size],
        "latent_shape": [1, pipeline.unet.config.in_channels, latent_size, latent_size],
        "text_max_length": pipeline.tokenizer.model_max_length,
        "hidden_size": pipeline.text_encoder.config.hidden_size,
        "dtypes": {part.name: str(part.dtype).removeprefix("torch.") for part in parts},
        "attention": attention,
        "compiler_args": compiler_args,
        "load": {"async": list(compiler_args), "lazy": ["unet"] if compiler_args else []},
        "unet_cores": cores,
        "compiled_batch": 1,
    }
    _manifest_path(out_dir).write_text(json.dumps(manifest, indent=2) + "\n", encoding="utf-8")
    return manifest


# --- load ------------------------------------------------------------------------------------------


def check_runtime_fits(manifest: dict[str, Any]) -> None:
    """A model compiled for trn2 runs only where the runtime joins physical cores as it was compiled
    (NEURON_LOGICAL_NC_CONFIG, default 2): refused before the runtime refuses it less plainly."""
    if manifest["target"] != "trn2":
        return
    runtime = int(os.environ.get("NEURON_LOGICAL_NC_CONFIG", "2"))
    if runtime != manifest["logical_nc_config"]:
        raise ArtefactMismatch(
            f"the model was compiled with --logical-nc-config {manifest['logical_nc_config']} but this runtime has "
            f"NEURON_LOGICAL_NC_CONFIG={runtime}; compile it with the config the nodes run "
            "(global.neuron.logicalNeuronCoreConfig)"
        )


def attach_traced_modules(pipeline: Any, model_dir: Path, manifest: dict[str, Any], cores: int) -> None:
    """Replaces the pipeline's sub-models with the traced ones from model_dir/neuron."""
    traced_dir = model_dir / NEURON_DIR
    dtypes = {name: getattr(torch, dtype) for name, dtype in manifest["dtypes"].items()}
    if manifest["tracer"] == "neuron":
        # Before any torch.jit.load: a Neuron artefact calls operators (neuron::forward_v2 on a
        # torch.classes.neuron.Model) that exist only once torch_neuronx is imported.
        neuronx = import_torch_neuronx()
        check_runtime_fits(manifest)
        # The UNet first: lazy-loaded, DataParallel places one copy per NeuronCore; batches (two
        # rows per image with guidance) are split across them. The other parts load asynchronously
        # meanwhile; the warm-up waits for them.
        unet_runner: Callable[..., torch.Tensor] = neuronx.DataParallel(
            torch.jit.load(traced_dir / UNET_FILE), list(range(cores)), set_dynamic_batching=True
        )
    else:
        unet_runner = SplitBatch(torch.jit.load(traced_dir / UNET_FILE), dtypes["unet"])
    pipeline.unet = TracedUNet(unet_runner, pipeline.unet.config, dtypes["unet"])
    pipeline.text_encoder = TracedTextEncoder(
        torch.jit.load(traced_dir / TEXT_ENCODER_FILE), pipeline.text_encoder.config
    )
    pipeline.vae.decoder = SplitBatch(torch.jit.load(traced_dir / VAE_DECODER_FILE), dtypes["vae_decoder"])
    pipeline.vae.post_quant_conv = SplitBatch(
        torch.jit.load(traced_dir / POST_QUANT_CONV_FILE), dtypes["post_quant_conv"]
    )
