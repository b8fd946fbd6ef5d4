"""The sub-models as they are traced (wrappers with trace-friendly signatures) and as the pipeline
calls them once traced (stand-ins for CLIPTextModel and UNet2DConditionModel, batches split into the
traced batch size)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch
from torch import nn


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
