"""Weight quantizers behind one interface (`WeightQuantizer`), registered by method name, and activation quantizers.

A new method is a module with a `WeightQuantizer` subclass and one `register_weight_quantizer`
line below (or in the user's own code, before the `QuantConfig` that names it is built).
"""

from __future__ import annotations

from ..errors import ConfigError
from .activation import ActivationQuantizer
from .base import WeightQuantizer, grid_levels, round_to_grid
from .dynamic_scaling import DynamicScalingQuantizer
from .laq import LAQQuantizer
from .lsq import LSQQuantizer
from .pact import PACTQuantizer
from .rtn import RoundToNearestQuantizer
from .torchao import TorchAOWeightQuantizer

WEIGHT_QUANTIZERS: dict[str, type[WeightQuantizer]] = {}


def register_weight_quantizer(name: str, cls: type[WeightQuantizer]) -> type[WeightQuantizer]:
    """Make `cls` the weight quantizer of `QuantConfig(method=name)` (and of `--method name`)."""
    if not (isinstance(cls, type) and issubclass(cls, WeightQuantizer)):
        raise TypeError(f"{cls!r} is not a WeightQuantizer subclass")
    if name in WEIGHT_QUANTIZERS and WEIGHT_QUANTIZERS[name] is not cls:
        raise ValueError(f"a weight quantizer is already registered as {name!r}: {WEIGHT_QUANTIZERS[name].__name__}")
    WEIGHT_QUANTIZERS[name] = cls
    return cls


def weight_methods() -> tuple[str, ...]:
    """The registered method names, in registration order."""
    return tuple(WEIGHT_QUANTIZERS)


def weight_quantizer_class(method: str) -> type[WeightQuantizer]:
    if method not in WEIGHT_QUANTIZERS:
        raise ConfigError(f"method={method!r} is not allowed: use one of {', '.join(WEIGHT_QUANTIZERS)}")
    return WEIGHT_QUANTIZERS[method]


def display_name(method: str) -> str:
    """The method's name in tables ("QuantGPT"); an unregistered name as it is."""
    cls = WEIGHT_QUANTIZERS.get(method)
    return (cls.display_name or method) if cls is not None else method


register_weight_quantizer("quantgpt", DynamicScalingQuantizer)
register_weight_quantizer("pact", PACTQuantizer)
register_weight_quantizer("lsq", LSQQuantizer)
register_weight_quantizer("laq", LAQQuantizer)
register_weight_quantizer("rtn", RoundToNearestQuantizer)
register_weight_quantizer("torchao", TorchAOWeightQuantizer)

__all__ = [
    "ActivationQuantizer",
    "DynamicScalingQuantizer",
    "LAQQuantizer",
    "LSQQuantizer",
    "PACTQuantizer",
    "RoundToNearestQuantizer",
    "TorchAOWeightQuantizer",
    "WEIGHT_QUANTIZERS",
    "WeightQuantizer",
    "display_name",
    "grid_levels",
    "register_weight_quantizer",
    "round_to_grid",
    "weight_methods",
    "weight_quantizer_class",
]
