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
# How the UNet's attention is computed for the trace: sdpa (diffusers' default), bmm (the sample's
# attention scores, which the compiler fuses) or nki (the sample's NKI flash-attention kernel; it
# needs neuronx-cc, so it is compiled only where the Neuron SDK is installed).
ATTENTION_MODES = ("sdpa", "bmm", "nki")


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
    """Runs a module traced at batch size 1 over a larger batch, one row at a time, in its traced dtype.

    torch_neuronx.DataParallel does this across NeuronCores for the UNet; the other traced parts
    (and every part on CPU) use this."""

    def __init__(self, traced: Callable[..., torch.Tensor], dtype: torch.dtype = torch.float32) -> None:
        super().__init__()
        self.traced = traced
        self.traced_dtype = dtype

    def forward(self, *inputs: torch.Tensor) -> torch.Tensor:
        batch = inputs[0].shape[0]
        rows = [self.traced(*(x[i : i + 1].to(self._dtype_of(x)) for x in inputs)) for i in range(batch)]
        return torch.cat(rows, dim=0).float()

    def _dtype_of(self, tensor: torch.Tensor) -> torch.dtype:
        return self.traced_dtype if tensor.is_floating_point() else tensor.dtype


class TracedTextEncoder(nn.Module):
    """Stands in for CLIPTextModel inside the pipeline: same call, same outputs the pipeline reads.

    It reports and returns fp32 whatever it was traced in, so the latents and the scheduler's
    arithmetic stay fp32 (the sample lets them run in bf16; the cost is nil either way)."""

    def __init__(self, traced: nn.Module, config: Any) -> None:
        super().__init__()
        self.traced = SplitBatch(traced)  # token ids in, whatever float dtype it was traced in out
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
    """Stands in for UNet2DConditionModel inside the pipeline: inputs cast to the traced dtype (the
    timestep too, as the sample traces it), the noise prediction back in fp32."""

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
        timesteps = timestep.to(self._dtype).expand(sample.shape[0]).contiguous()
        out = self.runner(sample.to(self._dtype), timesteps, encoder_hidden_states.to(self._dtype))
        return (out.float(),)


# --- attention for the compiler ---------------------------------------------------------------------


def bmm_attention_scores(
    attn: Any, query: torch.Tensor, key: torch.Tensor, attention_mask: torch.Tensor | None = None
) -> torch.Tensor:
    """Attention probabilities as the sample computes them for neuronx-cc: a plain bmm scaled by the
    layer's scale and a softmax, with no baddbmm on an empty bias. For self-attention (query and key
    of one shape) the product is taken as key @ query^T, normalised over dim 1 and transposed back:
    the same numbers, in the layout the compiler fuses with NEURON_FUSE_SOFTMAX=1. The sample writes
    0.125 for the scale, SD 2.1's 1/sqrt(64); the layer's own scale is that there, and right for any
    head size."""
    dtype = query.dtype
    if attn.upcast_attention:
        query, key = query.float(), key.float()
    if query.shape == key.shape and attention_mask is None:
        scores = torch.bmm(key, query.transpose(-1, -2)) * attn.scale
        if attn.upcast_softmax:
            scores = scores.float()
        probabilities = scores.softmax(dim=1).permute(0, 2, 1)
    else:
        scores = torch.bmm(query, key.transpose(-1, -2)) * attn.scale
        if attention_mask is not None:
            scores = scores + attention_mask
        if attn.upcast_softmax:
            scores = scores.float()
        probabilities = scores.softmax(dim=-1)
    return probabilities.to(dtype)


class NkiAttnProcessor:
    """The sample's kernelized attention: self-attention through the NKI flash-attention kernel of
    neuronx-cc ("AttentionMMSoftmaxMMWithoutSwap"), everything else (cross-attention with the 77 text
    tokens, heads wider than 128) through scaled_dot_product_attention. Needs the Neuron SDK."""

    def __init__(self) -> None:
        try:
            try:
                from neuronxcc.nki._private_kernels.attention import attention_isa_kernel
            except ImportError:
                from neuronxcc.nki.kernels.attention import attention_isa_kernel
            from torch_neuronx.xla_impl.ops import nki_jit
        except ImportError as error:
            raise NeuronUnavailable(
                "--attention nki needs the Neuron compiler's NKI kernels (neuronx-cc, the Neuron SDK); "
                "compile with --attention bmm where it is not installed"
            ) from error
        self.kernel = nki_jit()(attention_isa_kernel)

    def _flash(self, query: torch.Tensor, key: torch.Tensor, value: torch.Tensor) -> torch.Tensor:
        batch, heads, q_len, head_dim = query.shape
        k_len = key.shape[2]
        # The kernel's layouts: q and k as (batch*heads, head_dim, length), v as (batch*heads, length, head_dim).
        q = query.permute(0, 1, 3, 2).reshape(batch * heads, head_dim, q_len)
        k = key.permute(0, 1, 3, 2).reshape(batch * heads, head_dim, k_len)
        v = value.reshape(batch * heads, value.shape[2], head_dim)
        out = torch.zeros((batch * heads, q_len, head_dim), dtype=torch.bfloat16, device=q.device)
        self.kernel(q, k, v, 1.0 / head_dim**0.5, out, kernel_name="AttentionMMSoftmaxMMWithoutSwap")
        return out.reshape(batch, heads, q_len, head_dim)

    def __call__(
        self,
        attn: Any,
        hidden_states: torch.Tensor,
        encoder_hidden_states: torch.Tensor | None = None,
        attention_mask: torch.Tensor | None = None,
        temb: torch.Tensor | None = None,
        *args: Any,
        **kwargs: Any,
    ) -> torch.Tensor:
        import torch.nn.functional as functional

        residual = hidden_states
        if attn.spatial_norm is not None:
            hidden_states = attn.spatial_norm(hidden_states, temb)
        spatial = hidden_states.ndim == 4
        if spatial:
            batch, channels, height, width = hidden_states.shape
            hidden_states = hidden_states.view(batch, channels, height * width).transpose(1, 2)
        batch = hidden_states.shape[0]
        if attn.group_norm is not None:
            hidden_states = attn.group_norm(hidden_states.transpose(1, 2)).transpose(1, 2)
        context = hidden_states if encoder_hidden_states is None else encoder_hidden_states
        if encoder_hidden_states is not None and attn.norm_cross:
            context = attn.norm_encoder_hidden_states(context)
        query, key, value = attn.to_q(hidden_states), attn.to_k(context), attn.to_v(context)
        head_dim = key.shape[-1] // attn.heads
        query, key, value = (t.view(batch, -1, attn.heads, head_dim).transpose(1, 2) for t in (query, key, value))
        if attention_mask is None and encoder_hidden_states is None and head_dim <= 128 and head_dim <= query.shape[2]:
            hidden_states = self._flash(query, key, value)
        else:
            mask = (
                attn.prepare_attention_mask(attention_mask, context.shape[1], batch)
                if attention_mask is not None
                else None
            )
            if mask is not None:
                mask = mask.view(batch, attn.heads, -1, mask.shape[-1])
            hidden_states = functional.scaled_dot_product_attention(query, key, value, attn_mask=mask)
        hidden_states = hidden_states.transpose(1, 2).reshape(batch, -1, attn.heads * head_dim).to(query.dtype)
        hidden_states = attn.to_out[1](attn.to_out[0](hidden_states))
        if spatial:
            hidden_states = hidden_states.transpose(-1, -2).reshape(batch, channels, height, width)
        if attn.residual_connection:
            hidden_states = hidden_states + residual
        return hidden_states / attn.rescale_output_factor


def set_unet_attention(unet: Any, mode: str) -> None:
    """Sets how the UNet's attention layers compute, before the UNet is traced."""
    if mode not in ATTENTION_MODES:
        raise ValueError(f"attention {mode!r}: expected one of {', '.join(ATTENTION_MODES)}")
    if mode == "sdpa":
        return
    if mode == "nki":
        unet.set_attn_processor(NkiAttnProcessor())
        return
    from types import MethodType

    from diffusers.models.attention_processor import Attention, AttnProcessor

    # diffusers' plain processor asks the layer for its scores: those of each layer of this UNet
    # (not of the class, as the sample patches it) become the bmm form.
    unet.set_attn_processor(AttnProcessor())
    for module in unet.modules():
        if isinstance(module, Attention):
            module.get_attention_scores = MethodType(bmm_attention_scores, module)  # type: ignore[method-assign]


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

    neuronx = None
    if tracer == "neuron":
        if target is None:
            raise ValueError("the neuron tracer needs a target (--target inf2, trn1, trn1n or trn2)")
        neuronx = import_torch_neuronx()
        low_precision = torch.bfloat16
    elif tracer == "jit":
        if target is not None:
            raise ValueError("--target is for the neuron tracer; the jit tracer runs on CPU")
        low_precision = torch.float32
    else:
        raise ValueError(f"unknown tracer {tracer!r}; expected neuron or jit")
    attention = attention or ("bmm" if tracer == "neuron" else "sdpa")

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
    set_unet_attention(pipeline.unet, attention)
    latents = torch.randn((1, pipeline.vae.config.latent_channels, latent_size, latent_size))
    parts = [
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

    manifest = {
        "format": MANIFEST_FORMAT,
        "tracer": tracer,
        "torch": torch.__version__,
        "torch_neuronx": getattr(neuronx, "__version__", None),
        "target": target.family if target else None,
        "logical_nc_config": target.logical_nc_config if target else None,
        "image_size": [image_size, image_size],
        "latent_shape": [1, latent_channels, latent_size, latent_size],
        "text_max_length": text_len,
        "hidden_size": hidden,
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
