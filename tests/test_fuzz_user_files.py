"""Fuzzing the files a user hands to quantgpt: config.json (read for `size`, `--model-config`,
`--teacher`, `evaluate`) and YAML flag files (`--config`). Whatever the bytes, reading them gives a
checked result or a `QuantgptError` (one line for the command line), never another exception.
(The packed format has its own fuzz tests in tests/export/test_packed_format.py.)"""

from __future__ import annotations

import json
import math

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from quantgpt.cli import _apply_yaml_defaults, build_parser
from quantgpt.commands.finetune import training_config_from_args
from quantgpt.commands.quantize import objective_from_args
from quantgpt.config import QuantConfig
from quantgpt.errors import QuantgptError
from quantgpt.model_files import read_model_config
from quantgpt.size import model_size

FUZZ = settings(max_examples=120, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])

GPT2 = {
    "model_type": "gpt2", "architectures": ["GPT2LMHeadModel"], "vocab_size": 100, "n_positions": 16,
    "n_embd": 32, "n_layer": 2, "n_head": 2, "bos_token_id": 0, "eos_token_id": 0,
}
BART = {
    "model_type": "bart", "architectures": ["BartForConditionalGeneration"], "vocab_size": 100, "d_model": 32,
    "encoder_layers": 1, "decoder_layers": 1, "encoder_attention_heads": 2, "decoder_attention_heads": 2,
    "encoder_ffn_dim": 64, "decoder_ffn_dim": 64, "max_position_embeddings": 16,
}
LLAMA = {
    "model_type": "llama", "architectures": ["LlamaForCausalLM"], "vocab_size": 100, "hidden_size": 32,
    "intermediate_size": 64, "num_hidden_layers": 2, "num_attention_heads": 4, "num_key_value_heads": 2,
    "max_position_embeddings": 64,
}

# Sizes stay small when valid (a model of a million layers is slow to build even on the meta device).
numbers = st.one_of(
    st.integers(-3, 70), st.sampled_from([0, -1, 2**31, 2**63, 10**30]),
    st.floats(allow_nan=True, allow_infinity=True), st.booleans(),
)
scalars = st.one_of(st.none(), numbers, st.text(max_size=12))
json_values = st.recursive(scalars, lambda inner: st.one_of(st.lists(inner, max_size=3),
                                                            st.dictionaries(st.text(max_size=8), inner, max_size=3)),
                           max_leaves=6)


def outcome(call) -> str:
    try:
        call()
    except QuantgptError:
        return "refused"
    return "accepted"


@pytest.fixture
def config_file(tmp_path):
    return tmp_path / "config.json"


@FUZZ
@given(data=st.binary(max_size=300))
def test_config_json_bytes(config_file, data):
    config_file.write_bytes(data)
    outcome(lambda: read_model_config(config_file))


@pytest.mark.filterwarnings("ignore:`rope_scaling` is deprecated:FutureWarning")
@FUZZ
@given(
    base=st.sampled_from([GPT2, BART, LLAMA]),
    changes=st.dictionaries(
        st.one_of(st.sampled_from(sorted({*GPT2, *BART, *LLAMA, "quantization_config", "tie_word_embeddings",
                                          "n_inner", "head_dim", "rope_scaling", "torch_dtype"})), st.text(max_size=8)),
        json_values, min_size=1, max_size=3,
    ),
)
def test_config_json_values(config_file, base, changes):
    """A valid config with a few fields replaced by any JSON value: read it, then size it as `size` does."""
    config_file.write_text(json.dumps({**base, **changes}, allow_nan=True))

    def read_and_size():
        model_size(read_model_config(config_file), "2-2-8")

    outcome(read_and_size)


@FUZZ
@given(quantization=st.dictionaries(
    st.sampled_from(["method", "bits", "quantize_activations", "quantize_values", "activation_range", "masked_ste",
                     "laq_iterations", "modules_to_not_convert", "quantize_lm_head", "quant_method", "other"]),
    json_values, max_size=4))
def test_quantization_config_values(config_file, quantization):
    config_file.write_text(json.dumps({**GPT2, "quantization_config": quantization}, allow_nan=True))
    outcome(lambda: QuantConfig.from_dict(dict(read_model_config(config_file).quantization_config)))


QUANTIZE_KEYS = ["teacher", "method", "bits", "batch_size", "lr", "quantizer_lr", "max_steps", "epochs", "tau",
                 "momentum", "num_negatives", "lam", "proj_dim", "contrastive", "negatives", "contrastive_layer",
                 "quantize_activations", "progress", "block_size", "eval_split", "warmup_steps", "mixed_precision",
                 "gradient_accumulation_steps", "max_grad_norm", "seed", "output_dir", "data_dir", "dataset",
                 "learning_rate", "quantizer_learning_rate", "num_epochs", "layer", "max_train_examples"]


def apply_and_build(path) -> None:
    """What `quantgpt quantize --config path` does before it loads anything: flags, then the configs."""
    _, subparsers = build_parser()
    parser = subparsers["quantize"]
    _apply_yaml_defaults(parser, str(path))
    try:
        args = parser.parse_args(["--teacher", "t", "--output-dir", "o"])
    except SystemExit as stop:  # argparse refused a value: one line, status 2
        assert stop.code == 2
        return
    QuantConfig(method=args.method, bits=args.bits, quantize_activations=args.quantize_activations)
    objective_from_args(args, args.method)
    training_config_from_args(args)


yaml_like = st.lists(st.sampled_from(["teacher: x\n", "bits: ", "- ", "{", "}", "[", "]", ": ", "!!python/name:os.system",
                                       "!!binary ", "&a ", "*a ", "? ", "'", '"', "\t", "\n", "lr: 1e-3\n", "batch_size: "]),
                     max_size=12).map("".join)


@FUZZ
@given(data=st.one_of(st.binary(max_size=200), st.text(max_size=200).map(str.encode), yaml_like.map(str.encode)))
def test_yaml_bytes(tmp_path, data):
    path = tmp_path / "flags.yaml"
    path.write_bytes(data)
    outcome(lambda: apply_and_build(path))


yaml_scalars = st.one_of(st.none(), st.booleans(), st.integers(-5, 10**6), st.floats(allow_nan=False).filter(math.isfinite),
                         st.text(max_size=10), st.sampled_from(["2-2-8", "quantgpt", "nan", "inf", "-1", "1e-3"]))
yaml_values = st.one_of(yaml_scalars, st.lists(yaml_scalars, max_size=3), st.dictionaries(st.text(max_size=5), yaml_scalars, max_size=2))


@FUZZ
@given(flags=st.dictionaries(st.sampled_from(QUANTIZE_KEYS), yaml_values, min_size=1, max_size=4))
def test_yaml_flag_values(tmp_path, flags):
    import yaml

    path = tmp_path / "flags.yaml"
    path.write_text(yaml.safe_dump(flags))
    outcome(lambda: apply_and_build(path))


SAVED_QUANTIZATION = QuantConfig(method="lsq", bits="4-4-8", laq_iterations=3).to_dict()


@FUZZ
@given(drop=st.sets(st.sampled_from(sorted(SAVED_QUANTIZATION)), max_size=2),
       changes=st.dictionaries(st.sampled_from([*SAVED_QUANTIZATION, "other"]), json_values, max_size=2))
def test_a_saved_quantization_config_reads_back_as_written_or_is_refused(config_file, drop, changes):
    """A saved quantization_config with fields dropped or changed: read back with every field as
    written (none filled with a default, so a 4-4-8 model never loads as 2-2-8), or refused in a
    line naming the file and the field; config.json and from_pretrained's reading agree."""
    from quantgpt import QuantgptQuantizationConfig
    from quantgpt.config import BitWidths
    from quantgpt.schemas import SAVED_QUANTIZATION_FIELDS

    quantization = {k: v for k, v in {**SAVED_QUANTIZATION, **changes}.items() if k not in drop}
    config_file.write_text(json.dumps({**GPT2, "quantization_config": quantization}, allow_nan=True))
    outcomes = []
    for read in (lambda: read_model_config(config_file),
                 lambda: QuantgptQuantizationConfig.from_dict(json.loads(json.dumps(quantization)))):
        try:
            read()
            outcomes.append("read")
        except QuantgptError as error:
            assert "config.json: quantization_config" in str(error), error
            outcomes.append("refused")
    assert outcomes[0] == outcomes[1]
    if outcomes[0] == "refused":
        return
    assert set(SAVED_QUANTIZATION_FIELDS) <= set(quantization)
    written = QuantgptQuantizationConfig.from_dict(quantization).to_dict()
    for key, value in quantization.items():
        expected = str(BitWidths.parse(value)) if key == "bits" else value
        assert written[key] == expected, key
