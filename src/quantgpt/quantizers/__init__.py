"""Weight quantizers behind one interface (`WeightQuantizer`), and activation quantizers."""

from .activation import ActivationQuantizer
from .base import WeightQuantizer, grid_levels, round_to_grid
from .dynamic_scaling import DynamicScalingQuantizer
from .laq import LAQQuantizer
from .lsq import LSQQuantizer
from .pact import PACTQuantizer
from .rtn import RoundToNearestQuantizer

WEIGHT_QUANTIZERS: dict[str, type[WeightQuantizer]] = {
    "quantgpt": DynamicScalingQuantizer,
    "pact": PACTQuantizer,
    "lsq": LSQQuantizer,
    "laq": LAQQuantizer,
    "rtn": RoundToNearestQuantizer,
}

__all__ = [
    "ActivationQuantizer",
    "DynamicScalingQuantizer",
    "LAQQuantizer",
    "LSQQuantizer",
    "PACTQuantizer",
    "RoundToNearestQuantizer",
    "WEIGHT_QUANTIZERS",
    "WeightQuantizer",
    "grid_levels",
    "round_to_grid",
]
