"""Tiny quantized models for the export and runtime tests (2 layers, width 32: milliseconds each)."""

from __future__ import annotations

import torch
from tiny_models import tiny_model
from transformers import GPT2DoubleHeadsModel, GPT2LMHeadModel
from transformers.utils import logging as transformers_logging

from quantgpt import QuantConfig, quantize_model
from quantgpt.convert import quantized_weight_modules

transformers_logging.set_verbosity_error()  # tiny vocabularies make the config warn about GPT-2's token ids

VOCAB = 100
PACT_NEG, PACT_POS = 0.03, 0.05  # PACT's 2.5 init would zero every weight of std 0.02; two distinct scales


def tiny_gpt2(vocab: int = VOCAB, double_heads: bool = False, tie: bool = True, init: float = 0.02):
    return tiny_model(
        "tiny", model_class=GPT2DoubleHeadsModel if double_heads else GPT2LMHeadModel, n_positions=64, vocab_size=vocab,
        initializer_range=init, tie_word_embeddings=tie, bos_token_id=0, eos_token_id=0,
    ).eval()


def tiny_bart(vocab: int = VOCAB):
    return tiny_model("tiny-bart", vocab_size=vocab, max_position_embeddings=64, scale_embedding=True).eval()


def quantized(model, method: str = "quantgpt", bits: str = "2-2-8", **options):
    """`model` quantized in place, in eval mode; PACT's clipping factors set to two distinct values."""
    quantize_model(model, QuantConfig(method=method, bits=bits, **options))
    if method == "pact":
        with torch.no_grad():
            for name, parameter in model.named_parameters():
                if name.endswith("alpha_neg"):
                    parameter.fill_(PACT_NEG)
                elif name.endswith("alpha_pos"):
                    parameter.fill_(PACT_POS)
    return model.eval()


def model_inputs(model, batch: int = 2, length: int = 8, seed: int = 1) -> dict[str, torch.Tensor]:
    generator = torch.Generator().manual_seed(seed)
    ids = torch.randint(0, model.config.vocab_size, (batch, length), generator=generator)
    if model.config.is_encoder_decoder:
        return {"input_ids": ids, "decoder_input_ids": ids[:, : length // 2 + 1]}
    if isinstance(model, GPT2DoubleHeadsModel):  # (batch, choices, length), last token classified
        return {"input_ids": ids.unsqueeze(0), "mc_token_ids": torch.full((1, batch), length - 1)}
    return {"input_ids": ids}


@torch.no_grad()
def outputs(model, inputs: dict[str, torch.Tensor]) -> torch.Tensor:
    """The LM logits, and the multiple-choice logits appended for a double-heads model."""
    result = model(**inputs)
    logits = result.logits.reshape(-1)
    mc_logits = getattr(result, "mc_logits", None)
    return logits if mc_logits is None else torch.cat([logits, mc_logits.reshape(-1)])


def relative_errors(got: torch.Tensor, reference: torch.Tensor) -> tuple[float, float]:
    """(max, median) of |got - reference| / max|reference|."""
    scale = reference.abs().max()
    difference = (got - reference).abs() / scale
    return float(difference.max()), float(difference.median())


@torch.no_grad()
def snap_to_float16(model) -> None:
    """Make every stored value of a quantgpt-quantized model exactly representable in fp16.

    The file keeps scales and fp tensors in fp16; after this, storing loses nothing, so the packed
    model must match the fake-quantized one to float32 rounding. Floats are rounded to fp16 values,
    and each gamma is rescaled so that alpha / k (the stored scale) is an fp16 value (Eq. 6).
    """
    for name, parameter in model.named_parameters():
        if ".weight_quantizer." not in f".{name}":
            parameter.copy_(parameter.half().float())
    for module in quantized_weight_modules(model).values():
        quantizer = module.weight_quantizer
        _, scale, _ = quantizer.codes(module.weight)
        quantizer.gamma.mul_(scale.half().float() / scale)
