"""The user's own text for --task lm: files (plain text, JSON lines), a dataset directory, the command line."""

from __future__ import annotations

import json

import pytest
import torch
from datasets import Dataset, DatasetDict

from quantgpt.cli import main
from quantgpt.errors import QuantgptError
from quantgpt.tasks.errors import DataError
from quantgpt.tasks.language_modeling import load_lm_text, tokenize_to_blocks
from quantgpt.tasks.lm_task import LanguageModelingTask
from quantgpt.tasks.text_datasets import TextSource, texts_to_lines

BLOCK = 32


@pytest.fixture(scope="module")
def wiki_lines(shared_data):
    return load_lm_text("wikitext-2-raw", "test", shared_data)[:120]


@pytest.fixture
def text_files(tmp_path, wiki_lines):
    """WikiText-2 raw test's first lines as a text file (train) and as JSON lines (valid)."""
    train = tmp_path / "train.txt"
    train.write_text("".join(line + "\n" for line in wiki_lines[:80]), encoding="utf-8")
    valid = tmp_path / "valid.jsonl"
    valid.write_text("".join(json.dumps({"body": line, "id": i}) + "\n" for i, line in enumerate(wiki_lines[80:])))
    return train, valid


def test_a_text_file_tokenizes_like_the_corpus_it_holds(text_files, wiki_lines, gpt2_tokenizer):
    train, valid = text_files
    task = LanguageModelingTask(
        gpt2_tokenizer, dataset="text", data_files={"train": train, "valid": valid}, text_column="body", block_size=BLOCK
    )
    expected = tokenize_to_blocks(wiki_lines[:80], gpt2_tokenizer, BLOCK)
    assert torch.equal(task.train_dataset().blocks, expected)
    # JSON lines: one record a line, in file order.
    eval_blocks = task.eval_dataset("validation").blocks
    assert torch.equal(torch.cat(eval_blocks), torch.cat(tokenize_to_blocks(wiki_lines[80:], gpt2_tokenizer, BLOCK, keep_tail=True)))
    assert task.config()["data_files"] == {"train": str(train), "valid": str(valid)}


def test_a_saved_dataset_directory_and_a_folder_of_files_load_by_split(tmp_path, wiki_lines, gpt2_tokenizer):
    rows = {"train": wiki_lines[:60], "validation": wiki_lines[60:]}
    saved = tmp_path / "saved"
    DatasetDict({split: Dataset.from_dict({"text": lines}) for split, lines in rows.items()}).save_to_disk(saved)
    folder = tmp_path / "folder"
    folder.mkdir()
    for split, lines in rows.items():
        (folder / f"{split}.jsonl").write_text("".join(json.dumps({"text": line}) + "\n" for line in lines))
    for directory in (saved, folder):
        source = TextSource(str(directory))
        assert texts_to_lines(source.texts("train")) == wiki_lines[:60]
        assert texts_to_lines(source.texts("valid")) == wiki_lines[60:]  # "valid" finds "validation"
        with pytest.raises(QuantgptError, match="no split 'test'; it has train, validation"):
            source.texts("test")


def test_rows_ending_in_a_newline_are_not_doubled():
    assert texts_to_lines(["a\n", " = B = \n", "c"]) == ["a", " = B = ", "c"]
    assert texts_to_lines(["whole file\n\nsecond\n"]) == ["whole file", "", "second"]


def test_mistakes_are_named(tmp_path, text_files):
    train, valid = text_files
    with pytest.raises(QuantgptError, match="pass --train-file and --eval-file"):
        TextSource("text")
    with pytest.raises(DataError, match="--eval-file .*nothing.txt: file not found"):
        TextSource("text", {"train": train, "valid": tmp_path / "nothing.txt"})
    with pytest.raises(QuantgptError, match="read with --dataset text, not --dataset wikitext-2"):
        LanguageModelingTask(None, dataset="wikitext-2", data_files={"train": train})
    with pytest.raises(QuantgptError, match="split 'test' has no file .*: pass --test-file"):
        TextSource("text", {"train": train}).texts("test")
    with pytest.raises(DataError, match="no column 'text' \\(columns: body, id\\); pick one with --text-column"):
        TextSource("text", {"valid": valid}).texts("valid")
    broken = tmp_path / "broken.jsonl"
    broken.write_text('{"text": "fine"}\n{"text": \n')
    with pytest.raises(DataError, match="broken.jsonl: expected JSON lines"):
        TextSource("text", {"train": broken}).texts("train")


def test_a_non_utf8_text_file_is_named(tmp_path, capsys):
    latin = tmp_path / "latin.txt"
    latin.write_bytes("caf\u00e9 au lait\n".encode("latin-1"))
    with pytest.raises(DataError, match="latin.txt: expected UTF-8 text \\(invalid continuation byte at byte 3\\)"):
        TextSource("text", {"train": latin}).texts("train")


def test_finetune_then_evaluate_on_your_own_files(tmp_path, text_files, shared_data, capsys):
    train, valid = text_files
    data = ["--task", "lm", "--dataset", "text", "--text-column", "body", "--block-size", str(BLOCK), "--eval-batch-size", "4"]
    code = main([
        "finetune", "--model-config", "tiny", "--tokenizer", str(shared_data / "gpt2-tokenizer"), *data,
        "--train-file", str(train), "--eval-file", str(valid), "--max-steps", "2", "--batch-size", "4",
        "--max-train-blocks", "8", "--max-eval-blocks", "2", "--no-progress", "--output-dir", str(tmp_path / "run"),
    ])
    assert code == 0
    best = json.loads((tmp_path / "run" / "final_metrics.json").read_text())["best"]
    capsys.readouterr()
    code = main(["evaluate", str(tmp_path / "run" / "best"), *data, "--test-file", str(valid), "--max-eval-blocks", "2", "--json"])
    assert code == 0
    result = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert result["perplexity"] == pytest.approx(best["perplexity"], rel=1e-9)


def test_summarization_reads_your_json_lines_files(tmp_path, shared_data, bart_tokenizer):
    from quantgpt.tasks.summarization import load_xsum
    from quantgpt.tasks.summarization_task import SummarizationTask

    sample = load_xsum("sample", shared_data)
    train = tmp_path / "pairs.jsonl"
    train.write_text("".join(json.dumps({"document": r["document"], "summary": r["summary"]}) + "\n" for r in sample))
    task = SummarizationTask(bart_tokenizer, data_files={"train": train, "valid": train}, max_eval_examples=3)
    assert task.records("train", None)["summary"] == sample["summary"]
    assert len(task.eval_dataset("validation")) == 3
    with pytest.raises(QuantgptError, match="split 'test' has no file"):
        task.eval_dataset("test")


def test_a_hub_dataset_is_read_by_split_name(monkeypatch):
    import datasets

    asked = []

    def hub(path, name=None, split=None):
        asked.append((path, name, split))
        if split != "validation":
            raise ValueError(f'Unknown split "{split}". Should be one of [\'train\', \'validation\'].')
        return Dataset.from_dict({"text": [" = Title = \n", " body \n"], "other": [1, 2]})

    monkeypatch.setattr(datasets, "load_dataset", hub)
    assert TextSource("owner/name", dataset_config="cfg").texts("valid") == [" = Title = \n", " body \n"]
    assert asked == [("owner/name", "cfg", "valid"), ("owner/name", "cfg", "validation")]
    with pytest.raises(QuantgptError, match="owner/name \\(cfg\\): Unknown split \"test\""):
        TextSource("owner/name", dataset_config="cfg").texts("test")


def test_reading_your_files_prints_nothing_on_stderr(text_files, gpt2_tokenizer, capfd):
    """stderr is for errors: no "Generating train split" bar for a local file."""
    import datasets.utils as datasets_utils

    train, valid = text_files
    task = LanguageModelingTask(
        gpt2_tokenizer, dataset="text", data_files={"train": train, "valid": valid}, text_column="body", block_size=BLOCK
    )
    capfd.readouterr()
    datasets_utils.enable_progress_bars()
    task.train_dataset()
    task.eval_dataset("validation")
    assert capfd.readouterr().err == ""
    assert not datasets_utils.are_progress_bars_disabled()  # the setting is given back
