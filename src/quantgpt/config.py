"""Bit widths (`W-E-A`) and the quantization config that `quantize_model` takes.

Both validate when built: a bad value fails at once with a message naming the field, the value and
what is allowed (SPEC section 1).
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any

from .errors import QuantgptError

MIN_BITS = 2
MAX_BITS = 8

WEIGHT_METHODS = ("quantgpt", "pact", "lsq", "laq", "rtn")
ACTIVATION_RANGES = ("minmax",)


class ConfigError(QuantgptError, ValueError):
    """A configuration value is out of range; the message names the field, the value and what is allowed."""


@dataclass(frozen=True)
class BitWidths:
    """Bits for Transformer weights, the word embedding and activations (SPEC section 1)."""

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

    `method` picks the weight/embedding quantizer: "quantgpt" (module-wise dynamic scaling, Eq. 6-7),
    "pact", "lsq", "laq" (the paper's baselines) or "rtn" (round-to-nearest, post-training).
    `quantize_activations=False` keeps activations in full precision (for ablations and probes).
    `quantize_values` also quantizes attention values (a matrix-multiplication input; SPEC section 4).
    `masked_ste` zeroes the weight gradient outside the clipping range (SPEC section 2, a choice).
    `modules_to_not_convert` lists module-name suffixes left in full precision.
    `quantize_lm_head` quantizes an untied LM head row-wise at the embedding's bits, as the paper
    quantizes its output layer with the embedding; False keeps it full precision. A tied head is the
    embedding itself and is quantized with it either way.
    """

    method: str = "quantgpt"
    bits: BitWidths = field(default_factory=lambda: BitWidths(2, 2, 8))
    quantize_activations: bool = True
    quantize_values: bool = True
    activation_range: str = "minmax"
    masked_ste: bool = False
    laq_iterations: int = 2
    modules_to_not_convert: tuple[str, ...] = ()
    quantize_lm_head: bool = True

    def __post_init__(self) -> None:
        object.__setattr__(self, "bits", BitWidths.parse(self.bits))
        names = self.modules_to_not_convert
        if not isinstance(names, (list, tuple)) or not all(isinstance(name, str) for name in names):
            raise ConfigError(f"modules_to_not_convert={names!r} is not allowed: use a list of module-name suffixes")
        object.__setattr__(self, "modules_to_not_convert", tuple(names))
        for name in ("quantize_activations", "quantize_values", "masked_ste"):
            if not isinstance(getattr(self, name), bool):
                raise ConfigError(f"{name}={getattr(self, name)!r} is not allowed: use True or False")
        if self.method not in WEIGHT_METHODS:
            raise ConfigError(f"method={self.method!r} is not allowed: use one of {', '.join(WEIGHT_METHODS)}")
        if self.activation_range not in ACTIVATION_RANGES:
            raise ConfigError(
                f"activation_range={self.activation_range!r} is not allowed: use one of {', '.join(ACTIVATION_RANGES)}"
            )
        if isinstance(self.laq_iterations, bool) or not isinstance(self.laq_iterations, int) or self.laq_iterations < 1:
            raise ConfigError(f"laq_iterations={self.laq_iterations!r} is not allowed: use an integer >= 1")
        if not isinstance(self.quantize_lm_head, bool):
            raise ConfigError(f"quantize_lm_head={self.quantize_lm_head!r} is not allowed: use True or False")

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
