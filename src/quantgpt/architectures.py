"""What quantize_model needs to know about each architecture, kept to one small table.

Adding a decoder family (OPT, Llama, ...) means adding a row here: which linear layers are
quantized, which of them read a GeLU output (asymmetric input, SPEC section 4), where the word
embedding sits and which attention modules route through the quantized attention function.
"""

from __future__ import annotations

from dataclasses import dataclass

from torch import nn


@dataclass(frozen=True)
class ArchitectureSpec:
    """Module-name suffixes (matched on dotted boundaries) of the parts to quantize."""

    model_classes: tuple[str, ...]
    linear_layers: tuple[str, ...]
    gelu_consumers: tuple[str, ...]
    word_embedding: str
    attention_classes: tuple[str, ...]
    lm_head: str = "lm_head"


ARCHITECTURES: dict[str, ArchitectureSpec] = {
    "gpt2": ArchitectureSpec(
        model_classes=("GPT2LMHeadModel", "GPT2DoubleHeadsModel"),
        linear_layers=("attn.c_attn", "attn.c_proj", "mlp.c_fc", "mlp.c_proj", "multiple_choice_head.summary"),
        gelu_consumers=("mlp.c_proj",),
        word_embedding="transformer.wte",
        attention_classes=("GPT2Attention",),
    ),
    "bart": ArchitectureSpec(
        model_classes=("BartForConditionalGeneration",),
        linear_layers=("q_proj", "k_proj", "v_proj", "out_proj", "fc1", "fc2"),
        gelu_consumers=("fc2",),
        word_embedding="model.shared",
        attention_classes=("BartAttention",),
    ),
}


class UnsupportedArchitectureError(ValueError):
    """The model's class is not in the table above."""


def supported_classes() -> list[str]:
    return sorted(name for spec in ARCHITECTURES.values() for name in spec.model_classes)


def architecture_of(model: nn.Module) -> ArchitectureSpec:
    """The spec for this model, or an error that lists the supported classes."""
    model_type = getattr(getattr(model, "config", None), "model_type", None)
    spec = ARCHITECTURES.get(model_type)
    class_name = type(model).__name__
    if spec is None or class_name not in spec.model_classes:
        raise UnsupportedArchitectureError(
            f"quantgpt cannot quantize {class_name} (model_type={model_type!r}): supported are "
            f"{', '.join(supported_classes())}"
        )
    return spec


def matches(name: str, suffixes: tuple[str, ...]) -> bool:
    """True when the dotted module name ends with one of the suffixes on a '.' boundary."""
    return any(name == s or name.endswith("." + s) for s in suffixes)
