"""QuantGPT's module-wise dynamic scaling quantizer (docs/method.md#module-wise-dynamic-scaling, Eq. 1, 6 and 7)."""

from __future__ import annotations

import torch
from torch import nn

from .base import WeightQuantizer, grid_levels, round_to_grid, row_mean_abs, symmetric

_MIN_ALPHA = 1e-12
# How gamma's gradient is estimated: Eq. 7 ("paper"), or PACT's rule, in which only the clipped
# weights count (the paper's Table 7 ablation "Ours with PACT").
GAMMA_GRADIENTS = ("paper", "pact")


class _DynamicScalingFunction(torch.autograd.Function):
    """w_q = alpha * Q(clip(w, -alpha, alpha) / alpha), alpha = gamma * ||w||_1 / n.

    Backward: straight-through for w (Eq. 1's STE, optionally masked outside the clip range) and
    Eq. 7 for gamma, in which weights inside the clip range contribute (Q(u) - u) and weights
    outside contribute sign(w), both times ||w||_1 / n. With `pact_gradient`, the weights inside
    contribute nothing (PACT's estimate, the ablation).
    """

    @staticmethod
    def forward(ctx, w, gamma, bits: int, per_row: bool, masked_ste: bool, pact_gradient: bool = False):
        mean_abs = row_mean_abs(w.detach(), per_row)  # ||w||_1 / n is a constant for the w-gradient (choice)
        alpha = (gamma * mean_abs).clamp_min(_MIN_ALPHA)
        u = w / alpha
        q = round_to_grid(u.clamp(-1.0, 1.0), bits)
        ctx.save_for_backward(w, u, q, mean_abs, alpha)
        ctx.per_row = per_row
        ctx.masked_ste = masked_ste
        ctx.pact_gradient = pact_gradient
        return alpha * q

    @staticmethod
    def backward(ctx, grad_out):
        w, u, q, mean_abs, alpha = ctx.saved_tensors
        inside = w.abs() < alpha
        grad_w = grad_out * inside if ctx.masked_ste else grad_out
        inside_term = torch.zeros_like(u) if ctx.pact_gradient else q - u
        d_wq_d_gamma = mean_abs * torch.where(inside, inside_term, torch.sign(w))  # Eq. 7
        per_entry = grad_out * d_wq_d_gamma
        if ctx.per_row:
            grad_gamma = per_entry.sum(dim=tuple(range(1, w.dim())), keepdim=True)
        else:
            grad_gamma = per_entry.sum()
        return grad_w, grad_gamma, None, None, None, None


class DynamicScalingQuantizer(WeightQuantizer):
    """QuantGPT's weight quantizer: learns gamma (initialized to 1) with alpha = gamma * mean|w| (Eq. 6).

    One gamma per module, or one per row (`per_row=True`, the word embedding). The gradient of gamma
    is Eq. 7 exactly (`gamma_gradient="pact"`: PACT's estimate instead, an ablation); the weight
    gets the straight-through estimator.
    """

    display_name = "QuantGPT"
    contrastive_by_default = True

    def __init__(
        self, bits: int, per_row: bool = False, rows: int | None = None, masked_ste: bool = False, gamma_gradient: str = "paper"
    ) -> None:
        super().__init__(bits, per_row, rows)
        if gamma_gradient not in GAMMA_GRADIENTS:
            raise ValueError(f"gamma_gradient={gamma_gradient!r}: allowed are {', '.join(GAMMA_GRADIENTS)}")
        self.masked_ste = masked_ste
        self.gamma_gradient = gamma_gradient
        self.gamma = nn.Parameter(torch.ones(self.parameter_shape()))

    @classmethod
    def from_config(cls, bits, config, rows=None, transposed=False):
        return cls(bits, per_row=rows is not None, rows=rows, masked_ste=config.masked_ste, gamma_gradient=config.gamma_gradient)

    def clipping_range(self, w: torch.Tensor):
        return symmetric(self.clip_factor(w))

    def clip_factor(self, w: torch.Tensor) -> torch.Tensor:
        """alpha = gamma * ||w||_1 / n (Eq. 6)."""
        return (self.gamma.detach() * row_mean_abs(w.detach(), self.per_row)).clamp_min(_MIN_ALPHA)

    def forward(self, w: torch.Tensor) -> torch.Tensor:
        pact_gradient = self.gamma_gradient == "pact"
        return _DynamicScalingFunction.apply(w, self.gamma, self.bits, self.per_row, self.masked_ste, pact_gradient)

    @torch.no_grad()
    def codes(self, w: torch.Tensor):
        alpha = self.clip_factor(w)
        k = grid_levels(self.bits)
        codes = torch.round((w / alpha).clamp(-1.0, 1.0) * k).to(torch.int8)
        return codes, alpha / k, None
