"""Which examples each process reads at each optimizer step.

Hand-written rather than Accelerate's sharded samplers, for two properties the loop relies on:
the global batch of step `s` is a pure function of (seed, s), so a resumed run starts at any step
without reading the batches before it (exact resume), and a run on N processes sees the same
global batches as a run on one (the multi-process test compares them).
"""

from __future__ import annotations

from collections.abc import Iterator

import torch
from torch.utils.data import Sampler
from ..errors import UsageError


class StepBatchSampler(Sampler[list[int]]):
    """Yields this process's micro-batches (lists of example indices) for steps start_step+1 ... total_steps.

    Epoch `e` is a permutation of all examples drawn from `seed + e`; the last incomplete global
    batch of an epoch is dropped so that every step has `global_batch` examples. Step `s` (1-based)
    takes the global batch `(s - 1) % steps_per_epoch` of epoch `(s - 1) // steps_per_epoch`, splits
    it into `accumulation` micro-steps in order, and each micro-step into `num_processes` equal
    slices; process `p` gets slice `p` of each micro-step.
    """

    def __init__(
        self,
        num_examples: int,
        global_batch: int,
        total_steps: int,
        seed: int,
        num_processes: int = 1,
        process_index: int = 0,
        accumulation: int = 1,
        start_step: int = 0,
    ) -> None:
        if global_batch % (num_processes * accumulation):
            raise UsageError(
                f"global batch {global_batch} does not split into {accumulation} micro-steps x {num_processes} processes"
            )
        if num_examples < global_batch:
            raise UsageError(
                f"the training set has {num_examples} examples, fewer than one batch of batch_size={global_batch}"
            )
        self.num_examples = num_examples
        self.global_batch = global_batch
        self.total_steps = total_steps
        self.seed = seed
        self.num_processes = num_processes
        self.process_index = process_index
        self.accumulation = accumulation
        self.start_step = start_step
        self.micro_batch = global_batch // (num_processes * accumulation)

    @property
    def steps_per_epoch(self) -> int:
        return self.num_examples // self.global_batch

    def epoch_order(self, epoch: int) -> torch.Tensor:
        generator = torch.Generator().manual_seed(self.seed + epoch)
        return torch.randperm(self.num_examples, generator=generator)

    def global_batch_indices(self, step: int) -> list[int]:
        """The examples of optimizer step `step` (1-based), over all processes."""
        epoch, position = divmod(step - 1, self.steps_per_epoch)
        return self._global_batch(self.epoch_order(epoch), position)

    def micro_batches(self, step: int) -> list[list[int]]:
        """This process's `accumulation` micro-batches of step `step`."""
        return self._split(self.global_batch_indices(step))

    def _global_batch(self, order: torch.Tensor, position: int) -> list[int]:
        return order[position * self.global_batch : (position + 1) * self.global_batch].tolist()

    def _split(self, indices: list[int]) -> list[list[int]]:
        per_micro_step = self.global_batch // self.accumulation
        offset = self.process_index * self.micro_batch
        return [
            indices[micro * per_micro_step + offset : micro * per_micro_step + offset + self.micro_batch]
            for micro in range(self.accumulation)
        ]

    def __iter__(self) -> Iterator[list[int]]:
        cached_epoch, order = None, None
        for step in range(self.start_step + 1, self.total_steps + 1):
            epoch, position = divmod(step - 1, self.steps_per_epoch)
            if epoch != cached_epoch:  # one permutation per epoch, not per step
                cached_epoch, order = epoch, self.epoch_order(epoch)
            yield from self._split(self._global_batch(order, position))

    def __len__(self) -> int:
        return (self.total_steps - self.start_step) * self.accumulation
