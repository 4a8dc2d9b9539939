"""Quantized Linear / Conv1D / Embedding layers that keep the wrapped module's parameters and names.

Each layer adopts the original `weight` and `bias` Parameters under the same attribute names, so a
quantized model's state dict is the full-precision one plus the quantizers' scales, and Transformers'
weight tying (which works by parameter name) keeps working.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from .quantizers import ActivationQuantizer, WeightQuantizer


class QuantLinear(nn.Module):
    """y = x_q @ Q(W)^T + b, with x_q the 8-bit input (docs/method.md#weight-quantizer, #activation-quantizers).

    `transposed` is True for GPT-2's Conv1D, which stores the weight as (in, out).
    """

    def __init__(
        self,
        weight: nn.Parameter,
        bias: nn.Parameter | None,
        weight_quantizer: WeightQuantizer,
        input_quantizer: ActivationQuantizer | None,
        transposed: bool = False,
    ) -> None:
        super().__init__()
        self.weight = weight
        self.bias = bias
        self.weight_quantizer = weight_quantizer
        self.input_quantizer = input_quantizer
        self.transposed = transposed
        weight_quantizer.initialize(weight.detach())

    @property
    def in_features(self) -> int:
        return self.weight.shape[0] if self.transposed else self.weight.shape[1]

    @property
    def out_features(self) -> int:
        return self.weight.shape[1] if self.transposed else self.weight.shape[0]

    def quantized_weight(self) -> torch.Tensor:
        """The fake-quantized weight in (out, in) layout."""
        w = self.weight_quantizer(self.weight)
        return w.t() if self.transposed else w

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.input_quantizer is not None:
            x = self.input_quantizer(x)
        return F.linear(x, self.quantized_weight(), self.bias)

    def extra_repr(self) -> str:
        return f"in_features={self.in_features}, out_features={self.out_features}, transposed={self.transposed}"


class QuantEmbedding(nn.Module):
    """The word embedding quantized row-wise (one clipping factor per token, docs/method.md#weight-quantizer).

    A module tied to another word embedding (BART's encoder and decoder `embed_tokens`) is built with
    `source=` that embedding: it shares the weight Parameter and borrows the source's quantizer, so
    the scales live (and are saved) once.
    """

    def __init__(
        self,
        weight: nn.Parameter,
        weight_quantizer: WeightQuantizer | None,
        padding_idx: int | None = None,
        embed_scale: float = 1.0,
        source: "QuantEmbedding | None" = None,
    ) -> None:
        super().__init__()
        if (weight_quantizer is None) == (source is None):
            raise ValueError("QuantEmbedding takes either its own weight_quantizer or a source embedding to share")
        self.weight = weight
        if weight_quantizer is not None:
            self.weight_quantizer = weight_quantizer
            weight_quantizer.initialize(weight.detach())
        self.__dict__["_source"] = source  # not a submodule: the source is saved where it stands
        self.padding_idx = padding_idx
        self.embed_scale = embed_scale

    num_embeddings = property(lambda self: self.weight.shape[0])  # nn.Embedding's attributes
    embedding_dim = property(lambda self: self.weight.shape[1])

    @property
    def quantizer(self) -> WeightQuantizer:
        source = self.__dict__["_source"]
        return source.quantizer if source is not None else self.weight_quantizer

    def quantized_weight(self) -> torch.Tensor:
        return self.quantizer(self.weight)

    def forward(self, input_ids: torch.Tensor) -> torch.Tensor:
        out = F.embedding(input_ids, self.quantized_weight(), self.padding_idx)
        return out * self.embed_scale if self.embed_scale != 1.0 else out

    def extra_repr(self) -> str:
        tied = ", tied" if self.__dict__["_source"] is not None else ""
        return f"{self.num_embeddings}, {self.embedding_dim}, embed_scale={self.embed_scale}{tied}"


class QuantTiedHead(nn.Module):
    """An LM head tied to the word embedding: logits = x_q @ Q(E)^T with E's row-wise quantizer.

    It holds the same `weight` Parameter as the embedding (as the full-precision head did), so
    Transformers still sees the two tied, and uses the embedding's quantized weight.
    """

    def __init__(
        self, embedding: QuantEmbedding, input_quantizer: ActivationQuantizer | None, bias: nn.Parameter | None = None
    ) -> None:
        super().__init__()
        self.weight = embedding.weight
        self.bias = bias
        self.input_quantizer = input_quantizer
        self.__dict__["_embedding"] = embedding

    @property
    def embedding(self) -> QuantEmbedding:
        return self.__dict__["_embedding"]

    def quantized_weight(self) -> torch.Tensor:
        return self.embedding.quantized_weight()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.input_quantizer is not None:
            x = self.input_quantizer(x)
        return F.linear(x, self.quantized_weight(), self.bias)
