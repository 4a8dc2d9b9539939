"""Each method's learned clipping range of one weight matrix, in the weight's own units (Figure 4).

QuantGPT clips at alpha = gamma * mean|w| (Eq. 6), PACT at [-alpha_n, alpha_p], LSQ at step * Q_P,
LAQ at its solver's alpha, round-to-nearest at max|w|: one table maps each quantizer class to the
function that reads its range, so the figure never needs to know the methods.
"""

from __future__ import annotations

from collections.abc import Callable

import torch

from ..quantizers import (
    DynamicScalingQuantizer,
    LAQQuantizer,
    LSQQuantizer,
    PACTQuantizer,
    RoundToNearestQuantizer,
    WeightQuantizer,
    grid_levels,
)


def _symmetric(alpha: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    return -alpha, alpha


CLIPPING_RANGES: dict[type, Callable[[WeightQuantizer, torch.Tensor], tuple[torch.Tensor, torch.Tensor]]] = {
    DynamicScalingQuantizer: lambda q, w: _symmetric(q.clip_factor(w)),
    PACTQuantizer: lambda q, w: (-q.alpha_neg.detach(), q.alpha_pos.detach()),
    LSQQuantizer: lambda q, w: _symmetric(q.step.detach() * grid_levels(q.bits)),
    LAQQuantizer: lambda q, w: _symmetric(q.alpha.detach()),
    RoundToNearestQuantizer: lambda q, w: _symmetric(q._alpha(w)),
}


@torch.no_grad()
def clipping_range(quantizer: WeightQuantizer, weight: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """(lower, upper) clipping bounds of `weight` under `quantizer`: scalars for a layer-wise
    quantizer, shape (rows, 1) for a row-wise one. Raises ValueError for a quantizer class not in
    CLIPPING_RANGES."""
    for cls in type(quantizer).__mro__:
        if cls in CLIPPING_RANGES:
            return CLIPPING_RANGES[cls](quantizer, weight.detach())
    raise ValueError(f"no clipping range known for {type(quantizer).__name__}: add it to CLIPPING_RANGES")
