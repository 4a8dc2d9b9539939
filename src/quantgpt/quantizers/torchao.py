"""torchao's QAT weight fake quantizer as a registered method ("torchao"): the testbed's peer baseline.

torchao (PyTorch's quantization library) provides QAT fake quantizers; `IntxFakeQuantizer` with
`IntxFakeQuantizeConfig(torch.int{b}, "per_channel", is_symmetric=True)` is its generic b-bit
weight fake quantizer (a max-abs scale per output channel, recomputed each forward, STE). As a
registered method it goes through `quantize_model` like the paper's: the activations, the
attention, the distillation loss and the training loop are those of the other methods, and only
the weight/embedding quantizer differs.

Two differences are torchao's own and are reported with its results: its b-bit grid is two's
complement, [-2^(b-1), 2^(b-1) - 1] (4 levels at 2 bits, where the paper's ternary grid has 3),
and it has no per-matrix granularity for weights, so every linear layer gets one scale per output
channel (the paper's methods: one per matrix; the embedding: one per row for both).
torchao is imported only when such a quantizer is built.
"""

from __future__ import annotations

import importlib.util

import torch

from ..errors import UsageError
from .base import WeightQuantizer

TORCHAO_REQUIREMENT = "torchao==0.14.1"  # see pyproject.toml: a newer one is imported by every command


def torchao_available() -> bool:
    return importlib.util.find_spec("torchao") is not None


class TorchAOWeightQuantizer(WeightQuantizer):
    """torchao's `IntxFakeQuantizer` behind this package's weight-quantizer interface.

    `transposed` is True for GPT-2's Conv1D weights, stored (in, out): torchao's per-channel scales
    run over dim 0, so the weight is transposed to (out, in) around the call to get one scale per
    output channel (per token for the embedding).
    """

    display_name = "torchao (peer)"

    def __init__(self, bits: int, per_row: bool = False, rows: int | None = None, transposed: bool = False) -> None:
        super().__init__(bits, per_row, rows)
        if not torchao_available():
            raise UsageError(f"the torchao quantizer needs torchao: pip install {TORCHAO_REQUIREMENT}")
        from torchao.quantization.qat import IntxFakeQuantizeConfig, IntxFakeQuantizer

        config = IntxFakeQuantizeConfig(getattr(torch, f"int{bits}"), "per_channel", is_symmetric=True)
        self.fake_quantizer = IntxFakeQuantizer(config)
        self.transposed = transposed

    @classmethod
    def from_config(cls, bits, config, rows=None, transposed=False):
        return cls(bits, per_row=rows is not None, rows=rows, transposed=transposed)

    def forward(self, w: torch.Tensor) -> torch.Tensor:
        if self.transposed:
            return self.fake_quantizer(w.t()).t()
        return self.fake_quantizer(w)

    def extra_repr(self) -> str:
        return f"{super().extra_repr()}, torchao IntxFakeQuantizer per_channel, transposed={self.transposed}"
