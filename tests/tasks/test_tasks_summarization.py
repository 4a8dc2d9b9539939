import pytest

from quantgpt.tasks import (
    DataError,
    generate_summaries,
    load_xsum,
    make_summarization_collator,
    rouge_scores,
    tokenize_summarization,
)

from tiny_models import tiny_model


def test_load_local_xsum_splits(shared_data):
    sample = load_xsum("sample", shared_data)
    assert len(sample) == 10
    assert sample[0]["summary"] == "The Met Office has issued a yellow weather warning for ice across most of Wales."
    test = load_xsum("test-1000", shared_data)
    assert len(test) == 1000
    assert set(test.column_names) == {"document", "summary", "id"}


def test_missing_and_malformed_xsum_files(shared_data, tmp_path):
    with pytest.raises(
        DataError, match=r"xsum/validation\.jsonl: file not found \(local XSum splits: sample, test-1000\)"
    ):
        load_xsum("validation", shared_data)
    (tmp_path / "xsum").mkdir()
    (tmp_path / "xsum/bad.jsonl").write_text('{"document": "a", "summary": "b"}\n{"document": "c"}\n')
    with pytest.raises(
        DataError, match=r"bad\.jsonl:2: expected an object with string fields 'document' and 'summary'"
    ):
        load_xsum("bad", tmp_path)


def test_rouge_identical_disjoint_and_partial():
    assert rouge_scores(["the cat sat"], ["the cat sat"]) == {"rouge1": 100.0, "rouge2": 100.0, "rougeL": 100.0}
    assert rouge_scores(["dogs bark loudly"], ["the cat sat"]) == {"rouge1": 0.0, "rouge2": 0.0, "rougeL": 0.0}
    # 5 of 6 unigrams shared (the x2, cat, on, mat); bigrams: the-cat, on-the, the-mat of 5; LCS "the cat on the mat".
    partial = rouge_scores(["the cat sat on the mat"], ["the cat lay on the mat"])
    assert partial == pytest.approx({"rouge1": 100 * 5 / 6, "rouge2": 100 * 3 / 5, "rougeL": 100 * 5 / 6})
    # Means over pairs; the Porter stemmer maps "cats running" to "cat run".
    assert rouge_scores(["the cat sat", "cats running"], ["dogs bark loudly", "cat run"])["rouge1"] == pytest.approx(
        50.0
    )
    with pytest.raises(ValueError, match="2 predictions for 1 references"):
        rouge_scores(["a", "b"], ["a"])


def test_tokenize_and_collate_for_bart(shared_data, bart_tokenizer):
    records = load_xsum("sample", shared_data).select(range(3))
    tokenized = tokenize_summarization(records, bart_tokenizer, max_source_length=32, max_target_length=8)
    assert tokenized.column_names == ["input_ids", "attention_mask", "labels"]
    for row in tokenized:
        assert len(row["input_ids"]) == 32 and len(row["labels"]) <= 8
        assert (row["input_ids"][0], row["input_ids"][-1], row["labels"][0], row["labels"][-1]) == (0, 2, 0, 2)
    short = tokenize_summarization([{"document": "Rain fell.", "summary": "Wet."}], bart_tokenizer)
    batch = make_summarization_collator(bart_tokenizer)([tokenized[0], short[0]])
    assert batch["input_ids"].shape == (2, 32)
    assert batch["input_ids"][1].tolist() == bart_tokenizer("Rain fell.")["input_ids"] + [1] * 27
    summary_ids = bart_tokenizer("Wet.")["input_ids"]
    assert batch["labels"].shape == (2, 8)  # the longest summary, truncated to max_target_length
    assert batch["labels"][1].tolist() == summary_ids + [-100] * (8 - len(summary_ids))


def test_generation_gives_one_summary_per_document(shared_data, bart_tokenizer):
    model = tiny_model("tiny-bart", seed=0, vocab_size=len(bart_tokenizer), max_position_embeddings=128)
    documents = load_xsum("sample", shared_data)["document"][:3]
    summaries = generate_summaries(
        model, bart_tokenizer, documents, max_new_tokens=4, batch_size=2, max_source_length=64, progress=False
    )
    assert len(summaries) == 3
    assert all(isinstance(summary, str) for summary in summaries)
    assert model.training  # mode restored
