"""The interface every weight quantizer follows, and the symmetric grid they share."""

from __future__ import annotations

from typing import TYPE_CHECKING, ClassVar

import torch
from torch import nn

if TYPE_CHECKING:
    from ..config import QuantConfig


def grid_levels(bits: int) -> int:
    """k = 2^(b-1) - 1: the grid {-1, ..., -1/k, 0, 1/k, ..., 1} has 2k + 1 levels (docs/method.md#weight-quantizer)."""
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

    Everything the rest of the package needs from a method is asked of this interface, so a new
    method is one file and one line in `quantizers/__init__.py` (`register_weight_quantizer`):
    - `from_config` builds it for one weight from the `QuantConfig` (`quantize_model` calls it);
    - `clipping_range(w)` is its learned range in the weight's units (Figure 4);
    - `learnable_parameters()` train at the quantizer learning rate, without weight decay;
    - `after_optimizer_step(weight, optimizer)` runs after every optimizer step (LAQ reads Adam's
      second moments there) and after a resume;
    - `codes(w)` returns the integer codes c in [-k, k] and the scales with `w_q = c * scale`
      (`scale_neg` for negative codes where a method uses two), which the packed export stores.
    `per_row` gives one clipping factor per row (the word embedding, docs/method.md#weight-quantizer).
    Class attributes: `display_name` (tables and figures) and `contrastive_by_default` (whether the
    paper's objective for the method adds the token-level contrastive loss: QuantGPT's only).
    """

    display_name: ClassVar[str] = ""
    contrastive_by_default: ClassVar[bool] = False

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

    @classmethod
    def from_config(cls, bits: int, config: "QuantConfig", rows: int | None = None, transposed: bool = False) -> "WeightQuantizer":
        """The quantizer of one weight: row-wise when `rows` is given (the embedding, an untied head);
        `transposed` is True for a GPT-2 Conv1D weight, stored (in, out). Methods with settings of
        their own in `QuantConfig` read them here."""
        return cls(bits, per_row=rows is not None, rows=rows)

    def initialize(self, w: torch.Tensor) -> None:
        """Set data-dependent parameters from the full-precision weight (LSQ's step, LAQ's alpha)."""

    def clipping_range(self, w: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(lower, upper) clip bounds of `w`: scalars, or shape (rows, 1) for a row-wise quantizer."""
        raise NotImplementedError(f"{type(self).__name__} does not report a clipping range")

    def learnable_parameters(self) -> list[nn.Parameter]:
        """The parameters that train at the quantizer learning rate (default: all of its own)."""
        return list(self.parameters())

    def after_optimizer_step(self, weight: nn.Parameter, optimizer: torch.optim.Optimizer) -> None:
        """Called after each optimizer step and after a resume, with the weight this quantizer quantizes."""

    def codes(self, w: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor | None]:
        """Integer codes (int8, in [-k, k]), scale, and an optional separate scale for negative codes."""
        raise NotImplementedError(f"{type(self).__name__} has no integer codes: the packed export needs them")

    def extra_repr(self) -> str:
        return f"bits={self.bits}, per_row={self.per_row}"


def symmetric(alpha: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """(-alpha, alpha): the clipping range of a symmetric quantizer."""
    alpha = alpha.detach()
    return -alpha, alpha


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
