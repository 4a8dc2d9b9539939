"""Model size in the paper's accounting (docs/method.md#size-accounting), from a configuration alone.

Weight matrices of the Transformer layers count at W bits, the word embedding at E bits, and
everything else (position embedding, LayerNorm / RMSNorm, biases) at 32 bits; per-module and
per-row scales are not counted, as in the paper. Tied parameters count once. An untied LM head
(Llama, Qwen2 when untied) counts with the embedding at E bits, as `quantize_model` quantizes it,
or at 32 bits when it is kept full precision (`QuantConfig(quantize_lm_head=False)`). Rotary
position embeddings have no parameters.

Two accountings: "exact" counts each parameter once. "paper" reproduces the paper's Size column,
which (worked back from its figures) counts the LayerNorm and bias parameters twice: once at W bits
with the 123.65 M parameters it calls quantized (all but the position embedding) and once more at
32 bits. For GPT-2 at 8-8-8 that is 121.4 MiB against 121.3 exact: 0.12 M parameters counted twice.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn
from transformers import PretrainedConfig

from .architectures import ARCHITECTURES, UnsupportedArchitectureError, matches
from .config import BitWidths, ConfigError
from .jsonio import dumps_json
from .serialization import model_class_for

MIB = 2**20
ACCOUNTINGS = ("paper", "exact")


@dataclass(frozen=True)
class ParameterCounts:
    """Parameters by how the paper counts them; tied parameters once."""

    weights: int  # Transformer weight matrices, at W bits
    embedding: int  # the word embedding (and an untied LM head), at E bits
    position: int  # position embeddings, full precision
    other: int  # LayerNorm and biases, full precision
    head: int = 0  # an untied LM head kept full precision (quantize_lm_head=False)

    @property
    def total(self) -> int:
        return self.weights + self.embedding + self.position + self.other + self.head


@dataclass(frozen=True)
class SizeReport:
    fp32_mib: float
    quantized_mib: float
    ratio: float
    counts: ParameterCounts

    def to_json(self) -> str:
        return dumps_json({"fp32_mib": self.fp32_mib, "quantized_mib": self.quantized_mib, "ratio": self.ratio})


def count_parameters(config: PretrainedConfig, quantize_lm_head: bool = True) -> ParameterCounts:
    """Count the parameters of the architecture built on the meta device (no memory, no weights)."""
    spec = ARCHITECTURES.get(config.model_type)
    if spec is None:
        raise UnsupportedArchitectureError(
            f"no size accounting for model_type={config.model_type!r}: supported are {', '.join(ARCHITECTURES)}"
        )
    with torch.device("meta"):
        model = model_class_for(config)(config)
    word_embedding = model.get_submodule(spec.word_embedding).weight
    seen: set[int] = set()
    counts = dict(weights=0, embedding=0, position=0, other=0, head=0)
    for module_name, module in model.named_modules():
        for param_name, param in module.named_parameters(recurse=False):
            if id(param) in seen:
                continue
            seen.add(id(param))
            if param is word_embedding:
                counts["embedding"] += param.numel()
            elif matches(module_name, (spec.lm_head,)) and param_name == "weight":
                counts["embedding" if quantize_lm_head else "head"] += param.numel()
            elif isinstance(module, nn.Embedding):
                counts["position"] += param.numel()
            elif param_name == "weight" and matches(module_name, spec.linear_layers):
                counts["weights"] += param.numel()
            else:
                counts["other"] += param.numel()
    return ParameterCounts(**counts)


def model_size(
    config: PretrainedConfig, bits: str | BitWidths, accounting: str = "paper", quantize_lm_head: bool = True
) -> SizeReport:
    """Sizes in MiB: fp32, and quantized at `bits` in the paper's (default) or the exact accounting.
    `quantize_lm_head=False` counts an untied LM head at 32 bits (QuantConfig's option of that name)."""
    if accounting not in ACCOUNTINGS:
        raise ConfigError(f"accounting={accounting!r} is not allowed: use one of {', '.join(ACCOUNTINGS)}")
    bits = BitWidths.parse(bits)
    counts = count_parameters(config, quantize_lm_head)
    fp32 = counts.total * 4 / MIB
    quantized_bits = counts.weights * bits.weight + counts.embedding * bits.embedding
    quantized_bits += (counts.position + counts.other + counts.head) * 32
    if accounting == "paper":
        quantized_bits += counts.other * bits.weight
    quantized = quantized_bits / 8 / MIB
    return SizeReport(round(fp32, 3), round(quantized, 3), round(fp32 / quantized, 3), counts)
