"""Runtime layers of a packed model: they compute with the int8 weight codes, not with float weights.

A quantized weight is `w = c * s` (Eq. 1 in docs/method.md with `s = alpha / k`, one `s` per matrix or per row;
PACT uses `s_neg` for negative codes). Whatever its width (ternary, 4 or 8 bits), the codes are
unpacked once at load into an int8 matrix `c` of shape (out_features, in_features).

Every linear input is already quantized to 8 bits by the model (docs/method.md#activation-quantizers), so a linear layer
multiplies int8 activation codes by int8 weight codes with `torch._int_mm` (int32 accumulation,
exact) and scales the result once. `benchmarks/kernel_study.py` measured this as the fastest CPU kernel
for GPT-2 shapes at 1 and 8 rows (1.4-4.7x over fp32 `F.linear`) and, the integer product being
exact, it reproduces the fake-quantized model to float32 rounding. `torch._int_mm` is a private but
stable PyTorch operator (CPU and CUDA); it wants the weight as a column-major (in, out) view, which
`codes.T` of the row-major (out, in) codes is.

The activation quantization is the training-time one, recomputed per call: per-tensor min-max,
symmetric (`x = step * q`, q in [-k, k]) or asymmetric for the GeLU output (`x = low + step * q`,
q in [0, 2^b - 1]). The asymmetric codes are shifted by 2^(b-1) into int8:

    x_q @ c^T = step * ((q - 2^(b-1)) @ c^T) + (low + 2^(b-1) * step) * rowsum(c)

with `rowsum(c)` precomputed at load.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from ..attention import AttentionQuantizers
from ..quantizers import ActivationQuantizer
from ..quantizers.base import grid_levels

_MIN_RANGE = 1e-12  # the activation quantizer's floor on alpha and step (quantizers/activation.py)


@dataclass
class QuantizedInput:
    """8-bit codes of an activation, rows flattened: x = step * codes + offset (offset 0 if symmetric)."""

    codes: torch.Tensor  # int8, (rows, features)
    step: torch.Tensor  # scalar
    offset: torch.Tensor | None  # scalar, or None for symmetric quantization


def quantize_input(x: torch.Tensor, bits: int, symmetric: bool) -> QuantizedInput:
    """Codes of `ActivationQuantizer(bits, symmetric).fake_quantize(x)`, same rounding (docs/method.md#activation-quantizers).

    Symmetric: alpha = max|x|, q = round(x / alpha * k), x_q = q * alpha / k.
    Asymmetric: step = (max x - min x) / (2^b - 1), q = round((x - min x) / step), x_q = min x + q * step,
    returned shifted by 2^(b-1) so that the codes fit int8.
    """
    x = x.reshape(-1, x.shape[-1])
    if symmetric:
        k = grid_levels(bits)
        alpha = x.abs().max().clamp_min(_MIN_RANGE)
        codes = torch.round(x / alpha * k).clamp_(-k, k).to(torch.int8)
        return QuantizedInput(codes, alpha / k, None)
    levels = 2**bits - 1
    shift = 2 ** (bits - 1)
    low, high = x.min(), x.max()
    step = ((high - low) / levels).clamp_min(_MIN_RANGE)
    codes = (torch.round((x - low) / step).clamp_(0, levels) - shift).to(torch.int8)
    return QuantizedInput(codes, step, low + shift * step)


class InferenceActivationQuantizer(ActivationQuantizer):
    """The training-time activation quantizer's values, without its straight-through autograd node
    (a Python-level Function call and a copy at each of the four points of every attention block)."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fake_quantize(x)


def inference_attention_quantizers(bits: int, quantize_values: bool) -> AttentionQuantizers:
    """`AttentionQuantizers` (q, k, v symmetric, probabilities asymmetric) for the runtime."""
    quantizers = AttentionQuantizers(bits, quantize_values)
    for name in ("query", "key", "value", "probs"):
        current = getattr(quantizers, name)
        if current is not None:
            setattr(quantizers, name, InferenceActivationQuantizer(current.bits, current.symmetric))
    return quantizers


class Int8Weight(nn.Module):
    """One quantized matrix as int8 codes (rows, cols) and its scales, unpacked once at load.

    `scale` is a scalar or has one entry per row. With a separate negative scale (PACT) the codes are
    split once into a non-negative part (`codes`, times `scale`) and a non-positive part
    (`codes_neg`, times `scale_neg`): w = codes * scale + codes_neg * scale_neg, two integer
    products instead of a float fallback, at twice the resident bytes.
    """

    def __init__(
        self,
        codes: torch.Tensor,
        scale: torch.Tensor,
        scale_neg: torch.Tensor | None = None,
        bits: int = 8,
        row_sums: bool = False,
    ) -> None:
        super().__init__()
        if codes.dim() != 2 or codes.dtype != torch.int8:
            raise ValueError(f"codes must be a 2-D int8 tensor, got shape {tuple(codes.shape)} dtype {codes.dtype}")
        self.bits = bits
        two_scales = scale_neg is not None
        self.register_buffer("codes", (codes.clamp(min=0) if two_scales else codes).contiguous())
        self.register_buffer("codes_neg", codes.clamp(max=0).contiguous() if two_scales else None)
        self.register_buffer("scale", scale.detach().float().reshape(scale.shape))
        self.register_buffer("scale_neg", None if scale_neg is None else scale_neg.detach().float())
        self.register_buffer("row_sums", None)
        self.register_buffer("row_sums_neg", None)
        if row_sums:
            self.enable_row_sums()

    @property
    def shape(self) -> torch.Size:
        return self.codes.shape

    def enable_row_sums(self) -> None:
        """Precompute sum_j c_ij per row (needed by asymmetric inputs); exact in float32 below 2^24."""
        if self.row_sums is None:
            self.row_sums = self.codes.sum(dim=1, dtype=torch.int32).float()
            if self.codes_neg is not None:
                self.row_sums_neg = self.codes_neg.sum(dim=1, dtype=torch.int32).float()

    def _terms(self) -> list[tuple[torch.Tensor, torch.Tensor, torch.Tensor | None]]:
        terms = [(self.codes, self.scale, self.row_sums)]
        if self.codes_neg is not None:
            terms.append((self.codes_neg, self.scale_neg, self.row_sums_neg))
        return terms

    def matmul(self, x: QuantizedInput) -> torch.Tensor:
        """x_q @ w^T in float32, (rows, out): integer products with `torch._int_mm`, then the scales."""
        out = None
        for codes, scale, row_sums in self._terms():
            product = torch._int_mm(x.codes, codes.T).float() * x.step  # codes.T: column-major view
            if x.offset is not None:
                if row_sums is None:
                    raise RuntimeError("asymmetric input needs row sums: call enable_row_sums() at load")
                product = product + x.offset * row_sums
            term = product * scale  # scalar, or one per output (a per-row weight scale)
            out = term if out is None else out + term
        return out

    def lookup(self, ids: torch.Tensor) -> torch.Tensor:
        """Rows `ids` of w (an embedding lookup), float32, shape ids.shape + (cols,)."""
        out = None
        for codes, scale, _ in self._terms():
            rows = F.embedding(ids, codes).float()
            term = rows * (F.embedding(ids, scale.unsqueeze(1)) if scale.dim() else scale)
            out = term if out is None else out + term
        return out

    def dequantize(self) -> torch.Tensor:
        """The float32 matrix w (for a layer whose input is not quantized)."""
        out = None
        for codes, scale, _ in self._terms():
            term = codes.float() * (scale.unsqueeze(1) if scale.dim() else scale)
            out = term if out is None else out + term
        return out

    def extra_repr(self) -> str:
        scales = "per-row" if self.scale.dim() else "per-matrix"
        split = ", two scales" if self.codes_neg is not None else ""
        return f"{tuple(self.codes.shape)}, bits={self.bits}, {scales} scale{split}"


class LowBitLinear(nn.Module):
    """y = x_q @ (c * s)^T + b with int8 x int8 products (replaces `QuantLinear`).

    `input_bits=None` means the model did not quantize this input: the layer then dequantizes the
    weight on every call (correct, slow; only for models quantized with quantize_activations=False).
    """

    def __init__(
        self,
        weight: Int8Weight,
        bias: torch.Tensor | None,
        input_bits: int | None,
        input_symmetric: bool = True,
    ) -> None:
        super().__init__()
        self.int8_weight = weight
        self.bias = None if bias is None else nn.Parameter(bias, requires_grad=False)
        self.input_bits = input_bits
        self.input_symmetric = input_symmetric
        if input_bits is not None and not input_symmetric:
            weight.enable_row_sums()

    @property
    def in_features(self) -> int:
        return self.int8_weight.shape[1]

    @property
    def out_features(self) -> int:
        return self.int8_weight.shape[0]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.input_bits is None:
            return F.linear(x, self.int8_weight.dequantize().to(x.dtype), self.bias)
        y = self.int8_weight.matmul(quantize_input(x, self.input_bits, self.input_symmetric)).to(x.dtype)
        if self.bias is not None:
            y = y + self.bias
        return y.reshape(*x.shape[:-1], self.out_features)

    def extra_repr(self) -> str:
        kind = "none" if self.input_bits is None else ("symmetric" if self.input_symmetric else "asymmetric")
        return f"in_features={self.in_features}, out_features={self.out_features}, input={kind} {self.input_bits or ''}".rstrip()


class LowBitEmbedding(nn.Module):
    """Rows of the int8 codes times their per-row scale (replaces `QuantEmbedding`).

    Tied embeddings (BART's encoder and decoder `embed_tokens`, GPT-2's LM head) share one
    `Int8Weight`, so the codes are resident once.
    """

    def __init__(self, weight: Int8Weight, padding_idx: int | None = None, embed_scale: float = 1.0) -> None:
        super().__init__()
        self.int8_weight = weight
        self.padding_idx = padding_idx
        self.embed_scale = embed_scale

    num_embeddings = property(lambda self: self.int8_weight.shape[0])  # nn.Embedding's attributes
    embedding_dim = property(lambda self: self.int8_weight.shape[1])

    def forward(self, input_ids: torch.Tensor) -> torch.Tensor:
        out = self.int8_weight.lookup(input_ids)
        return out * self.embed_scale if self.embed_scale != 1.0 else out

    def extra_repr(self) -> str:
        return f"{self.num_embeddings}, {self.embedding_dim}, embed_scale={self.embed_scale}"


__all__ = [
    "InferenceActivationQuantizer",
    "Int8Weight",
    "LowBitEmbedding",
    "LowBitLinear",
    "QuantizedInput",
    "inference_attention_quantizers",
    "quantize_input",
]
