"""Training objectives: the loss of one step from the student's (and the teacher's) outputs.

- `finetune`: the task's own loss (the full-precision teacher is made this way).
- `distill`: logit distillation (soft cross-entropy, Eq. 4 in docs/method.md), plus `lam * L_cont` with the
  token-level contrastive loss (Eq. 2, 3, 5) for QuantGPT, or plus hidden-state MSE for the
  baselines that ask for it (docs/method.md#baselines).

An objective is an `nn.Module` because the contrastive loss has trained projections (optimized
with the backbone) and memory banks (buffers that checkpoints must keep).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor, nn

from ..distill import ContrastiveConfig, TokenContrastiveDistiller, hidden_state_mse, soft_cross_entropy
from .task import Task
from ..errors import ConfigError
from ..quantizers import WEIGHT_QUANTIZERS
from ..settings import setting, validate
from ..validators import boolean, instance_of, number, one_of, optional

OBJECTIVE_KINDS = ("finetune", "distill")


@dataclass(frozen=True)
class ObjectiveConfig:
    """What the loss is made of.

    kind: "finetune" (task loss) or "distill" (logit distillation from a frozen teacher).
    contrastive: settings of the token-level contrastive term (QuantGPT), or None for none.
    hidden_distill: add the hidden-state MSE of every layer (TinyBERT-style, for the baselines),
        weighted by `hidden_weight`.
    temperature: softmax temperature of the logit distillation (the paper's is 1).
    """

    kind: str = setting("distill", one_of(OBJECTIVE_KINDS), cli=False)
    contrastive: ContrastiveConfig | None = setting(None, optional(instance_of(ContrastiveConfig)), cli=False)
    hidden_distill: bool = setting(False, boolean(), cli=False)
    hidden_weight: float = setting(1.0, number(0), cli=False)
    temperature: float = setting(1.0, number(above=0), cli=False)

    def __post_init__(self) -> None:
        validate(self)
        if self.kind == "finetune" and (self.contrastive is not None or self.hidden_distill):
            raise ConfigError("ObjectiveConfig.kind='finetune' has no teacher: contrastive and hidden_distill need kind='distill'")

    @classmethod
    def for_method(
        cls,
        method: str,
        contrastive: ContrastiveConfig | None = None,
        use_contrastive: bool | None = None,
        hidden_distill: bool = False,
    ) -> "ObjectiveConfig":
        """The one place that decides the distillation objective of a quantization method.

        The token-level contrastive term (with `contrastive`'s settings, default the paper's) is on
        when `use_contrastive` says so, else when the method's paper objective has it (QuantGPT's,
        Eq. 5: `WeightQuantizer.contrastive_by_default`); PACT, LSQ, LAQ, RTN, a peer's quantizer
        and an unregistered name distill logits alone. A weight `lam` of 0 turns the term off, so
        `--lam 0` and the testbed's `contrastive_weight 0` are the same ablation; asking for the
        term (`use_contrastive=True`) with `lam` 0 is an error."""
        settings = contrastive or ContrastiveConfig()
        default = method in WEIGHT_QUANTIZERS and WEIGHT_QUANTIZERS[method].contrastive_by_default
        on = default if use_contrastive is None else use_contrastive
        if on and settings.lam == 0:
            if use_contrastive:
                raise ConfigError("the contrastive loss is switched on with weight lam=0: give lam > 0 (--lam) or leave it off")
            on = False
        return cls(kind="distill", contrastive=settings if on else None, hidden_distill=hidden_distill)

    def to_dict(self) -> dict[str, Any]:
        return {
            "kind": self.kind,
            "contrastive": None if self.contrastive is None else dict(vars(self.contrastive)),
            "hidden_distill": self.hidden_distill,
            "hidden_weight": self.hidden_weight,
            "temperature": self.temperature,
        }


def _identity(tensor: Tensor) -> Tensor:
    return tensor


class Objective(nn.Module):
    """`forward(task, student_outputs, teacher_outputs, batch)` -> `{"loss": scalar with grad, part: detached}`."""

    needs_teacher: bool = False
    needs_hidden_states: bool = False


class FineTuneObjective(Objective):
    """The task's loss on the model's outputs (fine-tuning the full-precision teacher)."""

    def forward(self, task: Task, student_outputs: Any, teacher_outputs: Any, batch: Mapping[str, Any]) -> dict[str, Tensor]:
        loss = task.task_loss(student_outputs, batch)
        return {"loss": loss, "task_loss": loss.detach()}


class DistillationObjective(Objective):
    """L = L_logit (+ lam * L_cont) (+ hidden_weight * L_hidden)  (Eq. 4, 5 and the baselines in docs/method.md).

    `gather` (set by the loop to an all-gather across processes) keeps the memory banks identical
    on every process. The student's task loss is computed too, without gradient, for monitoring.
    """

    needs_teacher = True

    def __init__(self, config: ObjectiveConfig, hidden_size: int, vocab_size: int, teacher_hidden_size: int | None = None) -> None:
        super().__init__()
        self.config = config
        self.distiller = (
            TokenContrastiveDistiller(hidden_size, vocab_size, config.contrastive, teacher_hidden_size)
            if config.contrastive is not None
            else None
        )
        self.needs_hidden_states = config.contrastive is not None or config.hidden_distill
        self.gather: Callable[[Tensor], Tensor] = _identity

    def forward(self, task: Task, student_outputs: Any, teacher_outputs: Any, batch: Mapping[str, Any]) -> dict[str, Tensor]:
        student = task.distill_targets(student_outputs, batch)
        teacher = task.distill_targets(teacher_outputs, batch)
        if len(student.logits) != len(teacher.logits):
            raise ValueError(f"student gave {len(student.logits)} logit outputs, teacher {len(teacher.logits)}")
        logit_loss = sum(
            soft_cross_entropy(s_logits, t_logits, mask, self.config.temperature)
            for (s_logits, mask), (t_logits, _) in zip(student.logits, teacher.logits)
        )
        loss = logit_loss
        parts = {"logit_loss": logit_loss.detach()}
        if self.config.hidden_distill:
            hidden_loss = hidden_state_mse(student.hidden_states, teacher.hidden_states, student.token_mask)
            loss = loss + self.config.hidden_weight * hidden_loss
            parts["hidden_loss"] = hidden_loss.detach()
        if self.distiller is not None:
            contrastive_loss = self.distiller(
                student.hidden_states,
                teacher.hidden_states,
                student.token_ids,
                student.token_mask,
                gather=self.gather,
            )
            loss = loss + self.config.contrastive.lam * contrastive_loss
            parts["contrastive_loss"] = contrastive_loss.detach()
        with torch.no_grad():
            parts["task_loss"] = task.task_loss(student_outputs, batch).detach()
        return {"loss": loss, **parts}


def build_objective(config: ObjectiveConfig, model_config: Any, teacher_config: Any | None = None) -> Objective:
    """The objective module for `config`, sized from the student's (and teacher's) model config."""
    if config.kind == "finetune":
        return FineTuneObjective()
    teacher_hidden = getattr(teacher_config, "hidden_size", None) if teacher_config is not None else None
    return DistillationObjective(config, model_config.hidden_size, model_config.vocab_size, teacher_hidden)
