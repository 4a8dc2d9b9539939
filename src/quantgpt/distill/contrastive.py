"""Token-level contrastive distillation between the quantized student and its teacher (Eq. 2, 3 in docs/method.md).

The default keys come from per-token memory banks (``negatives="memory_bank"``); the other values of
:attr:`ContrastiveConfig.negatives` run the paper's ablations (section 5.1): keys from immediate
representations, negatives from both networks or from one network, random negatives from the
whole vocabulary, and sequence-level in-batch contrast.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from quantgpt.distill.memory_bank import MemoryBank
from quantgpt.errors import ConfigError
from quantgpt.settings import setting, validate
from quantgpt.validators import Check, integer, is_int, number, one_of, optional

NEGATIVE_SOURCES = ("memory_bank", "immediate", "fp+quan", "quan_only", "global", "sequence")
# The variants whose positive keys are read from the memory banks (and so update them each step).
_BANK_SOURCES = ("memory_bank", "fp+quan", "quan_only", "global")


@dataclass(frozen=True)
class ContrastiveConfig:
    """Settings of the token-level contrastive loss; defaults are the paper's (docs/method.md#tasks-and-training-settings).

    ``negatives`` picks where keys come from:

    - ``"memory_bank"``: keys (positive and negatives) from the other network's bank (the method).
    - ``"immediate"``: keys are the other network's current representations, detached; no bank.
    - ``"fp+quan"``: positive from the other network's bank; negatives from both networks' current
      representations of the other tokens of the sequence.
    - ``"quan_only"``: positive from the other network's bank; negatives from the anchor's own
      network's current representations (the student's for ``L_s2t``; mirrored, the teacher's for
      ``L_t2s``, as the paper picks the teacher-to-student negatives "in a similar way").
    - ``"global"``: negatives are random tokens of the whole vocabulary (only bank entries that hold
      a representation), keys from the bank.
    - ``"sequence"``: sequence-level in-batch contrast of mean-pooled sequence representations; the
      other sequences of the batch are the negatives.

    ``layer`` indexes a model's ``hidden_states`` tuple: -1 the last layer, 1 the first layer
    (0 is the embeddings). ``proj_dim=None`` projects to the student's hidden size. ``lam`` is the
    weight of ``L_cont`` in the total loss (Eq. 5); the trainer applies it.
    """

    tau: float = setting(0.1, number(above=0), "temperature")
    momentum: float = setting(0.5, number(0, below=1), "memory bank momentum")
    num_negatives: int = setting(32, integer(1), "negatives per token (paper: 32, PTB 64)")
    lam: float = setting(0.1, number(0), "weight of the contrastive loss (0: logit distillation alone)")
    proj_dim: int | None = setting(None, optional(integer(1)), "projection size (default: the hidden size)")
    negatives: str = setting("memory_bank", one_of(NEGATIVE_SOURCES), "negatives / keys (ablations)")
    layer: int = setting(
        -1,
        Check(is_int, "an integer index into hidden_states (-1 last layer, 1 first layer, 0 embeddings)"),
        "hidden_states index of the contrasted layer (-1 last layer, 1 first)",
        flags=("--contrastive-layer",),
    )

    def __post_init__(self) -> None:
        validate(self)


def select_layer(hidden_states: Tensor | Sequence[Tensor], layer: int) -> Tensor:
    """The ``(B, L, H)`` hidden states of ``layer`` from a model's ``hidden_states`` tuple.

    A tensor is returned as is, so callers may pass either the tuple or the chosen layer.
    """
    if isinstance(hidden_states, Tensor):
        return hidden_states
    if not -len(hidden_states) <= layer < len(hidden_states):
        raise ConfigError(f"layer={layer} is out of range for {len(hidden_states)} hidden-state entries")
    return hidden_states[layer]


def sample_negatives(candidates: Tensor, num_negatives: int) -> Tensor:
    """Choose up to ``num_negatives`` of the True entries of each row of ``candidates``.

    ``candidates`` is a bool tensor ``(..., P)``; the result has the same shape and marks the chosen
    negatives: a uniform sample without replacement among each row's candidates (the top-k of iid
    uniform scores), or all of them when there are no more than ``num_negatives``. Uses torch's
    global RNG, so a seeded run samples the same negatives.
    """
    k = min(num_negatives, candidates.shape[-1])
    if k == candidates.shape[-1]:
        return candidates.clone()
    scores = torch.rand(candidates.shape, device=candidates.device).masked_fill(~candidates, -1.0)
    top = scores.topk(k, dim=-1).indices
    chosen = torch.zeros_like(candidates).scatter_(-1, top, True)
    return chosen & candidates  # rows with fewer than k candidates picked some non-candidates


def in_sequence_candidates(input_ids: Tensor, real: Tensor) -> Tensor:
    """``(B, L, L)`` bool: may position ``j`` be a negative of position ``i`` of the same sequence.

    Both must be real tokens, ``j != i``, and ``t_j != t_i``: another occurrence of the same token
    would be a false negative (a choice: docs/method.md#choices-we-made).
    """
    different_token = input_ids.unsqueeze(2) != input_ids.unsqueeze(1)
    both_real = real.unsqueeze(2) & real.unsqueeze(1)
    return different_token & both_real  # different tokens already excludes j == i


def cosine_logits(anchors: Tensor, keys: Tensor, tau: float) -> Tensor:
    """``s(anchor_i, key_j) / tau`` for every pair: ``(B, L, D)`` x ``(B, K, D)`` -> ``(B, L, K)``."""
    return F.normalize(anchors, dim=-1) @ F.normalize(keys, dim=-1).transpose(-1, -2) / tau


def info_nce(
    positive_logits: Tensor, negative_logits: Tensor, negative_mask: Tensor, weights: Tensor
) -> Tensor:
    """Weighted mean of ``-log(exp(pos) / (exp(pos) + sum_{chosen} exp(neg)))`` (Eq. 2 in docs/method.md).

    ``positive_logits`` ``(...)``, ``negative_logits`` and ``negative_mask`` ``(..., K)``,
    ``weights`` ``(...)`` (1 for real anchors). An anchor with no chosen negative contributes
    ``log 1 = 0``. Returns a scalar, 0 when no anchor is real.
    """
    masked = negative_logits.masked_fill(~negative_mask, float("-inf"))
    all_logits = torch.cat([positive_logits.unsqueeze(-1), masked], dim=-1)
    per_anchor = torch.logsumexp(all_logits, dim=-1) - positive_logits
    weights = weights.to(per_anchor.dtype)
    return (per_anchor * weights).sum() / weights.sum().clamp_min(1.0)


def _identity(tensor: Tensor) -> Tensor:
    return tensor


class TokenContrastiveDistiller(nn.Module):
    """``L_cont = (L_s2t + L_t2s) / 2`` with trained projections and per-token memory banks (Eq. 2, 3 in docs/method.md).

    Holds ``student_proj`` and ``teacher_proj`` (both trained; the teacher network itself stays
    frozen) and two :class:`MemoryBank` s, ``student_bank`` and ``teacher_bank``, whose buffers are
    in ``state_dict``. Each :meth:`forward` returns this step's loss and then updates both banks.
    """

    def __init__(self, hidden_size: int, vocab_size: int, config: ContrastiveConfig, teacher_hidden_size: int | None = None) -> None:
        super().__init__()
        self.config = config
        proj_dim = config.proj_dim if config.proj_dim is not None else hidden_size
        self.student_proj = nn.Linear(hidden_size, proj_dim)
        self.teacher_proj = nn.Linear(teacher_hidden_size or hidden_size, proj_dim)
        self.student_bank = MemoryBank(vocab_size, proj_dim)
        self.teacher_bank = MemoryBank(vocab_size, proj_dim)

    def forward(
        self,
        student_hidden: Tensor | Sequence[Tensor],
        teacher_hidden: Tensor | Sequence[Tensor],
        input_ids: Tensor,
        attention_mask: Tensor | None = None,
        gather: Callable[[Tensor], Tensor] | None = None,
    ) -> Tensor:
        """The scalar contrastive loss of this batch; then both banks take this step's representations.

        ``student_hidden`` / ``teacher_hidden``: ``(B, L, H)`` hidden states, or a model's whole
        ``hidden_states`` tuple (``config.layer`` picks the entry). ``input_ids`` and
        ``attention_mask`` (1 = real token) are ``(B, L)``. Gradients reach the student's hidden
        states, ``student_proj`` and ``teacher_proj``; the teacher's hidden states are constants.
        ``gather`` (e.g. ``accelerator.gather``) is applied to the flattened ids (padding = -1) and
        detached representations before the bank update, so every process applies the same update;
        it must return tensors concatenated along dim 0 (pad sequences to one length across
        processes first if they differ).
        """
        student_hidden = select_layer(student_hidden, self.config.layer)
        teacher_hidden = select_layer(teacher_hidden, self.config.layer)
        if attention_mask is None:
            real = torch.ones_like(input_ids, dtype=torch.bool)
        else:
            real = attention_mask.bool()
        # float32 for the cosine similarities, whatever precision the models run in.
        student_reps = self.student_proj(student_hidden).float()
        teacher_reps = self.teacher_proj(teacher_hidden.detach()).float()
        source = self.config.negatives

        if source == "sequence":
            return self._sequence_loss(student_reps, teacher_reps, real)
        if source == "immediate":
            return self._in_sequence_loss(
                student_reps, teacher_reps, input_ids, real,
                student_keys=student_reps.detach(), teacher_keys=teacher_reps.detach(),
            )

        ids = input_ids.masked_fill(~real, -1)
        # One gather serves the first-step fill and the Eq. 3 update, so that N processes read and
        # write exactly what one process with the same global batch would.
        flat_ids, all_student, all_teacher = self._gathered(ids, student_reps, teacher_reps, gather or _identity)
        # Tokens never seen before would otherwise have all-zero keys in their first step.
        self.student_bank.fill_unwritten(flat_ids, all_student)
        self.teacher_bank.fill_unwritten(flat_ids, all_teacher)
        if source == "global":
            loss = self._global_loss(student_reps, teacher_reps, ids, real)
        else:
            loss = self._in_sequence_loss(
                student_reps, teacher_reps, input_ids, real,
                student_keys=self.student_bank.lookup(ids), teacher_keys=self.teacher_bank.lookup(ids),
            )
        self.student_bank.update(flat_ids, all_student, self.config.momentum)  # Eq. 3
        self.teacher_bank.update(flat_ids, all_teacher, self.config.momentum)
        return loss

    def _in_sequence_loss(
        self,
        student_reps: Tensor,
        teacher_reps: Tensor,
        input_ids: Tensor,
        real: Tensor,
        student_keys: Tensor,
        teacher_keys: Tensor,
    ) -> Tensor:
        """Token-level loss with negatives at other positions of the same sequence.

        ``*_keys`` ``(B, L, D)`` are the detached keys of each network per position (bank entries
        or current representations): the positive of a student anchor is ``teacher_keys[i]``, and
        of a teacher anchor ``student_keys[i]``. The pools of negatives depend on the variant.
        """
        source = self.config.negatives
        student_now, teacher_now = student_reps.detach(), teacher_reps.detach()
        if source in ("memory_bank", "immediate"):
            student_pools, teacher_pools = [teacher_keys], [student_keys]
        elif source == "fp+quan":
            student_pools = teacher_pools = [teacher_now, student_now]
        elif source == "quan_only":
            student_pools, teacher_pools = [student_now], [teacher_now]
        else:
            raise AssertionError(f"unhandled negatives={source!r}")
        candidates = in_sequence_candidates(input_ids, real)
        s2t = self._direction_loss(student_reps, teacher_keys, student_pools, candidates, real)
        t2s = self._direction_loss(teacher_reps, student_keys, teacher_pools, candidates, real)
        return (s2t + t2s) / 2

    def _direction_loss(
        self, anchors: Tensor, positive_keys: Tensor, pools: list[Tensor], candidates: Tensor, real: Tensor
    ) -> Tensor:
        """One direction of Eq. 2: anchors ``(B, L, D)`` against their positive and sampled negatives."""
        tau = self.config.tau
        positive = F.cosine_similarity(anchors, positive_keys, dim=-1) / tau
        negative = torch.cat([cosine_logits(anchors, pool, tau) for pool in pools], dim=-1)
        chosen = sample_negatives(candidates.repeat(1, 1, len(pools)), self.config.num_negatives)
        return info_nce(positive, negative, chosen, real)

    def _global_loss(self, student_reps: Tensor, teacher_reps: Tensor, ids: Tensor, real: Tensor) -> Tensor:
        """Token-level loss with negatives drawn from the whole vocabulary, keys from the banks."""
        available = self.student_bank.written & self.teacher_bank.written
        available[ids[real]] = True  # this step's tokens were just filled in
        vocab_ids = available.nonzero().squeeze(1)
        losses = []
        for anchors, bank in ((student_reps, self.teacher_bank), (teacher_reps, self.student_bank)):
            negative_ids, chosen = self._sample_vocabulary_negatives(ids, vocab_ids)
            positive = F.cosine_similarity(anchors, bank.lookup(ids), dim=-1) / self.config.tau
            negative = cosine_logits(anchors, bank.lookup(negative_ids), self.config.tau)
            losses.append(info_nce(positive, negative, chosen, real))
        return (losses[0] + losses[1]) / 2

    def _sample_vocabulary_negatives(self, ids: Tensor, vocab_ids: Tensor) -> tuple[Tensor, Tensor]:
        """Per sequence, ``num_negatives + 1`` random distinct vocabulary ids; per position, a mask.

        The ids ``(B, C)`` are the head of a random permutation of ``vocab_ids``; the mask
        ``(B, L, C)`` keeps, for position ``i``, the first ``num_negatives`` of them that differ
        from ``t_i`` -- a uniform sample without replacement from the vocabulary minus ``t_i``.
        Sharing the draw within a sequence keeps memory at ``B x |V|`` instead of ``B x L x |V|``.
        """
        count = min(self.config.num_negatives + 1, vocab_ids.shape[0])
        order = torch.rand(ids.shape[0], vocab_ids.shape[0], device=ids.device).topk(count, dim=-1).indices
        negative_ids = vocab_ids[order]
        differs = negative_ids.unsqueeze(1) != ids.unsqueeze(2)
        chosen = differs & (differs.cumsum(dim=-1) <= self.config.num_negatives)
        return negative_ids, chosen

    def _sequence_loss(self, student_reps: Tensor, teacher_reps: Tensor, real: Tensor) -> Tensor:
        """Sequence-level in-batch contrast: mean-pooled sequences, other sequences as negatives.

        Keys are the other network's current pooled representations, detached.
        """
        weights = real.to(student_reps.dtype).unsqueeze(-1)
        counts = weights.sum(dim=1).clamp_min(1.0)
        student_seq = (student_reps * weights).sum(dim=1) / counts
        teacher_seq = (teacher_reps * weights).sum(dim=1) / counts
        has_tokens = real.any(dim=1)
        candidates = (has_tokens.unsqueeze(0) & has_tokens.unsqueeze(1)).fill_diagonal_(False)
        tau = self.config.tau
        losses = []
        for anchors, keys in ((student_seq, teacher_seq.detach()), (teacher_seq, student_seq.detach())):
            logits = cosine_logits(anchors, keys, tau)
            chosen = sample_negatives(candidates, self.config.num_negatives)
            losses.append(info_nce(logits.diagonal(), logits, chosen, has_tokens))
        return (losses[0] + losses[1]) / 2

    @staticmethod
    def _gathered(
        ids: Tensor, student_reps: Tensor, teacher_reps: Tensor, gather: Callable[[Tensor], Tensor]
    ) -> tuple[Tensor, Tensor, Tensor]:
        """This step's flat ids and detached representations from every process (padding id -1)."""
        dim = student_reps.shape[-1]
        return (
            gather(ids.reshape(-1)),
            gather(student_reps.detach().reshape(-1, dim)),
            gather(teacher_reps.detach().reshape(-1, dim)),
        )
