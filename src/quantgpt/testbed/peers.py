"""Other libraries' quantizers the testbed runs beside the paper's methods (`quantgpt run --peers`).

Each is a registered weight quantizer (`quantgpt.quantizers`), trained by the same loop and loss as
the baselines; only its name here says it comes from elsewhere.
"""

from ..quantizers.torchao import TORCHAO_REQUIREMENT, torchao_available

PEERS = ("torchao",)

__all__ = ["PEERS", "TORCHAO_REQUIREMENT", "torchao_available"]
