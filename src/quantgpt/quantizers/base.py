"""The interface every weight quantizer follows, and the symmetric grid they share."""

from __future__ import annotations

import torch
from torch import nn


def grid_levels(bits: int) -> int:
    """k = 2^(b-1) - 1: the symmetric grid {-1, ..., -1/k, 0, 1/k, ..., 1} has 2k + 1 levels (SPEC section 2)."""
    return 2 ** (bits - 1) - 1


def round_to_grid(u: torch.Tensor, bits: int) -> torch.Tensor:
    """Q(u): the nearest point of the symmetric grid with k = 2^(b-1) - 1 for u in [-1, 1] (Eq. 1)."""
    k = grid_levels(bits)
    return torch.round(u * k) / k


def row_mean_abs(w: torch.Tensor, per_row: bool) -> torch.Tensor:
    """||w||_1 / n over the whole matrix, or over each row (shape (rows, 1)) for row-wise quantization."""
    if per_row:
        return w.abs().mean(dim=tuple(range(1, w.dim())), keepdim=True)
    return w.abs().mean()


class WeightQuantizer(nn.Module):
    """A weight quantizer: `forward(w)` returns the fake-quantized weight `w_q` (same shape, float).

    `codes(w)` returns the integer codes c in [-k, k] and the scales with `w_q = c * scale`
    (`scale_neg` for negative codes where a method uses two), which the packed export stores.
    `per_row` gives one clipping factor per row (the word embedding, SPEC section 2).
    """

    def __init__(self, bits: int, per_row: bool = False, rows: int | None = None) -> None:
        super().__init__()
        if per_row and not rows:
            raise ValueError("per_row quantization needs rows, the number of rows of the weight")
        self.bits = bits
        self.per_row = per_row
        self.rows = rows if per_row else None

    def parameter_shape(self) -> tuple[int, ...]:
        """Shape of one learned scale: a scalar per module, or (rows, 1) per row."""
        return (self.rows, 1) if self.per_row else ()

    def initialize(self, w: torch.Tensor) -> None:
        """Set data-dependent parameters from the full-precision weight (LSQ's step, LAQ's alpha)."""

    def codes(self, w: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor | None]:
        """Integer codes (int8, in [-k, k]), scale, and an optional separate scale for negative codes."""
        raise NotImplementedError

    def extra_repr(self) -> str:
        return f"bits={self.bits}, per_row={self.per_row}"


class _StraightThrough(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x, x_q):
        return x_q.clone()

    @staticmethod
    def backward(ctx, grad_out):
        return grad_out, None


def straight_through(x: torch.Tensor, x_q: torch.Tensor) -> torch.Tensor:
    """Returns x_q exactly, with the gradient passed to x unchanged (the STE).

    `x + (x_q - x).detach()` is the usual idiom, but its float rounding puts values off the grid.
    """
    return _StraightThrough.apply(x, x_q.detach())
