"""quantgpt: quantization-aware training with token-level contrastive distillation (ACL 2022).

The public API: `QuantConfig` and `BitWidths` describe a quantization, `quantize_model` prepares a
Transformers model in place (fake quantization for training), `model.save_pretrained(dir)` saves it
and `load_quantized(dir)` brings it back, as does Transformers' own `from_pretrained(dir)` once
quantgpt is imported (`QuantgptQuantizationConfig` is the quantization method it registers);
`export_packed` writes the packed low-bit file (ternary at 1.6 bits a weight) and `load_packed` runs
it with integer matrix products; `model_size` gives the paper's size accounting.
"""

from .config import BitWidths, ConfigError, QuantConfig
from .convert import quantize_model, quantizer_parameters
from .export import export_packed, load_packed
from .hf_quantizer import QuantgptQuantizationConfig  # registers quant_method "quantgpt" with Transformers
from .serialization import CheckpointError, load_quantized
from .model_configs import load_model_config
from .size import model_size

__version__ = "0.1.0"

__all__ = [
    "BitWidths",
    "CheckpointError",
    "ConfigError",
    "export_packed",
    "load_packed",
    "QuantConfig",
    "QuantgptQuantizationConfig",
    "load_model_config",
    "load_quantized",
    "model_size",
    "quantize_model",
    "quantizer_parameters",
]
