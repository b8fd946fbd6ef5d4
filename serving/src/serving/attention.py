"""How the UNet's attention is computed for the trace: sdpa (diffusers' default), bmm (AWS's SD 2.1
sample's attention scores, which neuronx-cc fuses with NEURON_FUSE_SOFTMAX=1) or nki (the sample's
NKI flash-attention kernel; it needs neuronx-cc, so it is compiled only where the Neuron SDK is)."""

from __future__ import annotations

from typing import Any

import torch

ATTENTION_MODES = ("sdpa", "bmm", "nki")


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
            from .neuron import NeuronUnavailable

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
