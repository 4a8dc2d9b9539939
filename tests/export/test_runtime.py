"""The packed runtime: int8 layers computed by hand, whole models against the fake-quantized ones,
greedy generation, and a loader that refuses damaged or hostile directories.

Tolerances. In memory (float32 scales) the runtime is exact up to float32 rounding: the integer
products are exact and the activation codes are the training-time ones. A rounding difference can
still push one activation across a rounding boundary of its 8-bit grid (one code out of thousands);
so the median error must be float32-small (<= 1e-6 of the largest logit) and the largest <= 5e-3.
From the file, scales and fp tensors are fp16 (relative rounding <= 2^-11 = 4.9e-4); through the
activation grids this moves logits by up to ~1% of the largest one: the bound is 2e-2 (measured
<= 8e-3 on these models).
"""

from __future__ import annotations

import json
import math

import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from torch import nn

from quantgpt.export import (
    Int8Weight,
    LowBitLinear,
    PackedFormatError,
    PackedTensor,
    build_packed_model,
    export_packed,
    generate_text,
    load_packed,
    load_packed_tokenizer,
    packed_entries,
    read_packed,
    write_packed,
)
from quantgpt.export.lowbit_layers import quantize_input
from quantgpt.export.packed_format import INDEX_FILE, WEIGHTS_FILE
from quantgpt.layers import QuantLinear
from quantgpt.quantizers import WEIGHT_QUANTIZERS, ActivationQuantizer

from export_helpers import (
    model_inputs,
    outputs,
    quantized,
    relative_errors,
    snap_to_float16,
    tiny_bart,
    tiny_gpt2,
)

IN_MEMORY_MAX, IN_MEMORY_MEDIAN, FILE_MAX = 5e-3, 1e-6, 2e-2


# ------------------------------------------------------------------------------ layers by hand


def test_symmetric_input_codes_by_hand():
    # alpha = max|x| = 1.27, k = 127: codes = x / 1.27 * 127 = x * 100, step = 0.01.
    quantized_input = quantize_input(torch.tensor([[1.27, -0.5, 0.301, 0.0]]), bits=8, symmetric=True)
    assert quantized_input.codes.tolist() == [[127, -50, 30, 0]]
    assert quantized_input.codes.dtype == torch.int8
    assert float(quantized_input.step) == pytest.approx(0.01, rel=1e-6)
    assert quantized_input.offset is None


def test_asymmetric_input_codes_by_hand():
    # low 0, high 2.55, step 2.55 / 255 = 0.01: levels 0, 50, 100, 255, shifted by 128 into int8;
    # offset = low + 128 * step = 1.28, so x = 0.01 * code + 1.28.
    quantized_input = quantize_input(torch.tensor([[0.0, 0.5, 1.0, 2.55]]), bits=8, symmetric=False)
    assert quantized_input.codes.tolist() == [[-128, -78, -28, 127]]
    assert float(quantized_input.step) == pytest.approx(0.01, rel=1e-6)
    assert float(quantized_input.offset) == pytest.approx(1.28, rel=1e-6)


@pytest.mark.parametrize("symmetric", [True, False])
def test_input_codes_are_the_activation_quantizers(symmetric):
    x = torch.randn(3, 5, 16)
    x = torch.nn.functional.gelu(x) if not symmetric else x
    got = quantize_input(x, 8, symmetric)
    rebuilt = got.codes.float() * got.step + (0.0 if got.offset is None else got.offset)
    expected = ActivationQuantizer(8, symmetric).fake_quantize(x).reshape(-1, 16)
    assert torch.allclose(rebuilt, expected, rtol=0, atol=1e-6 * float(expected.abs().max()))


CODES = torch.tensor([[1, -1], [0, 1]], dtype=torch.int8)


@pytest.mark.parametrize(
    ("x", "scale_neg", "symmetric", "expected"),
    [
        # w = 0.5 * codes = [[0.5, -0.5], [0, 0.5]]; x = [1.27, -0.5] is on the grid (step 0.01):
        # y = [1.27 * 0.5 + 0.5 * 0.5, -0.5 * 0.5] + bias.
        ([1.27, -0.5], None, True, [0.885, -0.25]),
        # PACT: negative codes take 0.25: w = [[0.5, -0.25], [0, 0.5]]: y = [0.635 + 0.125, -0.25].
        ([1.27, -0.5], 0.25, True, [0.76, -0.25]),
        # Asymmetric input [0, 2.55] (levels 0 and 255): y = [2.55 * -0.5, 2.55 * 0.5], through the
        # shifted codes and the precomputed row sums.
        ([0.0, 2.55], None, False, [-1.275, 1.275]),
        ([0.0, 2.55], 0.25, False, [-0.6375, 1.275]),
    ],
)
def test_lowbit_linear_by_hand(x, scale_neg, symmetric, expected):
    weight = Int8Weight(CODES, torch.tensor(0.5), None if scale_neg is None else torch.tensor(scale_neg))
    layer = LowBitLinear(weight, torch.tensor([0.1, -0.1]), input_bits=8, input_symmetric=symmetric)
    y = layer(torch.tensor([x]))
    assert y.tolist()[0] == pytest.approx([expected[0] + 0.1, expected[1] - 0.1], rel=1e-6)


@pytest.mark.parametrize("method", ["quantgpt", "pact", "lsq", "laq"])
@pytest.mark.parametrize("bits", [2, 4, 8])
@pytest.mark.parametrize("symmetric", [True, False])
def test_lowbit_linear_matches_quant_linear(method, bits, symmetric):
    w = torch.randn(24, 40) * 0.05  # Conv1D layout (in, out): the exporter stores codes.T
    quantizer = WEIGHT_QUANTIZERS[method](bits)
    if method == "pact":
        quantizer.alpha_neg.data.fill_(0.06)
        quantizer.alpha_pos.data.fill_(0.09)
    fake = QuantLinear(nn.Parameter(w), nn.Parameter(torch.randn(40)), quantizer, ActivationQuantizer(8, symmetric), transposed=True)
    fake.eval()
    codes, scale, scale_neg = quantizer.codes(w)
    runtime = LowBitLinear(Int8Weight(codes.T.contiguous(), scale, scale_neg, bits), fake.bias.detach(), 8, symmetric)
    x = torch.randn(2, 7, 24)
    x = torch.nn.functional.gelu(x) if not symmetric else x
    with torch.no_grad():
        expected = fake(x)
    got = runtime(x)
    assert got.shape == expected.shape
    assert float((got - expected).abs().max() / expected.abs().max()) < 1e-6


@pytest.mark.parametrize("bits", [2, 4])
def test_codes_decode_the_same_in_small_chunks(monkeypatch, bits):
    from quantgpt.export import packing

    codes = torch.randint(-1 if bits == 2 else -8, 2 if bits == 2 else 8, (7, 13), dtype=torch.int8)
    packed = packing.pack_codes(codes, bits)
    monkeypatch.setattr(packing, "_DECODE_CHUNK", 3)  # 91 codes: many chunks and a short last one
    assert torch.equal(packing.unpack_codes(packed, bits, codes.shape), codes)


# ------------------------------------------------------------------------ whole models


def _fp16_stored_copy(entries):
    """The entries as the file keeps them: scales rounded to fp16 (fp tensors already are)."""
    copies = []
    for entry in entries:
        if isinstance(entry, PackedTensor):
            entry = PackedTensor(
                entry.name, entry.bits, entry.shape, entry.packed, entry.scale.half().float(),
                None if entry.scale_neg is None else entry.scale_neg.half().float(),
            )
        copies.append(entry)
    return copies


CASES = [
    (factory, method, bits)
    for factory in ("gpt2", "bart")
    for method in ("quantgpt", "pact", "lsq", "laq")
    for bits in ("2-2-8", "4-4-8", "8-8-8")
] + [("gpt2_double_heads", "quantgpt", "2-2-8"), ("gpt2_double_heads", "pact", "4-4-8"), ("gpt2", "rtn", "2-2-8")]
FACTORIES = {"gpt2": tiny_gpt2, "bart": tiny_bart, "gpt2_double_heads": lambda: tiny_gpt2(double_heads=True)}


@pytest.mark.parametrize(("factory", "method", "bits"), CASES)
def test_packed_model_reproduces_fake_quantized_logits(tmp_path, factory, method, bits):
    model = quantized(FACTORIES[factory](), method, bits)
    inputs = model_inputs(model)
    reference = outputs(model, inputs)

    in_memory = build_packed_model(*packed_entries(model, dense_dtype=torch.float32))
    largest, median = relative_errors(outputs(in_memory, inputs), reference)
    assert largest <= IN_MEMORY_MAX and median <= IN_MEMORY_MEDIAN, (largest, median)

    export_packed(model, tmp_path / "packed")
    from_file = load_packed(tmp_path / "packed")
    got = outputs(from_file, inputs)
    largest, _ = relative_errors(got, reference)
    assert largest <= FILE_MAX, largest

    # The file keeps exactly what the exporter made: the fp16 copy in memory gives identical logits.
    entries, model_config, extra = packed_entries(model)
    assert torch.equal(got, outputs(build_packed_model(_fp16_stored_copy(entries), model_config, extra), inputs))


def test_float16_representable_model_is_reproduced_to_float32_rounding(tmp_path):
    model = quantized(tiny_gpt2(), "quantgpt", "2-2-8")
    snap_to_float16(model)
    inputs = model_inputs(model)
    export_packed(model, tmp_path / "packed")
    largest, median = relative_errors(outputs(load_packed(tmp_path / "packed"), inputs), outputs(model, inputs))
    assert largest <= IN_MEMORY_MAX and median <= IN_MEMORY_MEDIAN, (largest, median)


def test_runtime_holds_int8_codes_not_float_weights(tmp_path):
    model = quantized(tiny_bart(), "quantgpt", "2-2-8")
    export_packed(model, tmp_path / "packed")
    runtime = load_packed(tmp_path / "packed")
    float_matrices = sorted(name for name, p in runtime.named_parameters() if p.dim() == 2)
    assert float_matrices == ["model.decoder.embed_positions.weight", "model.encoder.embed_positions.weight"]
    # 6 attention projections x 3 attention blocks + fc1, fc2 x 2 layers + the shared embedding.
    weights = {id(m): m for m in runtime.modules() if isinstance(m, Int8Weight)}
    assert len(weights) == 4 * 3 + 2 * 2 + 1
    assert all(w.codes.dtype == torch.int8 for w in weights.values())
    shared = runtime.model.shared.int8_weight
    assert runtime.model.encoder.embed_tokens.int8_weight is shared
    assert runtime.model.decoder.embed_tokens.int8_weight is shared
    assert runtime.lm_head.int8_weight is shared  # the tied head multiplies the same codes
    assert runtime.model.decoder.embed_tokens.embed_scale == pytest.approx(math.sqrt(32))


def test_untied_head_with_per_row_scales():
    model = quantized(tiny_gpt2(tie=False), "quantgpt", "2-2-8")
    runtime = build_packed_model(*packed_entries(model, dense_dtype=torch.float32))
    assert runtime.lm_head.int8_weight.scale.shape == (model.config.vocab_size,)
    inputs = model_inputs(model)
    largest, median = relative_errors(outputs(runtime, inputs), outputs(model, inputs))
    assert largest <= IN_MEMORY_MAX and median <= IN_MEMORY_MEDIAN


def test_unquantized_activations_use_the_dequantized_weight():
    model = quantized(tiny_gpt2(), "quantgpt", "4-4-8", quantize_activations=False)
    runtime = build_packed_model(*packed_entries(model, dense_dtype=torch.float32))
    assert runtime.transformer.h[0].attn.c_attn.input_bits is None
    inputs = model_inputs(model)
    largest, _ = relative_errors(outputs(runtime, inputs), outputs(model, inputs))
    assert largest <= 1e-5  # no activation grid: nothing can flip


def test_eight_bit_position_embedding_error_is_half_a_step(tmp_path):
    model = quantized(tiny_gpt2(), "quantgpt", "2-2-8")
    export_packed(model, tmp_path / "packed", position_bits=8)
    runtime = load_packed(tmp_path / "packed")
    original = model.transformer.wpe.weight.detach()
    row_max = original.abs().amax(dim=1, keepdim=True)
    # Round-to-nearest on a grid of step alpha / 127 per row errs by at most half a step, plus the
    # fp16 rounding of the scale (relative 2^-11 of the value).
    error = (runtime.transformer.wpe.weight - original).abs()
    assert bool((error <= row_max / 254 + original.abs() * 2**-11 + 1e-7).all())
    inputs = model_inputs(model)
    largest, _ = relative_errors(outputs(runtime, inputs), outputs(model, inputs))
    assert largest <= 5e-2


# ------------------------------------------------------------------------------- generation


def test_greedy_generation_equals_the_fake_quantized_model(tmp_path, gpt2_tokenizer, shared_data):
    model = quantized(tiny_gpt2(vocab=len(gpt2_tokenizer), init=0.2), "quantgpt", "2-2-8")
    snap_to_float16(model)  # storage is lossless: any difference left would be the runtime's
    export_packed(model, tmp_path / "packed", tokenizer=gpt2_tokenizer)
    runtime = load_packed(tmp_path / "packed")
    tokenizer = load_packed_tokenizer(tmp_path / "packed", "gpt2")
    for prompt in ("The tower is 324 metres tall", "In 1990 the city of"):
        expected = generate_text(model, gpt2_tokenizer, prompt, max_new_tokens=12)
        assert len(gpt2_tokenizer(expected)["input_ids"]) >= 8
        assert generate_text(runtime, tokenizer, prompt, max_new_tokens=12) == expected
    # The same from a tokenizer directory given explicitly.
    explicit = load_packed_tokenizer(shared_data / "gpt2-tokenizer", "gpt2")
    assert explicit("a b c")["input_ids"] == tokenizer("a b c")["input_ids"]


def test_bart_greedy_generation_equals_the_fake_quantized_model(tmp_path):
    model = quantized(tiny_bart(), "quantgpt", "4-4-8")
    snap_to_float16(model)
    export_packed(model, tmp_path / "packed")
    runtime = load_packed(tmp_path / "packed")
    source = torch.tensor([[0, 11, 23, 35, 47, 59, 2]])
    options = {"max_new_tokens": 10, "min_new_tokens": 10, "do_sample": False, "num_beams": 1}
    with torch.no_grad():
        expected = model.generate(input_ids=source, **options)
        got = runtime.generate(input_ids=source, **options)
    assert got.tolist() == expected.tolist()


# ------------------------------------------------------------------------- damaged directories


@pytest.fixture
def packed_dir(tmp_path):
    export_packed(quantized(tiny_gpt2(), "quantgpt", "2-2-8"), tmp_path / "packed")
    return tmp_path / "packed"


def _edit_index(directory, edit) -> None:
    index = json.loads((directory / INDEX_FILE).read_text())
    edit(index)
    (directory / INDEX_FILE).write_text(json.dumps(index))


def test_refuses_a_flipped_byte(packed_dir):
    data = bytearray((packed_dir / WEIGHTS_FILE).read_bytes())
    data[-3] ^= 0x01
    (packed_dir / WEIGHTS_FILE).write_bytes(bytes(data))
    with pytest.raises(PackedFormatError, match="SHA-256"):
        load_packed(packed_dir)


def test_refuses_a_missing_tensor(packed_dir, tmp_path):
    entries, model_config, extra = read_packed(packed_dir)
    kept = [entry for entry in entries if entry.name != "transformer.ln_f.bias"]
    write_packed(tmp_path / "damaged", kept, model_config, extra)
    with pytest.raises(PackedFormatError, match="'transformer.ln_f.bias' of GPT2LMHeadModel is missing"):
        load_packed(tmp_path / "damaged")


def _swap_attention_weights(index) -> None:
    modules = index["extra"]["modules"]
    fused, projection = modules["transformer.h.0.attn.c_attn"], modules["transformer.h.0.attn.c_proj"]
    fused["weight"], projection["weight"] = projection["weight"], fused["weight"]


@pytest.mark.parametrize(
    ("edit", "message"),
    [
        (lambda i: i["extra"]["modules"].update({"transformer.h.9.mlp": i["extra"]["modules"].pop("transformer.h.0.mlp.c_fc")}),
         "module 'transformer.h.9.mlp' does not exist"),
        (lambda i: i["extra"]["modules"]["transformer.h.0.mlp.c_fc"].update(input={"bits": 9, "symmetric": True}),
         "input bits=9"),
        (lambda i: i["extra"]["modules"]["lm_head"].update(source="transformer.h.0.attn.c_attn"),
         "not a quantized embedding"),
        (_swap_attention_weights, "has shape \\(32, 32\\); the model needs \\(96, 32\\)"),
        (lambda i: i["extra"]["modules"].update({"transformer.wpe": {"kind": "linear", "weight": "x", "bias": None, "input": None}}),
         "Embedding, which a 'linear' record cannot replace"),
        (lambda i: i["model_config"].update(n_embd=48), "shape"),
        (lambda i: i["model_config"].update(n_layer=10**9), "n_layer=1000000000 is impossible"),
        (lambda i: i["model_config"].update(model_type="mamba"), "model_type='mamba'"),
        (lambda i: i["model_config"].update(model_type="llama"), "architecture='GPT2LMHeadModel'; for llama"),
        (lambda i: i["extra"].update(architecture="GPT2Model"), "architecture='GPT2Model'"),
        (lambda i: i["extra"]["quantization_config"].update(bits="9-9-9"), "quantization_config is invalid"),
    ],
)
def test_refuses_an_index_that_does_not_match_the_model(packed_dir, edit, message):
    _edit_index(packed_dir, edit)
    with pytest.raises(PackedFormatError, match=message):
        load_packed(packed_dir)


JSON_VALUES = st.recursive(
    st.none() | st.booleans() | st.integers(-3, 200) | st.floats(allow_nan=False, allow_infinity=False) | st.text(max_size=8),
    lambda children: st.lists(children, max_size=3) | st.dictionaries(st.text(max_size=6), children, max_size=3),
    max_leaves=6,
)


def _paths(value, prefix=()):
    """Every (path, value) inside a JSON value, the root included."""
    yield prefix
    if isinstance(value, dict):
        for key, child in value.items():
            yield from _paths(child, prefix + (key,))
    elif isinstance(value, list):
        for position, child in enumerate(value):
            yield from _paths(child, prefix + (position,))


_FUZZ_MODEL = quantized(tiny_gpt2(), "pact", "2-2-8")
_FUZZ_ENTRIES, _FUZZ_CONFIG, _FUZZ_EXTRA = packed_entries(_FUZZ_MODEL)
_FUZZ_PATHS = [("extra",) + p for p in _paths(_FUZZ_EXTRA)][1:] + [("model_config", key) for key in _FUZZ_CONFIG]


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(path=st.sampled_from(_FUZZ_PATHS), value=JSON_VALUES)
def test_fuzzed_index_loads_or_fails_cleanly(path, value):
    """Any one value of the index replaced by any JSON value: the model builds or PackedFormatError."""
    document = json.loads(json.dumps({"extra": _FUZZ_EXTRA, "model_config": _FUZZ_CONFIG}))
    target = document
    for key in path[:-1]:
        target = target[key]
    target[path[-1]] = value
    try:
        model = build_packed_model(_FUZZ_ENTRIES, document["model_config"], document["extra"])
    except PackedFormatError:
        return
    assert not any(t.is_meta for t in [*model.parameters(), *model.buffers()])
