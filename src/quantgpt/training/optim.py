"""AdamW with two learning rates and the linear decay to 0.

Appendix B.3: the backbone learns at 5e-4 (BART 2e-4), the clipping factors at 1e-3, and both
decay linearly to 0. The contrastive projections train with the backbone.
"""

from __future__ import annotations

import torch
from torch import nn
from transformers import get_linear_schedule_with_warmup

from ..convert import quantizer_parameters
from .config import TrainingConfig

BACKBONE_GROUP = "backbone"
QUANTIZER_GROUP = "quantizers"


def build_optimizer(student: nn.Module, extra: nn.Module | None, config: TrainingConfig) -> torch.optim.AdamW:
    """AdamW over two named parameter groups.

    "backbone": every trainable parameter of the student that is not a quantizer parameter, and
    those of `extra` (the objective's projections), at `learning_rate` with `weight_decay`.
    "quantizers": `quantizer_parameters(student)` at `quantizer_learning_rate`, no weight decay
    (decay would pull the clipping ranges to 0). The group is left out when there are none.
    """
    quantizer_ids = {id(p) for p in quantizer_parameters(student)}
    backbone = [p for p in student.parameters() if p.requires_grad and id(p) not in quantizer_ids]
    if extra is not None:
        backbone += [p for p in extra.parameters() if p.requires_grad]
    groups = [{"params": backbone, "lr": config.learning_rate, "weight_decay": config.weight_decay, "name": BACKBONE_GROUP}]
    quantizers = [p for p in student.parameters() if p.requires_grad and id(p) in quantizer_ids]
    if quantizers:
        groups.append({"params": quantizers, "lr": config.quantizer_learning_rate, "weight_decay": 0.0, "name": QUANTIZER_GROUP})
    return torch.optim.AdamW(groups, betas=(config.adam_beta1, config.adam_beta2), eps=config.adam_epsilon)


def build_scheduler(optimizer: torch.optim.Optimizer, config: TrainingConfig, total_steps: int):
    """Linear warm-up over `warmup_steps`, then linear decay of every group's lr to 0 at `total_steps`."""
    return get_linear_schedule_with_warmup(optimizer, config.warmup_steps, max(total_steps, 1))


def group_learning_rates(optimizer: torch.optim.Optimizer) -> dict[str, float]:
    """{"lr": backbone lr, "lr_quantizers": quantizer lr (when that group exists)}."""
    rates = {}
    for group in optimizer.param_groups:
        rates["lr" if group.get("name") == BACKBONE_GROUP else f"lr_{group.get('name')}"] = group["lr"]
    return rates
