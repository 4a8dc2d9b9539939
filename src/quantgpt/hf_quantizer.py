"""quantgpt as a Transformers quantization method: `from_pretrained` gives the quantized model back.

A directory written by `save_pretrained` after `quantize_model` carries `quantization_config` with
`quant_method: "quantgpt"` in its config.json. Importing quantgpt registers the config class and the
quantizer below with Transformers (`register_quantization_config`, `register_quantizer`), so
`AutoModelForCausalLM.from_pretrained(dir)` (or any model class's `from_pretrained`) builds the
architecture, swaps in the quantized modules with `quantize_model` before the weights load, and
loads every tensor, scales included. `load_quantized` is this same path.

Passing `quantization_config=QuantgptQuantizationConfig(method=..., bits=...)` to `from_pretrained` of
a full-precision model quantizes it after its weights load (the prepare step of QAT).
"""

from __future__ import annotations

from typing import Any

from torch import nn
from transformers.quantizers.auto import (
    AUTO_QUANTIZATION_CONFIG_MAPPING,
    AUTO_QUANTIZER_MAPPING,
    register_quantization_config,
    register_quantizer,
)
from transformers.quantizers.base import HfQuantizer
from transformers.utils.quantization_config import QuantizationConfigMixin

from .config import QuantConfig
from .convert import quantize_model
from .schemas import QUANT_METHOD, quant_config_from_saved


class QuantgptQuantizationConfig(QuantizationConfigMixin):
    """A `QuantConfig` in the form Transformers' quantizers take; its attributes are the fields of
    `QuantConfig.to_dict()` (what config.json stores), validated when built."""

    def __init__(self, quant_config: QuantConfig | None = None, **fields: Any) -> None:
        if quant_config is None:
            quant_config = QuantConfig.from_dict(fields)
        self.__dict__.update(quant_config.to_dict())

    @classmethod
    def from_dict(cls, config_dict: Any, return_unused_kwargs: bool = False, **kwargs: Any) -> Any:
        """The config Transformers reads from a saved config.json: complete, or refused naming the
        field (a missing field is never filled with its default, which would load another model)."""
        quant_config_from_saved(config_dict)
        return super().from_dict(config_dict, return_unused_kwargs, **kwargs)

    def to_quant_config(self) -> QuantConfig:
        return QuantConfig.from_dict(dict(vars(self)))

    def to_dict(self) -> dict[str, Any]:
        return self.to_quant_config().to_dict()


def _tie_like_the_checkpoint(model: nn.Module) -> None:
    """Share tied Parameters (LM head and word embedding, BART's three embeddings) now.

    `from_pretrained` builds the skeleton with tying switched off and ties after loading, but
    `quantize_model` must see the tie to give a tied head the embedding's quantizer (one set of
    scales, saved once), as it did when the model was saved.
    """
    for target, source in model.get_expanded_tied_weights_keys(all_submodels=True).items():
        parent_name, _, name = target.rpartition(".")
        parent = model.get_submodule(parent_name) if parent_name else model
        setattr(parent, name, model.get_parameter(source))


class QuantgptHfQuantizer(HfQuantizer):
    """Fake quantization (QAT's prepare step) inside `from_pretrained`: before the weights load for a
    saved quantized model, after they load when quantizing a full-precision one."""

    requires_calibration = False
    quantization_config: QuantgptQuantizationConfig

    def _process_model_before_weight_loading(self, model: nn.Module, **kwargs: Any) -> nn.Module:
        if self.pre_quantized:
            _tie_like_the_checkpoint(model)
            quantize_model(model, self.quantization_config.to_quant_config())
            model.config.quantization_config = self.quantization_config
        return model

    def _process_model_after_weight_loading(self, model: nn.Module, **kwargs: Any) -> nn.Module:
        if not self.pre_quantized:  # the quantizers initialize from the loaded full-precision weights
            quantize_model(model, self.quantization_config.to_quant_config())
            model.config.quantization_config = self.quantization_config
        return model

    def is_serializable(self) -> bool:
        return True

    @property
    def is_trainable(self) -> bool:
        return True

    @property
    def is_qat_trainable(self) -> bool:
        return True


def register_with_transformers() -> None:
    """Make `quant_method: "quantgpt"` known to Transformers (idempotent; `import quantgpt` calls it)."""
    if QUANT_METHOD not in AUTO_QUANTIZATION_CONFIG_MAPPING:
        register_quantization_config(QUANT_METHOD)(QuantgptQuantizationConfig)
    if QUANT_METHOD not in AUTO_QUANTIZER_MAPPING:
        register_quantizer(QUANT_METHOD)(QuantgptHfQuantizer)


register_with_transformers()
