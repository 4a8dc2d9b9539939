"""Round-to-nearest with a max-abs clip: the post-training baseline with nothing learned."""

from __future__ import annotations

import torch

from .base import straight_through, WeightQuantizer, grid_levels, round_to_grid


class RoundToNearestQuantizer(WeightQuantizer):
    """alpha = max|w| (per module or per row), w_q = alpha * Q(w / alpha); straight-through gradient."""

    def _alpha(self, w: torch.Tensor) -> torch.Tensor:
        w = w.detach().abs()
        alpha = w.amax(dim=tuple(range(1, w.dim())), keepdim=True) if self.per_row else w.max()
        return alpha.clamp_min(1e-12)

    def forward(self, w: torch.Tensor) -> torch.Tensor:
        alpha = self._alpha(w)
        w_q = alpha * round_to_grid(w.detach() / alpha, self.bits)
        return straight_through(w, w_q)

    @torch.no_grad()
    def codes(self, w: torch.Tensor):
        alpha = self._alpha(w)
        k = grid_levels(self.bits)
        return torch.round(w / alpha * k).to(torch.int8), alpha / k, None
