"""Per-token memory bank of momentum-smoothed representations (Eq. 3, docs/method.md#token-level-contrastive-distillation)."""

from __future__ import annotations

import torch
from torch import Tensor, nn


class MemoryBank(nn.Module):
    """One smoothed vector per vocabulary token, read as contrastive keys.

    Both buffers are persistent, so they are saved in ``state_dict`` and a resumed run restores
    them: ``vectors`` ``(vocab_size, dim)`` float32 and ``written`` ``(vocab_size,)`` bool (whether
    :meth:`update` ever wrote the entry). Nothing here carries gradients.
    """

    def __init__(self, vocab_size: int, dim: int) -> None:
        super().__init__()
        if vocab_size < 1:
            raise ValueError(f"vocab_size={vocab_size!r} must be >= 1")
        if dim < 1:
            raise ValueError(f"dim={dim!r} must be >= 1")
        self.register_buffer("vectors", torch.zeros(vocab_size, dim))
        self.register_buffer("written", torch.zeros(vocab_size, dtype=torch.bool))

    @property
    def vocab_size(self) -> int:
        return self.vectors.shape[0]

    @property
    def dim(self) -> int:
        return self.vectors.shape[1]

    def _average_per_token(self, token_ids: Tensor, reps: Tensor) -> tuple[Tensor, Tensor]:
        """Distinct ids ``>= 0`` and the mean of their representations in this batch.

        A token that occurs several times in a batch gets one write, of its mean (a choice: docs/method.md#choices-we-made),
        so the result does not depend on the order of occurrences.
        """
        token_ids = token_ids.reshape(-1)
        reps = reps.reshape(token_ids.shape[0], -1)
        if reps.shape[1] != self.dim:
            raise ValueError(f"reps have dim {reps.shape[1]}, the bank holds dim {self.dim}")
        keep = token_ids >= 0  # negative ids mark padding
        token_ids, reps = token_ids[keep], reps[keep].detach().to(self.vectors.dtype)
        unique_ids, inverse = torch.unique(token_ids, return_inverse=True)
        sums = reps.new_zeros(unique_ids.shape[0], self.dim).index_add_(0, inverse, reps)
        counts = reps.new_zeros(unique_ids.shape[0]).index_add_(0, inverse, reps.new_ones(inverse.shape[0]))
        return unique_ids, sums / counts.unsqueeze(1)

    @torch.no_grad()
    def update(self, token_ids: Tensor, reps: Tensor, momentum: float) -> None:
        """Apply ``bank[t] <- m * bank[t] + (1 - m) * h_t`` for each token seen (Eq. 3 in docs/method.md).

        ``token_ids`` ``(N,)``, ids ``< 0`` ignored; ``reps`` ``(N, dim)``. Repeated ids are averaged
        first; an entry never written before is set to the (averaged) representation itself.
        """
        unique_ids, means = self._average_per_token(token_ids, reps)
        old = self.vectors[unique_ids]
        was_written = self.written[unique_ids].unsqueeze(1)
        self.vectors[unique_ids] = torch.where(was_written, momentum * old + (1.0 - momentum) * means, means)
        self.written[unique_ids] = True

    @torch.no_grad()
    def fill_unwritten(self, token_ids: Tensor, reps: Tensor) -> None:
        """Give never-written entries among ``token_ids`` the (averaged) ``reps``, so they can be read.

        Used before a loss so that the first step has keys. ``written`` is left False on purpose:
        the following :meth:`update` then treats the entry as a first write and sets it to the
        (possibly gathered across processes) representation, which keeps banks identical on every
        process even though each process filled in its own local values.
        """
        unique_ids, means = self._average_per_token(token_ids, reps)
        unwritten = ~self.written[unique_ids]
        self.vectors[unique_ids[unwritten]] = means[unwritten]

    def lookup(self, token_ids: Tensor) -> Tensor:
        """The bank vectors of ``token_ids`` (any shape), shape ``(*token_ids.shape, dim)``, detached.

        Negative (padding) ids read row 0; callers mask those positions out.
        """
        return self.vectors[token_ids.clamp_min(0)].detach()
