"""Recipes: validated when built, hashed into the cache key, turned into the model configuration."""

from __future__ import annotations

import dataclasses
import json

import pytest

from quantgpt.cli import main
from quantgpt.testbed.job import TestbedJob
from quantgpt.testbed.recipe import DEFAULT_TEACHER, QATRecipe, TeacherRecipe, SCRATCH_TEACHER


def test_key_is_stable_and_follows_every_setting():
    assert TeacherRecipe().key() == DEFAULT_TEACHER.key()
    assert len(DEFAULT_TEACHER.key()) == 12
    # The cached teachers' names: a change of the recipe's fields (names, order, types, defaults) changes them.
    assert (SCRATCH_TEACHER.key(), dataclasses.replace(SCRATCH_TEACHER, architecture="llama").key()) == ("4bf9a4fc1763", "7b94026ee010")
    keys = {dataclasses.replace(DEFAULT_TEACHER, finetune_steps=901).key(), dataclasses.replace(DEFAULT_TEACHER, seed=1).key()}
    assert DEFAULT_TEACHER.key() not in keys and len(keys) == 2


def test_model_config_matches_the_recipe():
    config = TeacherRecipe(vocab_size=1000, n_layer=2, n_embd=64, n_head=4, block_size=128, dropout=0.0).model_config()
    assert (config.vocab_size, config.n_layer, config.n_embd, config.n_head, config.n_positions) == (1000, 2, 64, 4, 128)
    assert config.bos_token_id == config.eos_token_id == 0  # <|endoftext|> is the tokenizer's id 0
    assert config.resid_pdrop == config.attn_pdrop == config.embd_pdrop == 0.0


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"n_head": 3}, "n_head=3"),
        ({"vocab_size": 100}, "vocab_size=100"),
        ({"dropout": 1.0}, "dropout=1.0"),
        ({"finetune_learning_rate": 0.0}, "finetune_learning_rate=0.0"),
        ({"pretrain_steps": -1}, "pretrain_steps=-1"),
    ],
)
def test_bad_teacher_settings_name_the_field(changes, message):
    with pytest.raises(ValueError, match=message):
        dataclasses.replace(DEFAULT_TEACHER, **changes)


def test_bad_job_settings_name_the_field():
    with pytest.raises(ValueError, match="steps=0"):
        QATRecipe(steps=0)
    with pytest.raises(ValueError, match="'gptq'"):
        TestbedJob(methods=("gptq",))
    with pytest.raises(ValueError, match="'imdb'"):
        TestbedJob(test_sets=("imdb",))
    with pytest.raises(ValueError, match="bits"):
        TestbedJob(bits=("9-9-9",))


def test_command_line_flags_override_the_recipe(tmp_path, capsys):
    assert main(["pretrain", "--recipe", "tiny", "--finetune-steps", "7", "--cache", str(tmp_path), "--print-dir"]) == 0
    folder = capsys.readouterr().out.strip()
    tiny = dataclasses.replace(__import__("quantgpt.testbed.recipe", fromlist=["TINY_TEACHER"]).TINY_TEACHER, finetune_steps=7)
    assert folder.endswith(f"teacher-{tiny.key()}")
    assert main(["pretrain", "--recipe", "tiny", "--n-head", "3", "--cache", str(tmp_path)]) == 2
    assert "n_head=3" in capsys.readouterr().err
    json.dumps(tiny.to_dict())  # the recipe is JSON-ready: it is written beside the teacher


def test_quantizer_learning_rate_per_method_and_its_flag(tmp_path):
    qat = QATRecipe(quantizer_learning_rate=1e-3, method_quantizer_learning_rates={"quantgpt": 2e-2})
    assert qat.quantizer_learning_rate_of("quantgpt") == 2e-2
    assert qat.quantizer_learning_rate_of("lsq") == 1e-3
    with pytest.raises(ValueError, match=r"method_quantizer_learning_rates=\{'lsq': 0\}: allowed is a mapping"):
        QATRecipe(method_quantizer_learning_rates={"lsq": 0})
    from quantgpt.testbed.arguments import parse_rates

    assert parse_rates("quantgpt=0.05, lsq=1e-3") == {"quantgpt": 0.05, "lsq": 0.001}
    assert parse_rates("") == {}
    # The flag is the field's (parse_rates its parser); not given, the named recipe's value stays.
    from quantgpt import settings
    from quantgpt.cli import build_parser

    _, subparsers = build_parser()
    args = subparsers["run"].parse_args(["--qat-method-quantizer-learning-rates", "lsq=0.01", "--qat-steps", "3"])
    changed = settings.from_args(QATRecipe, args, prefix="qat_", base=QATRecipe())
    assert changed == dataclasses.replace(QATRecipe(), steps=3, method_quantizer_learning_rates={"lsq": 0.01})
    assert settings.from_args(QATRecipe, subparsers["run"].parse_args([]), prefix="qat_", base=QATRecipe()) == QATRecipe()


def test_contrastive_weight_sets_quantgpts_lambda_and_zero_drops_the_loss():
    from quantgpt.testbed.job import _objective

    default = _objective("quantgpt", QATRecipe())
    assert default.contrastive.lam == 0.1 and default.contrastive.num_negatives == 32  # the paper's Eq. 5
    assert _objective("quantgpt", QATRecipe(contrastive_weight=0.5)).contrastive.lam == 0.5
    assert _objective("quantgpt", QATRecipe(contrastive_weight=0)).contrastive is None
    assert _objective("lsq", QATRecipe(contrastive_weight=0.5)).contrastive is None  # baselines: logit distillation
    with pytest.raises(ValueError, match="contrastive_weight=-0.1"):
        QATRecipe(contrastive_weight=-0.1)
