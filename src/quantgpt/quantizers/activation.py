"""8-bit activation quantizers, symmetric and asymmetric, per tensor (docs/method.md#activation-quantizers)."""

from __future__ import annotations

import torch
from torch import nn

from .base import straight_through, round_to_grid


class ActivationQuantizer(nn.Module):
    """Uniform per-tensor fake quantization with the range taken from the current batch (min-max).

    Symmetric (linear-layer inputs, queries, keys, values): alpha = max|x|, x_q = alpha * Q(x / alpha).
    Asymmetric (softmax outputs, GeLU outputs, mostly positive): 2^b levels from min(x) to max(x).
    The gradient passes straight through: the range covers the whole batch, so nothing is clipped.
    """

    def __init__(self, bits: int, symmetric: bool) -> None:
        super().__init__()
        self.bits = bits
        self.symmetric = symmetric

    def fake_quantize(self, x: torch.Tensor) -> torch.Tensor:
        x = x.detach()
        if self.symmetric:
            alpha = x.abs().max().clamp_min(1e-12)
            return alpha * round_to_grid(x / alpha, self.bits)
        low, high = x.min(), x.max()
        step = ((high - low) / (2**self.bits - 1)).clamp_min(1e-12)
        return torch.round((x - low) / step) * step + low

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return straight_through(x, self.fake_quantize(x))

    def extra_repr(self) -> str:
        return f"bits={self.bits}, symmetric={self.symmetric}"
