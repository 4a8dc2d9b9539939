"""Hidden-state distillation for the baselines (TinyBERT style, docs/method.md#baselines)."""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor


def hidden_state_mse(
    student_hidden_states: Sequence[Tensor],
    teacher_hidden_states: Sequence[Tensor],
    mask: Tensor | None = None,
) -> Tensor:
    """Mean over layers of the masked mean squared error between matched hidden states.

    Layers are matched one to one (student and teacher share the architecture: the student is
    initialized from the teacher). Each tensor is ``(B, L, H)``; ``mask`` ``(B, L)`` marks real
    tokens (True / 1), and each layer's error is averaged over real positions and the hidden
    dimension. No gradient flows into the teacher's states. Returns a scalar.
    """
    if len(student_hidden_states) != len(teacher_hidden_states):
        raise ValueError(
            f"student has {len(student_hidden_states)} hidden-state layers, teacher has "
            f"{len(teacher_hidden_states)}; they must be matched one to one"
        )
    if len(student_hidden_states) == 0:
        raise ValueError("hidden_state_mse needs at least one layer of hidden states")
    layer_losses = []
    for index, (student, teacher) in enumerate(zip(student_hidden_states, teacher_hidden_states)):
        if student.shape != teacher.shape:
            raise ValueError(
                f"layer {index}: student shape {tuple(student.shape)} != teacher shape {tuple(teacher.shape)}"
            )
        squared_error = (student.float() - teacher.detach().float()).pow(2).mean(dim=-1)
        if mask is None:
            layer_losses.append(squared_error.mean())
        else:
            weights = mask.to(squared_error.dtype)
            layer_losses.append((squared_error * weights).sum() / weights.sum().clamp_min(1.0))
    return torch.stack(layer_losses).mean()
