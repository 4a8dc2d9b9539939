"""Llama-family (Llama, Mistral, Qwen2) and OPT decoders, whole-model, at 2-2-8, 4-4-8 and 8-8-8:
where the quantizers sit (docs/method.md#where-the-quantizers-go), gradients, the grids, closeness at 8-8-8,
the save_pretrained round-trip, and a few steps of QAT with the contrastive loss."""

from __future__ import annotations

import pytest
import torch
from decoder_models import DECODERS, DECODERS_AND_MISTRAL, VOCAB, tiny_llama
from torch import nn
from transformers import LlamaModel

from quantgpt import QuantConfig, attention, load_quantized, quantize_model, quantizer_parameters
from quantgpt.architectures import UnsupportedArchitectureError
from quantgpt.convert import quantized_weight_modules
from quantgpt.layers import QuantEmbedding, QuantLinear, QuantTiedHead

METHODS = ["quantgpt", "pact", "lsq", "laq"]
BITS = ["2-2-8", "4-4-8", "8-8-8"]
LINEARS = {
    "llama": {"q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"},
    "opt": {"q_proj", "k_proj", "v_proj", "out_proj", "fc1", "fc2"},
}
LINEARS["qwen2"] = LINEARS["mistral"] = LINEARS["llama"]


def _pact_clip_inside(model) -> None:
    """PACT's 2.5 init clips no weight of this scale (a zero gradient): move the clip inside the range."""
    with torch.no_grad():
        for module in quantized_weight_modules(model).values():
            module.weight_quantizer.alpha_neg.fill_(float(module.weight.abs().mean()))
            module.weight_quantizer.alpha_pos.fill_(float(module.weight.abs().mean()))


@pytest.mark.parametrize("family", DECODERS_AND_MISTRAL)
@pytest.mark.parametrize("bits", BITS)
@pytest.mark.parametrize("method", METHODS)
def test_quantized_decoder_trains_and_stays_on_the_grid(family, bits, method):
    model = DECODERS_AND_MISTRAL[family]()
    quantize_model(model, QuantConfig(method=method, bits=bits))
    if method == "pact":
        _pact_clip_inside(model)
    out = model(input_ids=torch.randint(3, VOCAB, (3, 12)))
    assert torch.isfinite(out.logits).all()
    out.logits.float().pow(2).mean().backward()

    weight_bits, embedding_bits = int(bits[0]), int(bits[2])
    for name, module in quantized_weight_modules(model).items():
        w_q = module.quantized_weight().detach()
        if module.weight_quantizer.per_row:  # the embedding and an untied head: E bits, one scale a row
            assert module.weight_quantizer.bits == embedding_bits, name
            assert max(row.unique().numel() for row in w_q) <= 2**embedding_bits - 1, name
        else:
            assert module.weight_quantizer.bits == weight_bits, name
            levels = w_q.unique().numel()
            assert levels == 3 if weight_bits == 2 else levels <= 2**weight_bits - 1, (name, levels)
    for param in quantizer_parameters(model):
        assert param.grad is not None and torch.isfinite(param.grad).all() and param.grad.abs().sum() > 0
    per_module = 0 if method == "laq" else (2 if method == "pact" else 1)
    assert len(quantizer_parameters(model)) == per_module * len(quantized_weight_modules(model))


@pytest.mark.parametrize("family", DECODERS_AND_MISTRAL)
def test_quantizers_sit_where_the_placement_rules_say(family):
    model = DECODERS_AND_MISTRAL[family]()
    embedding = model.get_input_embeddings()
    quantize_model(model, QuantConfig(bits="2-2-8"))
    # Every linear layer of the decoder is quantized (none is left as a plain nn.Linear) ...
    assert not [name for name, m in model.named_modules() if type(m) is nn.Linear]
    quantized = {name.rsplit(".", 1)[-1] for name, m in model.named_modules() if isinstance(m, QuantLinear) and name != "lm_head"}
    assert quantized == LINEARS[family]
    # ... its input symmetric, except fc2's, which follows OPT's ReLU.
    for name, module in model.named_modules():
        if isinstance(module, (QuantLinear, QuantTiedHead)):
            assert module.input_quantizer.bits == 8
            assert module.input_quantizer.symmetric == (not name.endswith("fc2")), name
    # Norms, biases and OPT's learned positions stay full precision.
    for name, module in model.named_modules():
        if "Norm" in type(module).__name__:
            assert not any("quantizer" in n for n, _ in module.named_modules()), name
    if family == "opt":
        assert type(model.model.decoder.embed_positions).__name__ == "OPTLearnedPositionalEmbedding"
    # The word embedding row-wise; the head tied (Qwen2, OPT) or quantized row-wise at E bits (Llama, Mistral).
    assert isinstance(model.get_input_embeddings(), QuantEmbedding) and model.get_input_embeddings().weight is embedding.weight
    if model.config.tie_word_embeddings:
        assert isinstance(model.lm_head, QuantTiedHead) and model.lm_head.weight is embedding.weight
    else:
        assert isinstance(model.lm_head, QuantLinear) and model.lm_head.weight_quantizer.per_row
    # Queries and keys symmetric, probabilities asymmetric, through the registered attention function.
    attention_modules = [m for m in model.modules() if type(m).__name__.endswith("Attention")]
    assert len(attention_modules) == 2
    for module in attention_modules:
        q = module.attention_quantizers
        assert q.query.symmetric and q.key.symmetric and q.value.symmetric and not q.probs.symmetric
    assert model.config._attn_implementation == "quantgpt"


def test_an_untied_head_can_stay_full_precision():
    model = tiny_llama()
    quantize_model(model, QuantConfig(bits="2-2-8", quantize_lm_head=False))
    assert type(model.lm_head) is nn.Linear
    assert "lm_head" not in quantized_weight_modules(model)
    assert QuantConfig.from_dict(model.config.quantization_config).quantize_lm_head is False


@pytest.mark.parametrize("family", ["llama", "qwen2", "mistral"])
def test_attention_sees_rotated_queries_and_unrepeated_grouped_keys(family, monkeypatch):
    """Transformers calls the attention function after RoPE, with 2 key/value heads for 4 query heads:
    the quantizers act on exactly those tensors and the function repeats the key/value heads itself."""
    from transformers.models.llama.modeling_llama import apply_rotary_pos_emb

    model = DECODERS_AND_MISTRAL[family]().eval()
    quantize_model(model, QuantConfig(bits="8-8-8"))
    calls = []
    original = attention.quantized_attention_forward

    def spy(module, query, key, value, *args, **kwargs):
        calls.append((module, query, key))
        return original(module, query, key, value, *args, **kwargs)

    monkeypatch.setattr(attention, "quantized_attention_forward", spy)
    attention.register_attention()
    ids = torch.randint(3, VOCAB, (2, 9))
    with torch.no_grad():
        model(input_ids=ids)
        layer = model.model.layers[0]
        hidden = layer.input_layernorm(model.model.embed_tokens(ids))
        q = layer.self_attn.q_proj(hidden).view(2, 9, -1, 8).transpose(1, 2)
        k = layer.self_attn.k_proj(hidden).view(2, 9, -1, 8).transpose(1, 2)
        cos, sin = model.model.rotary_emb(hidden, torch.arange(9).unsqueeze(0))
        q, k = apply_rotary_pos_emb(q, k, cos, sin)
    assert len(calls) == 2
    module, query, key = calls[0]
    assert module is layer.self_attn and query.shape[1] == 4 and key.shape[1] == 2
    torch.testing.assert_close(query, q)
    torch.testing.assert_close(key, k)


def test_grouped_query_attention_matches_transformers_eager():
    """Without quantizers the function is Transformers' eager attention, repeat_kv included."""
    from transformers.models.llama.modeling_llama import eager_attention_forward

    module = tiny_llama().model.layers[0].self_attn.eval()
    query, key, value = torch.randn(2, 4, 7, 8), torch.randn(2, 2, 7, 8), torch.randn(2, 2, 7, 8)
    mask = torch.triu(torch.full((7, 7), float("-inf")), 1).expand(2, 1, 7, 7)
    expected, expected_probs = eager_attention_forward(module, query, key, value, mask, scaling=8**-0.5)
    got, probs = attention.quantized_attention_forward(module, query, key, value, mask, scaling=8**-0.5)
    torch.testing.assert_close(got, expected)
    torch.testing.assert_close(probs, expected_probs)
    # Per-tensor min-max quantization commutes with repeating heads: quantizing before repeat_kv is the same.
    quantizer = attention.AttentionQuantizers(8).key
    torch.testing.assert_close(attention._repeat_kv(quantizer(key), 2), quantizer(attention._repeat_kv(key, 2)))


@pytest.mark.parametrize("family", DECODERS_AND_MISTRAL)
@pytest.mark.parametrize("method", ["rtn", "lsq", "laq", "quantgpt"])
def test_8_8_8_logits_stay_close_to_full_precision(family, method):
    model = DECODERS_AND_MISTRAL[family]().eval()
    ids = torch.randint(3, VOCAB, (2, 10))
    with torch.no_grad():
        reference = model(input_ids=ids).logits
    quantize_model(model, QuantConfig(method=method, bits="8-8-8"))
    # Set the learned scales as a trained 8-bit model has them: the clip covers every weight. QuantGPT's
    # gamma = 1 clips at mean|w|; LSQ's initial step 2 mean|w| / sqrt(127) is 5x coarser than max|w| / 127
    # (6% logit error on these models). OPT's padding row is zero: its gamma stays 1.
    with torch.no_grad():
        for module in quantized_weight_modules(model).values():
            quantizer, w = module.weight_quantizer, module.weight.abs()
            peak, mean = (w.amax(1, keepdim=True), w.mean(1, keepdim=True)) if quantizer.per_row else (w.max(), w.mean())
            if method == "quantgpt":
                quantizer.gamma.copy_(torch.nan_to_num(peak / mean, nan=1.0))
            elif method == "lsq":
                quantizer.step.copy_(peak / 127)
    model.eval()
    with torch.no_grad():
        quantized = model(input_ids=ids).logits
    error = (quantized - reference).abs().max() / reference.abs().max()
    assert error < 0.05, f"relative max error {error:.3f}"


@pytest.mark.parametrize("family", DECODERS_AND_MISTRAL)
@pytest.mark.parametrize("method", METHODS)
def test_round_trip_is_bit_exact(tmp_path, family, method):
    model = DECODERS_AND_MISTRAL[family]()
    quantize_model(model, QuantConfig(method=method, bits="2-2-8"))
    with torch.no_grad():
        for param in quantizer_parameters(model):
            param.mul_(1.0 + 0.3 * torch.rand_like(param))
    model.train()
    model(input_ids=torch.randint(3, VOCAB, (2, 8)))  # LAQ solves and stores alpha in training mode
    model.eval()
    ids = torch.randint(3, VOCAB, (2, 9))
    with torch.no_grad():
        expected = model(input_ids=ids).logits
    model.save_pretrained(tmp_path)
    loaded = load_quantized(tmp_path)
    assert type(loaded) is type(model)
    with torch.no_grad():
        assert torch.equal(loaded(input_ids=ids).logits, expected)
    original, restored = model.state_dict(), loaded.state_dict()
    assert original.keys() == restored.keys()
    for key in original:
        assert torch.equal(original[key], restored[key]), key


def test_unsupported_architecture_lists_the_new_classes():
    with pytest.raises(UnsupportedArchitectureError, match="LlamaModel.*LlamaForCausalLM, MistralForCausalLM, OPTForCausalLM, Qwen2ForCausalLM"):
        quantize_model(LlamaModel(tiny_llama().config), QuantConfig())


@pytest.fixture(scope="module")
def lm_batch(shared_data, gpt2_tokenizer):
    from quantgpt.tasks.lm_task import LanguageModelingTask

    task = LanguageModelingTask(gpt2_tokenizer, "wikitext-2", shared_data, block_size=16, train_split="testbed-train", max_train_blocks=4)
    return task, task.collate([task.train_dataset()[i] for i in range(4)])


@pytest.mark.parametrize("family", DECODERS)
def test_qat_with_the_contrastive_loss_lowers_the_loss(family, lm_batch):
    from quantgpt.distill import ContrastiveConfig
    from quantgpt.training import ObjectiveConfig, TrainingModule, build_objective
    from quantgpt.training.models import freeze, quantized_copy

    task, batch = lm_batch
    teacher = freeze(DECODERS[family](vocab=len(task.tokenizer)))
    student = quantized_copy(teacher, QuantConfig(method="quantgpt", bits="2-2-8"))
    student.train()
    objective = build_objective(
        ObjectiveConfig.for_method("quantgpt", ContrastiveConfig(num_negatives=4)), student.config, teacher.config
    )
    step = TrainingModule(student, objective, task, teacher)
    optimizer = torch.optim.AdamW([*student.parameters(), *objective.parameters()], lr=2e-3)
    losses = []
    for _ in range(6):
        out = step(batch)
        assert set(out) >= {"logit_loss", "contrastive_loss"} and torch.isfinite(out["loss"])
        optimizer.zero_grad()
        out["loss"].backward()
        optimizer.step()
        losses.append(float(out["loss"].detach()))
    assert losses[-1] < losses[0], losses
