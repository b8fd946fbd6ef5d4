"""Loading the Stable Diffusion pipeline for a backend and generating batches of images."""

from __future__ import annotations

import dataclasses
import logging
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from .neuron import ArtefactMismatch, attach_traced_modules, neuron_available, read_manifest
from .settings import Settings

log = logging.getLogger(__name__)


class ModelLoadError(RuntimeError):
    """The model directory is missing, incomplete, or does not fit the backend."""


@dataclasses.dataclass(frozen=True)
class BatchKey:
    """Requests that share these can run in one pipeline call."""

    steps: int
    guidance_scale: float


@dataclasses.dataclass(frozen=True)
class ImageRequest:
    prompt: str
    negative_prompt: str
    seed: int


StepCallback = Callable[[float], None]


def padded_batch_sizes(max_batch_size: int) -> tuple[int, ...]:
    """The batch sizes a compiled pipeline runs: powers of two below the maximum, and the maximum.
    Few shapes, so few compiled graphs (and CUDA graphs), each reused; padding costs at most 2x."""
    sizes = {max_batch_size}
    size = 1
    while size < max_batch_size:
        sizes.add(size)
        size *= 2
    return tuple(sorted(sizes))


def padded(requests: Sequence[ImageRequest], sizes: Sequence[int]) -> list[ImageRequest]:
    """The requests, filled up to the smallest size that holds them with copies of the last one."""
    target = next((s for s in sizes if s >= len(requests)), len(requests))
    return [*requests, *[requests[-1]] * (target - len(requests))]


class ImageGenerator:
    """A loaded pipeline on one backend. `generate` is blocking and not re-entrant: one batch at a time.

    With `batch_sizes` (a compiled pipeline), every batch is padded to one of those sizes, and the
    padding's images are dropped."""

    def __init__(
        self, pipeline: Any, backend: str, traced: bool, batch_sizes: tuple[int, ...] = (), compiled: str = "off"
    ) -> None:
        self.pipeline = pipeline
        self.backend = backend
        self.traced = traced
        self.batch_sizes = batch_sizes
        self.compiled = compiled
        self.pipeline.set_progress_bar_config(disable=True)
        size = pipeline.unet.config.sample_size * pipeline.vae_scale_factor
        self.height = self.width = int(size)
        self.max_prompt_tokens = int(pipeline.tokenizer.model_max_length) - 2  # start and end tokens

    def prompt_tokens(self, prompt: str) -> int:
        return len(self.pipeline.tokenizer(prompt, add_special_tokens=False, verbose=False)["input_ids"])

    def generate(
        self, key: BatchKey, requests: Sequence[ImageRequest], on_step: StepCallback | None = None
    ) -> list[Any]:
        """PIL images, one per request, in order. Each request's seed alone decides its noise."""
        import torch

        asked = len(requests)
        if self.batch_sizes:
            requests = padded(requests, self.batch_sizes)
        generators = [torch.Generator(device="cpu").manual_seed(r.seed) for r in requests]
        negative = [r.negative_prompt for r in requests]
        last = [time.perf_counter()]

        def step_end(pipe: Any, step: int, timestep: Any, kwargs: dict[str, Any]) -> dict[str, Any]:
            now = time.perf_counter()
            if on_step is not None:
                on_step(now - last[0])
            last[0] = now
            return kwargs

        with torch.inference_mode():
            output = self.pipeline(
                prompt=[r.prompt for r in requests],
                negative_prompt=negative if any(negative) else None,
                num_inference_steps=key.steps,
                guidance_scale=key.guidance_scale,
                generator=generators,
                height=self.height,
                width=self.width,
                output_type="pil",
                callback_on_step_end=step_end,
            )
        return list(output.images)[:asked]

    def warm_up(self, steps: int, log_each: Callable[[int, float], None] | None = None) -> None:
        """One call per padded batch size (two when compiled: CUDA graphs are recorded on the second),
        so no request pays for a compile; without padding, one call at batch 1."""
        key = BatchKey(steps, 7.5)
        for size in self.batch_sizes or (1,):
            started = time.perf_counter()
            for _ in range(2 if self.compiled != "off" else 1):
                self.generate(key, [ImageRequest("warm-up", "", seed) for seed in range(size)])
            if log_each is not None:
                log_each(size, time.perf_counter() - started)


def compile_unet(pipeline: Any, mode: str) -> None:
    """torch.compile of the UNet (most of the time per step), channels_last for it and the VAE.
    Static shapes: one graph per padded batch size (and per guidance on/off, which doubles the UNet batch)."""
    import torch

    pipeline.unet.to(memory_format=torch.channels_last)
    pipeline.vae.to(memory_format=torch.channels_last)
    pipeline.unet = torch.compile(pipeline.unet, mode=mode, fullgraph=True, dynamic=False)


def load_configured(settings: Settings) -> ImageGenerator:
    """The generator the settings describe (the server's default loader)."""
    return load_generator(
        settings.model_dir, settings.backend, settings.neuron_cores, settings.compile, settings.max_batch_size
    )


def resolve_backend(requested: str, model_dir: Path) -> str:
    import torch

    manifest = read_manifest(model_dir)
    if requested != "auto":
        return requested
    if manifest is not None and manifest["tracer"] == "neuron" and neuron_available():
        return "neuron"
    if torch.cuda.is_available():
        return "cuda"
    return "cpu"


def load_generator(
    model_dir: Path, backend: str, neuron_cores: int = 2, compile_mode: str = "off", max_batch_size: int = 1
) -> ImageGenerator:
    """Loads the pipeline from model_dir for the backend ("auto" picks neuron, then cuda, then cpu).
    compile_mode (CUDA only) compiles the UNet; batches are then padded to padded_batch_sizes(max_batch_size)."""
    import torch
    from diffusers import StableDiffusionPipeline

    if not (model_dir / "model_index.json").is_file():
        raise ModelLoadError(f"{model_dir}: no model_index.json; expected a diffusers pipeline directory")
    try:
        manifest = read_manifest(model_dir)
    except ValueError as error:
        raise ModelLoadError(str(error)) from error
    chosen = resolve_backend(backend, model_dir)
    if chosen == "neuron" and (manifest is None or manifest["tracer"] != "neuron"):
        raise ModelLoadError(
            f"{model_dir}: backend neuron needs sub-models compiled for Neuron (run `serving compile`)"
        )
    if chosen == "cuda" and not torch.cuda.is_available():
        raise ModelLoadError("backend cuda requested but no CUDA device is visible")
    if compile_mode != "off" and chosen != "cuda":
        raise ModelLoadError(f"SD_COMPILE={compile_mode} is for the cuda backend; the backend is {chosen}")

    # On Neuron, what stays on the host (the pipeline's own copies of the parts the traced ones
    # replace, while loading) in bf16 as the sample loads it: half the memory of fp32 per replica.
    dtype = {"cuda": torch.float16, "neuron": torch.bfloat16}.get(chosen, torch.float32)
    try:
        pipeline = StableDiffusionPipeline.from_pretrained(
            model_dir, torch_dtype=dtype, local_files_only=True, safety_checker=None, requires_safety_checker=False
        )
    except (OSError, ValueError) as error:
        raise ModelLoadError(f"{model_dir}: cannot load the pipeline: {error}") from error
    from diffusers import DPMSolverMultistepScheduler

    pipeline.scheduler = DPMSolverMultistepScheduler.from_config(pipeline.scheduler.config)
    traced = False
    batch_sizes: tuple[int, ...] = ()
    if chosen == "cuda":
        pipeline = pipeline.to("cuda")
        if compile_mode != "off":
            compile_unet(pipeline, compile_mode)
            batch_sizes = padded_batch_sizes(max_batch_size)
    elif manifest is not None and (chosen == "neuron" or manifest["tracer"] == "jit"):
        # The Neuron code path; jit-traced artefacts run it on CPU.
        try:
            attach_traced_modules(pipeline, model_dir, manifest, neuron_cores)
        except ArtefactMismatch as error:
            raise ModelLoadError(f"{model_dir}: {error}") from error
        traced = True
    log.info("loaded %s on %s (traced sub-models: %s, compile: %s)", model_dir, chosen, traced, compile_mode)
    return ImageGenerator(pipeline, chosen, traced, batch_sizes, compile_mode)
