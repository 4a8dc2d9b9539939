"""Transformers' own from_pretrained gives a saved quantized model back, bit for bit (hf_quantizer.py)."""

import json

import pytest
import torch
from test_convert import VOCAB, run, tiny_bart, tiny_gpt2
from transformers import AutoModelForCausalLM, AutoModelForSeq2SeqLM

from quantgpt import QuantConfig, QuantgptQuantizationConfig, load_quantized, quantize_model
from quantgpt.convert import quantizer_parameters
from quantgpt.errors import InputFileError

AUTO_CLASSES = {"gpt2": (tiny_gpt2, AutoModelForCausalLM), "bart": (tiny_bart, AutoModelForSeq2SeqLM)}


def trained_quantized(build, method):
    model = build()
    quantize_model(model, QuantConfig(method=method, bits="2-2-8"))
    with torch.no_grad():  # scales away from their initial values, so a re-initialized one shows
        for param in quantizer_parameters(model):
            param.mul_(1.0 + 0.3 * torch.rand_like(param))
    model.train()
    run(model, torch.randint(3, VOCAB, (2, 8)))  # LAQ solves and stores alpha in training mode
    return model.eval()


def assert_same_tensors(a, b):
    state_a, state_b = a.state_dict(), b.state_dict()
    assert state_a.keys() == state_b.keys()
    for key in state_a:
        assert torch.equal(state_a[key], state_b[key]), key


@pytest.mark.parametrize("arch", AUTO_CLASSES)
@pytest.mark.parametrize("method", ["quantgpt", "laq"])
def test_auto_from_pretrained_is_the_quantized_model_and_round_trips(tmp_path, arch, method):
    build, auto_class = AUTO_CLASSES[arch]
    model = trained_quantized(build, method)
    ids = torch.randint(3, VOCAB, (2, 9))
    with torch.no_grad():
        expected = run(model, ids).logits
    model.save_pretrained(tmp_path / "first")
    saved = json.loads((tmp_path / "first" / "config.json").read_text())["quantization_config"]
    assert saved["quant_method"] == "quantgpt" and saved["method"] == method

    loaded = auto_class.from_pretrained(tmp_path / "first")
    assert isinstance(loaded.config.quantization_config, QuantgptQuantizationConfig)
    assert loaded.quantization_config == QuantConfig(method=method, bits="2-2-8")
    assert not loaded.training
    with torch.no_grad():
        assert torch.equal(run(loaded, ids).logits, expected)
        assert torch.equal(run(load_quantized(tmp_path / "first"), ids).logits, expected)
    assert_same_tensors(model, loaded)
    embedding = loaded.get_input_embeddings()
    assert loaded.get_output_embeddings().weight is embedding.weight  # still tied, one set of scales

    loaded.save_pretrained(tmp_path / "second")
    assert json.loads((tmp_path / "second" / "config.json").read_text())["quantization_config"] == saved
    again = auto_class.from_pretrained(tmp_path / "second")
    with torch.no_grad():
        assert torch.equal(run(again, ids).logits, expected)
    assert_same_tensors(model, again)


def test_a_directory_saved_before_newer_config_fields_still_loads(tmp_path):
    model = trained_quantized(tiny_gpt2, "quantgpt")
    model.save_pretrained(tmp_path)
    config = json.loads((tmp_path / "config.json").read_text())
    first_release = ("method", "bits", "quantize_activations", "quantize_values", "activation_range",
                     "masked_ste", "laq_iterations", "modules_to_not_convert", "quant_method")
    config["quantization_config"] = {k: config["quantization_config"][k] for k in first_release}
    (tmp_path / "config.json").write_text(json.dumps(config))
    ids = torch.randint(3, VOCAB, (2, 9))
    with torch.no_grad():
        assert torch.equal(AutoModelForCausalLM.from_pretrained(tmp_path)(ids).logits, model(ids).logits)


def test_from_pretrained_with_a_quantgpt_config_quantizes_a_full_precision_model(tmp_path):
    full_precision = tiny_gpt2()
    full_precision.save_pretrained(tmp_path)
    config = QuantgptQuantizationConfig(method="lsq", bits="4-4-8")
    prepared = AutoModelForCausalLM.from_pretrained(tmp_path, quantization_config=config)
    reference = quantize_model(AutoModelForCausalLM.from_pretrained(tmp_path), QuantConfig(method="lsq", bits="4-4-8"))
    assert_same_tensors(reference, prepared)
    ids = torch.randint(3, VOCAB, (2, 9))
    with torch.no_grad():
        assert torch.equal(prepared(ids).logits, reference.eval()(ids).logits)
    prepared.save_pretrained(tmp_path / "quantized")
    with torch.no_grad():
        assert torch.equal(load_quantized(tmp_path / "quantized")(ids).logits, reference(ids).logits)


def test_a_bad_quantization_config_names_the_field():
    with pytest.raises(ValueError, match="bits"):
        QuantgptQuantizationConfig(method="quantgpt", bits="9-2-8")


@pytest.mark.parametrize("field", ["bits", "method"])
def test_from_pretrained_refuses_a_saved_config_missing_a_field(tmp_path, field):
    """A 4-4-8 model whose config lost `bits` must not load as the default 2-2-8."""
    quantize_model(tiny_gpt2(), QuantConfig(method="lsq", bits="4-4-8")).save_pretrained(tmp_path)
    config = json.loads((tmp_path / "config.json").read_text())
    del config["quantization_config"][field]
    (tmp_path / "config.json").write_text(json.dumps(config))
    with pytest.raises(InputFileError, match=rf"quantization_config\.{field} is missing"):
        AutoModelForCausalLM.from_pretrained(tmp_path)
    with pytest.raises(InputFileError, match=rf"^{tmp_path}/config.json: quantization_config\.{field} is missing"):
        load_quantized(tmp_path)
