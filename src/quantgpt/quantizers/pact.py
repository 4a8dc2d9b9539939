"""PACT, the flexible two-sided variant used as a baseline (docs/method.md#baselines)."""

from __future__ import annotations

import torch
from torch import nn

from .base import WeightQuantizer, grid_levels, round_to_grid

PACT_INIT = 2.5
# How the clipping factors start: the paper's constant, or the weight's own range.
PACT_INITS = ("paper", "weights")


class _PactFunction(torch.autograd.Function):
    """Clip to [-alpha_n, alpha_p], then round each side on its own symmetric grid.

    PACT's gradients: the weight passes straight through inside the clip range and gets nothing
    outside; alpha_p collects the gradient of the weights at or above it, alpha_n (with sign -1)
    of those at or below -alpha_n. Weights inside the range give the clipping factors nothing.
    """

    @staticmethod
    def forward(ctx, w, alpha_neg, alpha_pos, bits: int):
        alpha_neg = alpha_neg.clamp_min(1e-12)
        alpha_pos = alpha_pos.clamp_min(1e-12)
        scale = torch.where(w < 0, alpha_neg, alpha_pos)
        w_q = scale * round_to_grid((w / scale).clamp(-1.0, 1.0), bits)
        ctx.save_for_backward(w, alpha_neg, alpha_pos)
        return w_q

    @staticmethod
    def backward(ctx, grad_out):
        w, alpha_neg, alpha_pos = ctx.saved_tensors
        above = w >= alpha_pos
        below = w <= -alpha_neg
        grad_w = grad_out * ~(above | below)
        if alpha_pos.dim():
            reduce = lambda t: t.sum(dim=tuple(range(1, w.dim())), keepdim=True)  # noqa: E731
        else:
            reduce = lambda t: t.sum()  # noqa: E731
        grad_pos = reduce(grad_out * above)
        grad_neg = reduce(-grad_out * below)
        return grad_w, grad_neg, grad_pos, None


class PACTQuantizer(WeightQuantizer):
    """PACT with separate negative and positive clipping factors, both initialized to 2.5 (Appendix B.4).

    `init="weights"` (an option beyond the paper) starts them at the weight's own range instead,
    alpha_p = max(w) and alpha_n = max(-w) (per row for the embedding), so that nothing is clipped
    at the start: the paper's 2.5 is far above the weights of a small model (the testbed's largest
    is about 0.09), and every weight then rounds to zero.
    """

    display_name = "PACT"

    def __init__(
        self, bits: int, per_row: bool = False, rows: int | None = None, init: float = PACT_INIT, init_from: str = "paper"
    ) -> None:
        super().__init__(bits, per_row, rows)
        if init_from not in PACT_INITS:
            raise ValueError(f"init_from={init_from!r}: allowed are {', '.join(PACT_INITS)}")
        self.init_from = init_from
        self.alpha_neg = nn.Parameter(torch.full(self.parameter_shape(), float(init)))
        self.alpha_pos = nn.Parameter(torch.full(self.parameter_shape(), float(init)))

    @classmethod
    def from_config(cls, bits, config, rows=None, transposed=False):
        return cls(bits, per_row=rows is not None, rows=rows, init_from=config.pact_init)

    @torch.no_grad()
    def initialize(self, w: torch.Tensor) -> None:
        if self.init_from != "weights" or w.is_meta:  # from_pretrained: the factors come from the checkpoint
            return
        dims = tuple(range(1, w.dim())) if self.per_row else tuple(range(w.dim()))
        self.alpha_pos.copy_(w.amax(dim=dims, keepdim=self.per_row).clamp_min(1e-12).reshape(self.alpha_pos.shape))
        self.alpha_neg.copy_((-w).amax(dim=dims, keepdim=self.per_row).clamp_min(1e-12).reshape(self.alpha_neg.shape))

    def clipping_range(self, w: torch.Tensor):
        return -self.alpha_neg.detach(), self.alpha_pos.detach()

    def forward(self, w: torch.Tensor) -> torch.Tensor:
        return _PactFunction.apply(w, self.alpha_neg, self.alpha_pos, self.bits)

    @torch.no_grad()
    def codes(self, w: torch.Tensor):
        alpha_neg = self.alpha_neg.clamp_min(1e-12)
        alpha_pos = self.alpha_pos.clamp_min(1e-12)
        k = grid_levels(self.bits)
        scale = torch.where(w < 0, alpha_neg, alpha_pos)
        codes = torch.round((w / scale).clamp(-1.0, 1.0) * k).to(torch.int8)
        return codes, alpha_pos / k, alpha_neg / k
