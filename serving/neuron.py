"""Traced sub-models: compiling with torch_neuronx.trace and loading them into a diffusers pipeline.

The Neuron path follows the AWS Neuron SD 2.1 sample: the CLIP text encoder, the UNet (bf16, spread over
NeuronCores with torch_neuronx.DataParallel), the VAE decoder and post_quant_conv are traced separately at
fixed shapes. The same code traces with torch.jit on any machine (tracer "jit"), which is how it is tested
without Neuron hardware; only the tracer and the DataParallel wrapper differ.
"""

from __future__ import annotations

import json
import shutil
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
from torch import nn

MANIFEST_FORMAT = 1
NEURON_DIR = "neuron"
TEXT_ENCODER_FILE = "text_encoder.pt"
UNET_FILE = "unet.pt"
VAE_DECODER_FILE = "vae_decoder.pt"
POST_QUANT_CONV_FILE = "vae_post_quant_conv.pt"

# Compiler flags from the Neuron SD 2.1 sample: the UNet in bf16 matmuls, the rest in fp32.
UNET_COMPILER_ARGS = ["--model-type=unet-inference", "--auto-cast=matmult", "--auto-cast-type=bf16"]
DEFAULT_COMPILER_ARGS: list[str] = []


class NeuronUnavailable(RuntimeError):
    """torch-neuronx is not installed or no NeuronCore is visible."""


def import_torch_neuronx() -> Any:
    try:
        import torch_neuronx
    except ImportError as error:
        raise NeuronUnavailable(
            "torch-neuronx is not installed: the Neuron backend and `compile --tracer neuron` run on inf2/trn1 "
            "instances with the Neuron SDK (pip install torch-neuronx --extra-index-url the Neuron repository)"
        ) from error
    return torch_neuronx


def neuron_available() -> bool:
    try:
        import_torch_neuronx()
    except NeuronUnavailable:
        return False
    return True


# --- wrappers with trace-friendly signatures -----------------------------------------------------


class TextEncoderForTrace(nn.Module):
    def __init__(self, text_encoder: nn.Module) -> None:
        super().__init__()
        self.text_encoder = text_encoder

    def forward(self, input_ids: torch.Tensor) -> torch.Tensor:
        return self.text_encoder(input_ids, return_dict=False)[0]


class UNetForTrace(nn.Module):
    def __init__(self, unet: nn.Module) -> None:
        super().__init__()
        self.unet = unet

    def forward(
        self, sample: torch.Tensor, timestep: torch.Tensor, encoder_hidden_states: torch.Tensor
    ) -> torch.Tensor:
        return self.unet(sample, timestep, encoder_hidden_states, return_dict=False)[0]


class SplitBatch(nn.Module):
    """Runs a module traced at batch size 1 over a larger batch, one row at a time.

    torch_neuronx.DataParallel does this across NeuronCores for the UNet; the other traced parts
    (and every part on CPU) use this.
    """

    def __init__(self, traced: Callable[..., torch.Tensor]) -> None:
        super().__init__()
        self.traced = traced

    def forward(self, *inputs: torch.Tensor) -> torch.Tensor:
        batch = inputs[0].shape[0]
        return torch.cat([self.traced(*(x[i : i + 1] for x in inputs)) for i in range(batch)], dim=0)


class TracedTextEncoder(nn.Module):
    """Stands in for CLIPTextModel inside the pipeline: same call, same outputs the pipeline reads."""

    def __init__(self, traced: nn.Module, config: Any) -> None:
        super().__init__()
        self.traced = SplitBatch(traced)
        self.config = config

    @property
    def dtype(self) -> torch.dtype:
        return torch.float32

    @property
    def device(self) -> torch.device:
        return torch.device("cpu")

    def forward(
        self, input_ids: torch.Tensor, attention_mask: torch.Tensor | None = None, **_: Any
    ) -> tuple[torch.Tensor]:
        return (self.traced(input_ids),)


class TracedUNet(nn.Module):
    """Stands in for UNet2DConditionModel inside the pipeline."""

    def __init__(self, runner: Callable[..., torch.Tensor], config: Any, dtype: torch.dtype) -> None:
        super().__init__()
        self.runner = runner
        self.config = config
        self._dtype = dtype
        # Reported so callers can see how many UNet evaluations ran (per-step timing, tests).
        self.calls = 0

    @property
    def dtype(self) -> torch.dtype:
        return self._dtype

    @property
    def device(self) -> torch.device:
        return torch.device("cpu")

    def forward(
        self, sample: torch.Tensor, timestep: torch.Tensor, encoder_hidden_states: torch.Tensor, **_: Any
    ) -> tuple[torch.Tensor]:
        self.calls += 1
        timesteps = timestep.float().expand(sample.shape[0]).contiguous()
        out = self.runner(sample.to(self._dtype), timesteps, encoder_hidden_states.to(self._dtype))
        return (out.float(),)


# --- compile ---------------------------------------------------------------------------------------


def _manifest_path(model_dir: Path) -> Path:
    return model_dir / NEURON_DIR / "manifest.json"


def read_manifest(model_dir: Path) -> dict[str, Any] | None:
    path = _manifest_path(model_dir)
    if not path.is_file():
        return None
    manifest: dict[str, Any] = json.loads(path.read_text(encoding="utf-8"))
    if manifest.get("format") != MANIFEST_FORMAT:
        raise ValueError(f"{path}: manifest format {manifest.get('format')!r}, expected {MANIFEST_FORMAT}")
    return manifest


def compile_pipeline(source_dir: Path, out_dir: Path, tracer: str, cores: int) -> dict[str, Any]:
    """Traces the four sub-models of the pipeline in source_dir and writes the artefact layout to out_dir.

    out_dir gets the diffusers pipeline (configs, tokenizer, scheduler, weights) and neuron/ with the
    traced modules and manifest.json, which is what the server loads.
    """
    from diffusers import StableDiffusionPipeline

    if tracer == "neuron":
        neuronx = import_torch_neuronx()

        def trace(module: nn.Module, inputs: tuple[torch.Tensor, ...], compiler_args: list[str]) -> Any:
            return neuronx.trace(module, inputs, compiler_args=compiler_args)

        unet_dtype = torch.bfloat16
    elif tracer == "jit":

        def trace(module: nn.Module, inputs: tuple[torch.Tensor, ...], compiler_args: list[str]) -> Any:
            return torch.jit.trace(module, inputs, check_trace=False)

        unet_dtype = torch.float32
    else:
        raise ValueError(f"unknown tracer {tracer!r}; expected neuron or jit")

    pipeline = StableDiffusionPipeline.from_pretrained(source_dir, local_files_only=True, safety_checker=None)
    if out_dir.resolve() != source_dir.resolve():
        if out_dir.exists():
            shutil.rmtree(out_dir)
        pipeline.save_pretrained(out_dir, safe_serialization=True)
    traced_dir = out_dir / NEURON_DIR
    traced_dir.mkdir(parents=True, exist_ok=True)

    text_len = pipeline.tokenizer.model_max_length
    hidden = pipeline.text_encoder.config.hidden_size
    latent_channels = pipeline.unet.config.in_channels
    latent_size = pipeline.unet.config.sample_size
    image_size = latent_size * pipeline.vae_scale_factor

    # Tracing fixes every shape by design, so the tracer's "might not generalize" warnings say nothing.
    with torch.no_grad(), warnings.catch_warnings():
        warnings.filterwarnings("ignore", category=torch.jit._trace.TracerWarning)
        input_ids = torch.ones((1, text_len), dtype=torch.int64)
        traced = trace(TextEncoderForTrace(pipeline.text_encoder.eval()), (input_ids,), DEFAULT_COMPILER_ARGS)
        torch.jit.save(traced, traced_dir / TEXT_ENCODER_FILE)

        unet = UNetForTrace(pipeline.unet.to(unet_dtype).eval())
        sample = torch.randn((1, latent_channels, latent_size, latent_size), dtype=unet_dtype)
        timestep = torch.tensor([999.0])
        states = torch.randn((1, text_len, hidden), dtype=unet_dtype)
        traced = trace(unet, (sample, timestep, states), UNET_COMPILER_ARGS)
        torch.jit.save(traced, traced_dir / UNET_FILE)

        latents = torch.randn((1, pipeline.vae.config.latent_channels, latent_size, latent_size))
        traced = trace(pipeline.vae.post_quant_conv.eval(), (latents,), DEFAULT_COMPILER_ARGS)
        torch.jit.save(traced, traced_dir / POST_QUANT_CONV_FILE)
        traced = trace(pipeline.vae.decoder.eval(), (latents,), DEFAULT_COMPILER_ARGS)
        torch.jit.save(traced, traced_dir / VAE_DECODER_FILE)

    manifest = {
        "format": MANIFEST_FORMAT,
        "tracer": tracer,
        "torch": torch.__version__,
        "image_size": [image_size, image_size],
        "latent_shape": [1, latent_channels, latent_size, latent_size],
        "text_max_length": text_len,
        "hidden_size": hidden,
        "unet_dtype": str(unet_dtype).removeprefix("torch."),
        "unet_cores": cores,
        "compiled_batch": 1,
    }
    _manifest_path(out_dir).write_text(json.dumps(manifest, indent=2) + "\n", encoding="utf-8")
    return manifest


# --- load ------------------------------------------------------------------------------------------


def attach_traced_modules(pipeline: Any, model_dir: Path, manifest: dict[str, Any], cores: int) -> None:
    """Replaces the pipeline's sub-models with the traced ones from model_dir/neuron."""
    traced_dir = model_dir / NEURON_DIR
    unet_dtype = getattr(torch, manifest["unet_dtype"])
    text_encoder = torch.jit.load(traced_dir / TEXT_ENCODER_FILE)
    unet = torch.jit.load(traced_dir / UNET_FILE)
    if manifest["tracer"] == "neuron":
        neuronx = import_torch_neuronx()
        # One copy of the UNet per NeuronCore; batches (2 per image with guidance) split across them.
        unet_runner: Callable[..., torch.Tensor] = neuronx.DataParallel(
            unet, list(range(cores)), set_dynamic_batching=True
        )
    else:
        unet_runner = SplitBatch(unet)
    pipeline.text_encoder = TracedTextEncoder(text_encoder, pipeline.text_encoder.config)
    pipeline.unet = TracedUNet(unet_runner, pipeline.unet.config, unet_dtype)
    pipeline.vae.post_quant_conv = SplitBatch(torch.jit.load(traced_dir / POST_QUANT_CONV_FILE))
    pipeline.vae.decoder = SplitBatch(torch.jit.load(traced_dir / VAE_DECODER_FILE))
