"""What quantize_model needs to know about each architecture, kept to one small table.

Adding a decoder family means adding a row here: which linear layers are quantized, which of them
read the output of a non-negative activation (GeLU, ReLU: an asymmetric input, docs/method.md#activation-quantizers),
where the word embedding sits and which attention modules route through the quantized attention
function. docs/method.md ("Where the quantizers go") gives the placement for every family below.
"""

from __future__ import annotations

from dataclasses import dataclass

from torch import nn

from .errors import QuantgptError


@dataclass(frozen=True)
class ArchitectureSpec:
    """Module-name suffixes (matched on dotted boundaries) of the parts to quantize."""

    model_classes: tuple[str, ...]
    linear_layers: tuple[str, ...]
    nonnegative_inputs: tuple[str, ...]  # linear layers whose input follows GeLU / ReLU: asymmetric
    word_embedding: str
    attention_classes: tuple[str, ...]
    lm_head: str = "lm_head"


_LLAMA_LINEARS = (
    "self_attn.q_proj", "self_attn.k_proj", "self_attn.v_proj", "self_attn.o_proj",
    "mlp.gate_proj", "mlp.up_proj", "mlp.down_proj",
)

ARCHITECTURES: dict[str, ArchitectureSpec] = {
    "gpt2": ArchitectureSpec(
        model_classes=("GPT2LMHeadModel", "GPT2DoubleHeadsModel"),
        linear_layers=("attn.c_attn", "attn.c_proj", "mlp.c_fc", "mlp.c_proj", "multiple_choice_head.summary"),
        nonnegative_inputs=("mlp.c_proj",),
        word_embedding="transformer.wte",
        attention_classes=("GPT2Attention",),
    ),
    "bart": ArchitectureSpec(
        model_classes=("BartForConditionalGeneration",),
        linear_layers=("q_proj", "k_proj", "v_proj", "out_proj", "fc1", "fc2"),
        nonnegative_inputs=("fc2",),
        word_embedding="model.shared",
        attention_classes=("BartAttention",),
    ),
    # Llama-family decoders: SwiGLU's product act(gate) * up is signed, so every input is symmetric.
    **{
        family: ArchitectureSpec(
            model_classes=(f"{prefix}ForCausalLM",), linear_layers=_LLAMA_LINEARS, nonnegative_inputs=(),
            word_embedding="model.embed_tokens", attention_classes=(f"{prefix}Attention",),
        )
        for family, prefix in (("llama", "Llama"), ("mistral", "Mistral"), ("qwen2", "Qwen2"))
    },
    # OPT: fc2 reads the ReLU output; project_in / project_out exist when word_embed_proj_dim differs.
    "opt": ArchitectureSpec(
        model_classes=("OPTForCausalLM",),
        linear_layers=("q_proj", "k_proj", "v_proj", "out_proj", "fc1", "fc2", "project_in", "project_out"),
        nonnegative_inputs=("fc2",),
        word_embedding="model.decoder.embed_tokens",
        attention_classes=("OPTAttention",),
    ),
}


class UnsupportedArchitectureError(QuantgptError, ValueError):
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
