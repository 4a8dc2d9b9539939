"""save_pretrained + load_quantized round-trip exactly; config in config.json, tensors in safetensors."""

import json

import pytest
import torch
from test_convert import MODELS, VOCAB, run

from quantgpt import CheckpointError, QuantConfig, load_quantized, quantize_model
from quantgpt.convert import quantizer_parameters
from quantgpt.errors import InputFileError


@pytest.mark.parametrize("arch", MODELS)
@pytest.mark.parametrize("method", ["quantgpt", "pact", "lsq", "laq"])
def test_round_trip_is_exact(tmp_path, arch, method):
    model = MODELS[arch]()
    quantize_model(model, QuantConfig(method=method, bits="2-2-8"))
    with torch.no_grad():  # move the learned scales away from their initial values
        for param in quantizer_parameters(model):
            param.mul_(1.0 + 0.3 * torch.rand_like(param))
    model.train()
    run(model, torch.randint(3, VOCAB, (2, 8)))  # LAQ solves and stores alpha in training mode
    model.eval()
    ids = torch.randint(3, VOCAB, (2, 9))
    with torch.no_grad():
        expected = run(model, ids).logits
    model.save_pretrained(tmp_path)

    assert sorted(p.name for p in tmp_path.iterdir() if p.suffix in {".bin", ".pt", ".pkl"}) == []
    saved = json.loads((tmp_path / "config.json").read_text())["quantization_config"]
    assert saved["method"] == method and saved["bits"] == "2-2-8"

    loaded = load_quantized(tmp_path)
    with torch.no_grad():
        actual = run(loaded, ids).logits
    assert torch.equal(actual, expected)
    original_state, loaded_state = model.state_dict(), loaded.state_dict()
    assert original_state.keys() == loaded_state.keys()
    for key in original_state:
        assert torch.equal(original_state[key], loaded_state[key]), key


def test_loading_a_directory_without_quantization_config_says_so(tmp_path):
    model = MODELS["gpt2"]()
    model.save_pretrained(tmp_path)
    with pytest.raises(CheckpointError, match="no quantization_config"):
        load_quantized(tmp_path)


def test_a_checkpoint_that_does_not_match_its_config_is_refused(tmp_path):
    model = MODELS["gpt2"]()
    quantize_model(model, QuantConfig(method="quantgpt"))
    model.save_pretrained(tmp_path)
    config = json.loads((tmp_path / "config.json").read_text())
    config["quantization_config"]["method"] = "pact"
    (tmp_path / "config.json").write_text(json.dumps(config))
    with pytest.raises(InputFileError, match="config.json: quantization_config.method='pact' does not agree .*missing .*alpha_neg"):
        load_quantized(tmp_path)


def test_missing_directory_is_a_clear_error(tmp_path):
    with pytest.raises(CheckpointError, match="no config.json"):
        load_quantized(tmp_path / "nothing")
