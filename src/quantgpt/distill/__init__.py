"""Distillation losses: logit distillation, token-level contrastive distillation, hidden-state MSE."""

from quantgpt.distill.contrastive import (
    NEGATIVE_SOURCES,
    ContrastiveConfig,
    TokenContrastiveDistiller,
    in_sequence_candidates,
    info_nce,
    sample_negatives,
    select_layer,
)
from quantgpt.distill.hidden import hidden_state_mse
from quantgpt.distill.logit import soft_cross_entropy
from quantgpt.distill.memory_bank import MemoryBank

__all__ = [
    "NEGATIVE_SOURCES",
    "ContrastiveConfig",
    "MemoryBank",
    "TokenContrastiveDistiller",
    "hidden_state_mse",
    "in_sequence_candidates",
    "info_nce",
    "sample_negatives",
    "select_layer",
    "soft_cross_entropy",
]
