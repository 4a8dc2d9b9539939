"""quantize_model: swap a Transformers model's modules for quantized ones, in place (prepare step)."""

from __future__ import annotations

import torch
from torch import nn
from transformers.pytorch_utils import Conv1D

from .architectures import ArchitectureSpec, architecture_of, matches
from .attention import ATTENTION_IMPLEMENTATION, AttentionQuantizers, register_attention
from .config import QuantConfig
from .layers import QuantEmbedding, QuantLinear, QuantTiedHead
from .quantizers import ActivationQuantizer, WeightQuantizer, weight_quantizer_class


def _weight_quantizer(config: QuantConfig, bits: int, rows: int | None = None, transposed: bool = False) -> WeightQuantizer:
    return weight_quantizer_class(config.method).from_config(bits, config, rows=rows, transposed=transposed)


def _input_quantizer(config: QuantConfig, symmetric: bool = True) -> ActivationQuantizer | None:
    if not config.quantize_activations:
        return None
    return ActivationQuantizer(config.bits.activation, symmetric=symmetric)


def _set_module(model: nn.Module, name: str, module: nn.Module) -> None:
    parent_name, _, child = name.rpartition(".")
    setattr(model.get_submodule(parent_name) if parent_name else model, child, module)


def _quantize_linears(model: nn.Module, spec: ArchitectureSpec, config: QuantConfig) -> None:
    for name, module in list(model.named_modules()):
        if not matches(name, spec.linear_layers) or matches(name, config.modules_to_not_convert):
            continue
        if isinstance(module, Conv1D):
            transposed = True
        elif isinstance(module, nn.Linear):
            transposed = False
        else:
            continue
        quantized = QuantLinear(
            module.weight,
            module.bias,
            _weight_quantizer(config, config.bits.weight, transposed=transposed),
            _input_quantizer(config, symmetric=not matches(name, spec.nonnegative_inputs)),
            transposed=transposed,
        )
        _set_module(model, name, quantized)


def _quantize_embeddings(model: nn.Module, spec: ArchitectureSpec, config: QuantConfig) -> None:
    """Quantize the word embedding row-wise; modules tied to it share its weight and quantizer."""
    embedding = model.get_submodule(spec.word_embedding)
    weight = embedding.weight
    primary = QuantEmbedding(
        weight,
        _weight_quantizer(config, config.bits.embedding, rows=weight.shape[0]),
        padding_idx=embedding.padding_idx,
        embed_scale=float(getattr(embedding, "embed_scale", 1.0)),
    )
    _set_module(model, spec.word_embedding, primary)
    for name, module in list(model.named_modules()):
        if module is primary or getattr(module, "weight", None) is not weight:
            continue
        if isinstance(module, nn.Embedding):
            tied = QuantEmbedding(
                weight,
                None,
                padding_idx=module.padding_idx,
                embed_scale=float(getattr(module, "embed_scale", 1.0)),
                source=primary,
            )
            _set_module(model, name, tied)
        elif isinstance(module, nn.Linear) and matches(name, (spec.lm_head,)):
            _set_module(model, name, QuantTiedHead(primary, _input_quantizer(config), module.bias))
    head = model.get_submodule(spec.lm_head)
    keep_head = not config.quantize_lm_head or matches(spec.lm_head, config.modules_to_not_convert)
    if isinstance(head, nn.Linear) and not keep_head:  # an untied head is an output embedding: row-wise, E bits
        quantized = QuantLinear(
            head.weight,
            head.bias,
            _weight_quantizer(config, config.bits.embedding, rows=head.weight.shape[0]),
            _input_quantizer(config),
        )
        _set_module(model, spec.lm_head, quantized)


def _quantize_attention(model: nn.Module, spec: ArchitectureSpec, config: QuantConfig) -> None:
    if not config.quantize_activations:
        return
    register_attention()
    for module in model.modules():
        if type(module).__name__ in spec.attention_classes:
            module.attention_quantizers = AttentionQuantizers(config.bits.activation, config.quantize_values)
    model.set_attn_implementation(ATTENTION_IMPLEMENTATION)


def quantize_model(model: nn.Module, config: QuantConfig) -> nn.Module:
    """Swap the model's weight matrices, word embedding and attention for quantized ones, in place.

    LayerNorm, biases and position embeddings stay full precision; the word embedding is quantized
    row-wise and a tied LM head uses the quantized embedding. The config is recorded in
    `model.config.quantization_config`. Returns the same model.
    """
    if getattr(model, "quantization_config", None) is not None:
        raise ValueError("this model is already quantized: quantize the full-precision model once")
    spec = architecture_of(model)
    _quantize_linears(model, spec, config)
    _quantize_embeddings(model, spec, config)
    _quantize_attention(model, spec, config)
    model.quantization_config = config
    model.config.quantization_config = config.to_dict()
    return model


def quantized_weight_modules(model: nn.Module) -> dict[str, nn.Module]:
    """The modules that own a weight quantizer (linear layers, the primary word embedding), by name."""
    return {name: m for name, m in model.named_modules() if isinstance(getattr(m, "weight_quantizer", None), WeightQuantizer)}


def quantizer_parameters(model: nn.Module) -> list[nn.Parameter]:
    """Learned quantizer parameters (gamma, PACT's factors, LSQ's step): they get their own learning rate."""
    found: dict[int, nn.Parameter] = {}
    for module in quantized_weight_modules(model).values():
        for parameter in module.weight_quantizer.learnable_parameters():
            found.setdefault(id(parameter), parameter)
    return list(found.values())


def after_optimizer_step(model: nn.Module, optimizer: torch.optim.Optimizer) -> None:
    """Each weight quantizer's hook after an optimizer step (LAQ takes Adam's second moments)."""
    for module in quantized_weight_modules(model).values():
        module.weight_quantizer.after_optimizer_step(module.weight, optimizer)


@torch.no_grad()
def fake_quantized_state(model: nn.Module) -> dict[str, torch.Tensor]:
    """Each quantized module's fake-quantized weight, for inspection and plots."""
    return {name: m.quantized_weight().detach() for name, m in quantized_weight_modules(model).items()}
