"""Logit distillation: soft cross-entropy between teacher and student distributions (Eq. 4 in docs/method.md)."""

from __future__ import annotations

import torch.nn.functional as F
from torch import Tensor


def soft_cross_entropy(
    student_logits: Tensor,
    teacher_logits: Tensor,
    mask: Tensor | None = None,
    temperature: float = 1.0,
) -> Tensor:
    """Mean over real positions of ``-sum_c softmax(z_t / T)_c * log softmax(z_s / T)_c`` (Eq. 4 in docs/method.md).

    ``student_logits`` and ``teacher_logits`` have shape ``(..., C)`` (``(B, L, V)`` for language
    modeling, ``(N, C)`` for multiple-choice logits). ``mask`` has the leading shape ``(...)``;
    True / 1 marks a real token, and padding positions take no part in the mean. The teacher is the
    target, so no gradient flows into ``teacher_logits``. With ``temperature != 1`` the result is
    multiplied by ``T**2`` (Hinton et al.) so gradient magnitudes do not shrink with ``T``; at the
    paper's ``T = 1`` this is exactly Eq. 4. Returns a scalar (0 when no position is real).
    """
    if student_logits.shape != teacher_logits.shape:
        raise ValueError(
            f"student_logits shape {tuple(student_logits.shape)} != teacher_logits shape "
            f"{tuple(teacher_logits.shape)}"
        )
    if temperature <= 0:
        raise ValueError(f"temperature={temperature!r} must be > 0")
    # float32 softmax: bf16 log-probabilities over a 50k vocabulary lose too much precision.
    student_log_probs = F.log_softmax(student_logits.float() / temperature, dim=-1)
    teacher_probs = F.softmax(teacher_logits.detach().float() / temperature, dim=-1)
    per_position = -(teacher_probs * student_log_probs).sum(dim=-1)
    if mask is None:
        loss = per_position.mean()
    else:
        if mask.shape != per_position.shape:
            raise ValueError(
                f"mask shape {tuple(mask.shape)} must equal the logits' leading shape "
                f"{tuple(per_position.shape)}"
            )
        weights = mask.to(per_position.dtype)
        loss = (per_position * weights).sum() / weights.sum().clamp_min(1.0)
    return loss * temperature**2
