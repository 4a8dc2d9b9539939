"""Round-to-nearest with a max-abs clip: the post-training baseline with nothing learned."""

from __future__ import annotations

import torch

from .base import WeightQuantizer, grid_levels, round_to_grid, straight_through, symmetric


class RoundToNearestQuantizer(WeightQuantizer):
    """alpha = max|w| (per module or per row), w_q = alpha * Q(w / alpha); straight-through gradient."""

    display_name = "RTN"

    def clip_factor(self, w: torch.Tensor) -> torch.Tensor:
        """alpha = max|w|, per module or per row."""
        w = w.detach().abs()
        alpha = w.amax(dim=tuple(range(1, w.dim())), keepdim=True) if self.per_row else w.max()
        return alpha.clamp_min(1e-12)

    def clipping_range(self, w: torch.Tensor):
        return symmetric(self.clip_factor(w))

    def forward(self, w: torch.Tensor) -> torch.Tensor:
        alpha = self.clip_factor(w)
        w_q = alpha * round_to_grid(w.detach() / alpha, self.bits)
        return straight_through(w, w_q)

    @torch.no_grad()
    def codes(self, w: torch.Tensor):
        alpha = self.clip_factor(w)
        k = grid_levels(self.bits)
        return torch.round(w / alpha * k).to(torch.int8), alpha / k, None
