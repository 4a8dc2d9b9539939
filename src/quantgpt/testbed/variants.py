"""The rows the testbed can run: each registered weight quantizer as it is, plus named variants of
them (a setting changed, the contrastive loss dropped, or no training at all).

A variant is what `--methods` names. The untrained rows are the paper's Figure 1 regime
(quantization without training), which tells how much a QAT method has to recover on this teacher;
the others are the paper's Table 7 ablations and PACT at its best (docs/method.md#baselines).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from ..quantizers import display_name, weight_methods


@dataclass(frozen=True)
class Variant:
    """`method` with the `QuantConfig` settings in `quantization` changed; `contrastive` False trains
    QuantGPT with logit distillation alone (None: the method's own objective); `trained` False
    evaluates the prepared student without any training."""

    method: str
    label: str
    quantization: dict[str, Any] = field(default_factory=dict)
    contrastive: bool | None = None
    trained: bool = True


EXTRA_VARIANTS: dict[str, Variant] = {
    "rtn-untrained": Variant("rtn", "RTN, no training (max-abs clip)", trained=False),
    "quantgpt-untrained": Variant("quantgpt", "QuantGPT quantizer at gamma = 1, no training", trained=False),
    "pact-weights": Variant("pact", "PACT, clip initialized from the weights", {"pact_init": "weights"}),
    "quantgpt-logit": Variant("quantgpt", "QuantGPT without contrastive loss", contrastive=False),
    "quantgpt-pact-gradient": Variant(
        "quantgpt", "QuantGPT with PACT's gradient, no contrastive loss", {"gamma_gradient": "pact"}, contrastive=False
    ),
}


def variant_names() -> tuple[str, ...]:
    """What `--methods` accepts: every registered method, then the named variants."""
    return weight_methods() + tuple(EXTRA_VARIANTS)


def variant(name: str) -> Variant:
    """The variant called `name`; a registered method is its own variant, unchanged."""
    if name in EXTRA_VARIANTS:
        return EXTRA_VARIANTS[name]
    return Variant(name, display_name(name))
