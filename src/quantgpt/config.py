"""Bit widths (`W-E-A`) and the quantization config that `quantize_model` takes.

Both validate when built: a bad value fails at once with a message naming the field, the value and
what is allowed (docs/method.md#bit-widths).
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any

from .errors import ConfigError
from .quantizers import weight_methods
from .quantizers.dynamic_scaling import GAMMA_GRADIENTS
from .quantizers.pact import PACT_INITS
from .settings import setting, validate
from .validators import boolean, integer, one_of, strings

MIN_BITS = 2
MAX_BITS = 8

ACTIVATION_RANGES = ("minmax",)


@dataclass(frozen=True)
class BitWidths:
    """Bits for Transformer weights, the word embedding and activations (docs/method.md#bit-widths)."""

    weight: int
    embedding: int
    activation: int

    def __post_init__(self) -> None:
        for name in ("weight", "embedding", "activation"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or not MIN_BITS <= value <= MAX_BITS:
                raise ConfigError(
                    f"bits.{name}={value!r} is not allowed: use an integer from {MIN_BITS} to {MAX_BITS}"
                )

    @classmethod
    def parse(cls, spec: "str | BitWidths") -> "BitWidths":
        """Parse `"2-2-8"` (weights-embedding-activations) into BitWidths."""
        if isinstance(spec, BitWidths):
            return spec
        parts = str(spec).strip().split("-")
        if len(parts) != 3:
            raise ConfigError(
                f"bits={spec!r} is not allowed: write W-E-A, three integers from {MIN_BITS} to {MAX_BITS} "
                "for weights, word embedding and activations, e.g. 2-2-8"
            )
        values = []
        for name, part in zip(("weight", "embedding", "activation"), parts):
            try:
                values.append(int(part))
            except ValueError:
                raise ConfigError(
                    f"bits.{name}={part!r} (in {spec!r}) is not allowed: use an integer from {MIN_BITS} to {MAX_BITS}"
                ) from None
        return cls(*values)

    def __str__(self) -> str:
        return f"{self.weight}-{self.embedding}-{self.activation}"


@dataclass(frozen=True)
class QuantConfig:
    """How to quantize a model: the method for weights and embedding, bit widths, activation settings.

    `method` picks the weight/embedding quantizer among the registered ones (`quantizers`):
    "quantgpt" (module-wise dynamic scaling, Eq. 6-7), "pact", "lsq", "laq" (the paper's
    baselines), "rtn" (round-to-nearest, post-training) or "torchao" (torchao's fake quantizer).
    `quantize_activations=False` keeps activations in full precision (for ablations and probes).
    `quantize_values` also quantizes attention values (a matrix-multiplication input; docs/method.md#activation-quantizers).
    `masked_ste` zeroes the weight gradient outside the clipping range (docs/method.md#weight-quantizer; a choice).
    `pact_init` starts PACT's clipping factors at the paper's 2.5 ("paper") or at the weight's own
    range ("weights": max(w) and max(-w), an option beyond the paper; see `PACTQuantizer`).
    `gamma_gradient` estimates QuantGPT's gamma gradient by Eq. 7 ("paper") or by PACT's rule
    ("pact": only clipped weights count), the paper's Table 7 ablation.
    `modules_to_not_convert` lists module-name suffixes left in full precision.
    `quantize_lm_head` quantizes an untied LM head row-wise at the embedding's bits, as the paper
    quantizes its output layer with the embedding; False keeps it full precision. A tied head is the
    embedding itself and is quantized with it either way.
    """

    method: str = setting("quantgpt", one_of(weight_methods), "weight quantizer")
    bits: BitWidths = setting(
        factory=lambda: BitWidths(2, 2, 8), parse=str, help="W-E-A bit widths: weights, word embedding, activations"
    )
    quantize_activations: bool = setting(True, boolean(), "8-bit activations")
    quantize_values: bool = setting(True, boolean(), "quantize attention values too", cli=False)
    activation_range: str = setting("minmax", one_of(ACTIVATION_RANGES), cli=False)
    masked_ste: bool = setting(False, boolean(), cli=False)
    laq_iterations: int = setting(2, integer(1), cli=False)
    pact_init: str = setting("paper", one_of(PACT_INITS), "PACT's clip factors start at the paper's 2.5, or at the weights' range")
    gamma_gradient: str = setting("paper", one_of(GAMMA_GRADIENTS), "QuantGPT's gamma gradient: Eq. 7, or PACT's (Table 7's ablation)")
    modules_to_not_convert: tuple[str, ...] = setting((), strings(), cli=False)
    quantize_lm_head: bool = setting(True, boolean(), cli=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "bits", BitWidths.parse(self.bits))
        validate(self)

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready dict, as stored under `quantization_config` in config.json."""
        data = dataclasses.asdict(self)
        data["bits"] = str(self.bits)
        data["modules_to_not_convert"] = list(self.modules_to_not_convert)
        data["quant_method"] = "quantgpt"
        return data

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> "QuantConfig":
        if not isinstance(data, dict):
            raise ConfigError(f"quantization_config={data!r} is not allowed: use a mapping of QuantConfig fields")
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = set(data) - known - {"quant_method"}
        if unknown:
            raise ConfigError(f"quantization_config has unknown keys {sorted(unknown)}: allowed are {sorted(known)}")
        return cls(**{k: v for k, v in data.items() if k in known})
