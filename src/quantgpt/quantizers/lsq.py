"""LSQ, learned step size quantization (Esser et al. 2020), a baseline (docs/method.md#baselines)."""

from __future__ import annotations

import math

import torch
from torch import nn

from .base import WeightQuantizer, grid_levels, row_mean_abs, symmetric


class _LsqFunction(torch.autograd.Function):
    """w_q = s * clamp(round(w / s), -Q_P, Q_P) with LSQ's gradients.

    d w_q / d s = round(w/s) - w/s inside the range and the clipped level (-Q_P or Q_P) outside,
    scaled by 1 / sqrt(n * Q_P); the weight passes straight through inside the range only.
    """

    @staticmethod
    def forward(ctx, w, step, bits: int, per_row: bool):
        q_p = grid_levels(bits)
        step = step.clamp_min(1e-12)
        v = w / step
        level = torch.round(v).clamp(-q_p, q_p)
        ctx.save_for_backward(v, level)
        ctx.q_p, ctx.per_row = q_p, per_row
        return level * step

    @staticmethod
    def backward(ctx, grad_out):
        v, level = ctx.saved_tensors
        q_p, per_row = ctx.q_p, ctx.per_row
        inside = (v >= -q_p) & (v <= q_p)
        grad_w = grad_out * inside
        d_wq_d_s = torch.where(inside, level - v, level)
        n = v[0].numel() if per_row else v.numel()
        grad_scale = 1.0 / math.sqrt(n * q_p)
        per_entry = grad_out * d_wq_d_s * grad_scale
        if per_row:
            grad_step = per_entry.sum(dim=tuple(range(1, v.dim())), keepdim=True)
        else:
            grad_step = per_entry.sum()
        return grad_w, grad_step, None, None


class LSQQuantizer(WeightQuantizer):
    """LSQ with Q_N = Q_P = 2^(b-1) - 1 (the same 2^b - 1 levels as the other methods).

    The step is initialized from the weight as 2 * mean|w| / sqrt(Q_P) by `initialize(w)`.
    """

    display_name = "LSQ"

    def __init__(self, bits: int, per_row: bool = False, rows: int | None = None) -> None:
        super().__init__(bits, per_row, rows)
        self.step = nn.Parameter(torch.ones(self.parameter_shape()))

    @torch.no_grad()
    def initialize(self, w: torch.Tensor) -> None:
        self.step.copy_(2.0 * row_mean_abs(w, self.per_row) / math.sqrt(grid_levels(self.bits)))

    def clipping_range(self, w: torch.Tensor):
        return symmetric(self.step * grid_levels(self.bits))

    def forward(self, w: torch.Tensor) -> torch.Tensor:
        return _LsqFunction.apply(w, self.step, self.bits, self.per_row)

    @torch.no_grad()
    def codes(self, w: torch.Tensor):
        step = self.step.clamp_min(1e-12)
        q_p = grid_levels(self.bits)
        codes = torch.round(w / step).clamp(-q_p, q_p).to(torch.int8)
        return codes, step.expand(codes.shape[0], 1) if self.per_row else step, None
