"""Quantized attention, registered with Transformers' attention-function registry.

Queries, keys and values are quantized symmetrically and the attention probabilities
asymmetrically (docs/method.md#activation-quantizers). The quantizers live on each attention module
(`module.attention_quantizers`), placed there by `quantize_model`; the function itself is the
eager attention computation with those four quantization points.
"""

from __future__ import annotations

import torch
from torch import nn
from transformers import AttentionInterface
from transformers.masking_utils import AttentionMaskInterface, eager_mask

from .quantizers import ActivationQuantizer

ATTENTION_IMPLEMENTATION = "quantgpt"


class AttentionQuantizers(nn.Module):
    """The quantization points of one attention module; `value` is None when values stay unquantized."""

    def __init__(self, bits: int, quantize_values: bool = True) -> None:
        super().__init__()
        self.query = ActivationQuantizer(bits, symmetric=True)
        self.key = ActivationQuantizer(bits, symmetric=True)
        self.value = ActivationQuantizer(bits, symmetric=True) if quantize_values else None
        self.probs = ActivationQuantizer(bits, symmetric=False)


def _repeat_kv(states: torch.Tensor, groups: int) -> torch.Tensor:
    """Grouped-query attention: repeat key/value heads to match the query heads."""
    return states if groups == 1 else states.repeat_interleave(groups, dim=1)


def quantized_attention_forward(
    module: nn.Module,
    query: torch.Tensor,
    key: torch.Tensor,
    value: torch.Tensor,
    attention_mask: torch.Tensor | None,
    scaling: float | None = None,
    dropout: float = 0.0,
    **kwargs,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Eager attention with 8-bit queries, keys, values and probabilities (shapes as Transformers' eager)."""
    quantizers: AttentionQuantizers | None = getattr(module, "attention_quantizers", None)
    if quantizers is not None:
        query, key = quantizers.query(query), quantizers.key(key)
        if quantizers.value is not None:
            value = quantizers.value(value)
    groups = query.shape[1] // key.shape[1]
    key, value = _repeat_kv(key, groups), _repeat_kv(value, groups)
    if scaling is None:
        scaling = query.size(-1) ** -0.5
    scores = torch.matmul(query, key.transpose(-1, -2)) * scaling
    if attention_mask is not None:
        scores = scores + attention_mask[:, :, :, : key.shape[-2]]
    probs = nn.functional.softmax(scores, dim=-1, dtype=torch.float32).to(query.dtype)
    if quantizers is not None:
        probs = quantizers.probs(probs)
    probs = nn.functional.dropout(probs, p=dropout, training=module.training)
    output = torch.matmul(probs, value).transpose(1, 2).contiguous()
    return output, probs


def register_attention() -> None:
    """Make `attn_implementation="quantgpt"` known to Transformers (idempotent)."""
    AttentionInterface.register(ATTENTION_IMPLEMENTATION, quantized_attention_forward)
    AttentionMaskInterface.register(ATTENTION_IMPLEMENTATION, eager_mask)
