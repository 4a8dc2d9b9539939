"""The pretrained checkpoint as an artefact of its own: its key, a bit-for-bit reproducible float16
build, a shipped copy used without training and verified on load, `quantgpt pretrain --reproduce`."""

from __future__ import annotations

import dataclasses
import hashlib
import json
import shutil

import pytest
import torch
from safetensors.torch import load_file

from quantgpt.cli import main
from quantgpt.errors import ConfigError
from quantgpt.testbed import pretrained as pretrained_module
from quantgpt.testbed.pretrained import PRETRAINED_SUMMARY, get_pretrained, pretrained_folder
from quantgpt.testbed.recipe import DEFAULT_TEACHER, PRETRAINED_TEACHER_FORMAT, TINY_TEACHER, SCRATCH_TEACHER
from quantgpt.testbed.teacher import get_teacher


def _weights(directory):
    return load_file(directory / "model.safetensors")


def _flip_last_byte(path):
    data = bytearray(path.read_bytes())
    data[-1] ^= 1
    path.write_bytes(bytes(data))


@pytest.fixture(scope="module")
def built(tmp_path_factory, shared_data):
    """The tiny recipe's pretrained checkpoint trained into a cache, and the teacher fine-tuned from it."""
    cache = tmp_path_factory.mktemp("cache")
    nothing_shipped = cache / "no-such-folder"
    pretrained = get_pretrained(TINY_TEACHER, cache, nothing_shipped, shared_data, progress=False, log=lambda _: None)
    teacher = get_teacher(TINY_TEACHER, cache, shared_data, progress=False, log=lambda _: None, pretrained_root=nothing_shipped)
    return pretrained, teacher


def test_pretrain_key_ignores_the_fine_tuning_settings_only():
    key = TINY_TEACHER.pretrain_key()
    assert len(key) == 12
    assert dataclasses.replace(TINY_TEACHER, finetune_steps=99, finetune_learning_rate=5e-4).pretrain_key() == key
    assert dataclasses.replace(TINY_TEACHER, pretrain_steps=4).pretrain_key() != key
    assert dataclasses.replace(TINY_TEACHER, finetune_steps=99).key() != TINY_TEACHER.key()
    # Without pretraining the teacher's key is the one it always had; with it, format 2.
    assert (SCRATCH_TEACHER.key(), dataclasses.replace(SCRATCH_TEACHER, architecture="llama").key()) == ("4bf9a4fc1763", "7b94026ee010")
    settings = {k: v for k, v in TINY_TEACHER.to_dict().items() if k != "architecture"}
    text = json.dumps({"format": PRETRAINED_TEACHER_FORMAT, **settings}, sort_keys=True)
    assert TINY_TEACHER.key() == hashlib.sha256(text.encode()).hexdigest()[:12]


def test_the_build_is_float16_and_reproducible_bit_for_bit(built, tmp_path, shared_data):
    pretrained, teacher = built
    assert pretrained.source == "trained" and pretrained.folder.name == f"pretrained-{TINY_TEACHER.pretrain_key()}"
    assert sorted(p.name for p in pretrained.folder.iterdir()) == ["model", "pretrain", "pretrained.json"]
    assert sorted(p.name for p in pretrained.run_dir.iterdir()) == ["metrics.jsonl", "run_config.json"]
    assert {t.dtype for t in _weights(pretrained.model_dir).values()} == {torch.float16}
    assert {t.dtype for t in _weights(teacher.model_dir).values()} == {torch.float32}  # fine-tuned in float32
    assert pretrained.summary["stage"]["steps"] == TINY_TEACHER.pretrain_steps

    leftover = pretrained_folder(TINY_TEACHER, tmp_path).with_name(f".tmp-pretrained-{TINY_TEACHER.pretrain_key()}")
    (leftover / "work").mkdir(parents=True)  # an interrupted build
    logged = []
    again = get_pretrained(TINY_TEACHER, tmp_path, tmp_path / "none", shared_data, progress=False, log=logged.append)
    assert any("interrupted" in line for line in logged) and not leftover.exists()
    assert again.summary["sha256"] == pretrained.summary["sha256"]  # every file of model/, the weights included


def test_a_shipped_checkpoint_is_used_without_training(built, tmp_path, shared_data, monkeypatch):
    pretrained, teacher = built
    shipped_root = tmp_path / "pretrained"
    shutil.copytree(pretrained.folder, shipped_root / pretrained.folder.name)

    def no_training(*args, **kwargs):
        raise AssertionError("trained although a checkpoint is shipped")

    monkeypatch.setattr(pretrained_module, "build_pretrained", no_training)
    fresh = get_teacher(TINY_TEACHER, tmp_path / "cache", shared_data, progress=False, log=lambda _: None, pretrained_root=shipped_root)
    assert fresh.summary["pretrained"]["source"] == "shipped"
    assert [s["name"] for s in fresh.summary["stages"]] == ["pretrain", "finetune"]
    assert fresh.run_dirs[0] == shipped_root.resolve() / pretrained.folder.name / "pretrain"
    assert fresh.tokenizer_dir.is_dir()
    ours, theirs = _weights(fresh.model_dir), _weights(teacher.model_dir)
    assert ours.keys() == theirs.keys() and all(torch.equal(ours[name], theirs[name]) for name in ours)


def test_a_damaged_shipped_checkpoint_names_the_file(built, tmp_path, shared_data):
    pretrained, _ = built
    shipped = tmp_path / "pretrained" / pretrained.folder.name
    shutil.copytree(pretrained.folder, shipped)
    weights = shipped / "model" / "model.safetensors"
    _flip_last_byte(weights)
    with pytest.raises(ConfigError) as error:
        get_pretrained(TINY_TEACHER, tmp_path / "cache", tmp_path / "pretrained", shared_data, progress=False, log=lambda _: None)
    message = str(error.value)
    assert "\n" not in message and str(weights) in message and "git checkout" in message
    (shipped / PRETRAINED_SUMMARY).unlink()
    with pytest.raises(ConfigError, match="pretrained.json: missing"):
        get_pretrained(TINY_TEACHER, tmp_path / "cache", tmp_path / "pretrained", shared_data, progress=False, log=lambda _: None)


def test_reproduce_compares_a_fresh_build_with_the_shipped_one(built, tmp_path, shared_data, capsys):
    pretrained, _ = built
    shipped_root = tmp_path / "pretrained"
    command = ["pretrain", "--recipe", "tiny", "--reproduce", "--cache", str(tmp_path / "cache"), "--pretrained-root", str(shipped_root),
               "--data-dir", str(shared_data), "--no-progress", "--threads", "1"]
    assert main(command) == 2
    assert "nothing is shipped" in capsys.readouterr().err
    shutil.copytree(pretrained.folder, shipped_root / pretrained.folder.name)
    assert main(command) == 0
    digest = pretrained.summary["sha256"]["model.safetensors"]
    assert f"model.safetensors: equal (rebuilt {digest}, shipped {digest})" in capsys.readouterr().out

    # Shipped weights of another build (consistent with their pretrained.json): different, exit 1.
    shipped = shipped_root / pretrained.folder.name
    weights = shipped / "model" / "model.safetensors"
    _flip_last_byte(weights)
    summary = json.loads((shipped / PRETRAINED_SUMMARY).read_text())
    summary["sha256"]["model.safetensors"] = hashlib.sha256(weights.read_bytes()).hexdigest()
    (shipped / PRETRAINED_SUMMARY).write_text(json.dumps(summary))
    assert main(command) == 1
    assert f"model.safetensors: different (rebuilt {digest}, shipped {summary['sha256']['model.safetensors']})" in capsys.readouterr().out
