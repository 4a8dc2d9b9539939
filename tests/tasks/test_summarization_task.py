"""SummarizationTask: decoder inputs, losses and distillation targets (hand-computed), ROUGE evaluation."""

import math
from types import SimpleNamespace

import pytest
import torch

import quantgpt.tasks.summarization_task as summarization_task
from quantgpt.tasks.summarization_task import SummarizationTask, seq2seq_distill_targets
from quantgpt.training.objectives import ObjectiveConfig, build_objective

from tiny_models import tiny_model

CPU = SimpleNamespace(process_index=0, num_processes=1, device=torch.device("cpu"), is_main_process=True)


@pytest.fixture(scope="module")
def task(bart_tokenizer, shared_data):
    return SummarizationTask(
        bart_tokenizer, data_dir=shared_data, train_split="sample", max_source_length=64, max_eval_examples=2,
        num_beams=2, max_new_tokens=8,
    )


@pytest.fixture(scope="module")
def tiny_bart(bart_tokenizer):
    return tiny_model("tiny-bart", seed=0, vocab_size=len(bart_tokenizer)).eval()


def test_collator_builds_the_decoder_inputs_by_hand(task):
    records = [
        {"input_ids": [0, 11, 12, 2], "attention_mask": [1, 1, 1, 1], "labels": [0, 21, 22, 2]},
        {"input_ids": [0, 13, 2], "attention_mask": [1, 1, 1], "labels": [0, 23, 2]},
    ]
    batch = task.collate(records)
    # </s> (2) starts decoding, then the labels shifted right; the padded label (-100) becomes <pad> (1).
    assert batch["decoder_input_ids"].tolist() == [[2, 0, 21, 22], [2, 0, 23, 2]]
    assert batch["decoder_attention_mask"].tolist() == [[1, 1, 1, 1], [1, 1, 1, 0]]
    assert batch["labels"].tolist() == [[0, 21, 22, 2], [0, 23, 2, -100]]
    assert batch["input_ids"].tolist() == [[0, 11, 12, 2], [0, 13, 2, 1]]
    assert batch["attention_mask"].tolist() == [[1, 1, 1, 1], [1, 1, 1, 0]]


def test_task_loss_matches_barts_own_loss(task, tiny_bart):
    batch = task.collate([task.train_dataset()[i] for i in range(3)])
    with torch.no_grad():
        own = tiny_bart(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"], labels=batch["labels"])
        ours = tiny_bart(**task.model_inputs(batch))
    # BART shifts the labels itself when given them: the same decoder inputs give the same loss.
    assert task.task_loss(ours, batch).item() == pytest.approx(own.loss.item(), rel=1e-5)


def test_distill_targets_decoder_and_encoder(task, tiny_bart):
    batch = task.collate([task.train_dataset()[i] for i in range(2)])
    with torch.no_grad():
        outputs = tiny_bart(**task.model_inputs(batch), output_hidden_states=True)
    decoder = task.distill_targets(outputs, batch)
    assert decoder.hidden_states is outputs.decoder_hidden_states and len(decoder.hidden_states) == 2
    assert decoder.token_ids is batch["decoder_input_ids"] and decoder.token_mask is batch["decoder_attention_mask"]
    ((logits, mask),) = decoder.logits
    assert logits is outputs.logits and torch.equal(mask, batch["labels"] != -100)
    encoder = seq2seq_distill_targets(outputs, batch, "encoder")
    assert encoder.hidden_states is outputs.encoder_hidden_states
    assert encoder.token_ids is batch["input_ids"] and encoder.token_mask is batch["attention_mask"]
    assert encoder.hidden_states[-1].shape == (*batch["input_ids"].shape, 32)
    with pytest.raises(ValueError, match="states='both': allowed are decoder, encoder"):
        seq2seq_distill_targets(outputs, batch, "both")


def test_logit_distillation_by_hand():
    # One summary of two real tokens and one pad, V = 2. Student (0, 0) costs ln 2 at each real
    # position; student (0, ln 3) against teacher (1/2, 1/2) costs 1/2 ln(16/3). The pad would add 9s.
    batch = {
        "decoder_input_ids": torch.tensor([[2, 0, 1]]),
        "decoder_attention_mask": torch.tensor([[1, 1, 0]]),
        "input_ids": torch.tensor([[0, 5, 2]]),
        "attention_mask": torch.tensor([[1, 1, 1]]),
    }
    student = SimpleNamespace(logits=torch.tensor([[[0.0, 0.0], [0.0, math.log(3.0)], [0.0, 9.0]]]))
    teacher = SimpleNamespace(logits=torch.tensor([[[4.0, 0.0], [0.0, 0.0], [9.0, 0.0]]]))
    for outputs in (student, teacher):
        outputs.decoder_hidden_states = outputs.encoder_hidden_states = None
    objective = build_objective(ObjectiveConfig(kind="distill"), SimpleNamespace(hidden_size=4, vocab_size=2))
    task = SimpleNamespace(distill_targets=seq2seq_distill_targets, task_loss=lambda outputs, batch: torch.tensor(0.0))
    loss = objective(task, student, teacher, batch)["loss"].item()
    assert loss == pytest.approx((math.log(2.0) + 0.5 * math.log(16 / 3)) / 2, abs=1e-6)  # 0.765068


def test_evaluate_averages_rouge_over_documents(task, monkeypatch):
    references = list(task.records("sample", 2)["summary"])
    # The first summary is the reference itself (100), the second shares no word with its reference (0).
    scripted = [references[0], "zzz qqq"]
    monkeypatch.setattr(summarization_task, "generate_summaries", lambda model, tokenizer, documents, **_: scripted)
    monkeypatch.setattr(SummarizationTask, "_reference_loss", lambda self, model, dataset, device: (6.0, 4))
    result = task.evaluate(None, "sample", CPU)
    assert result == {"rouge1": 50.0, "rouge2": 50.0, "rougeL": 50.0, "loss": 1.5, "examples": 2}


def test_evaluate_a_tiny_bart_by_beam_search(task, tiny_bart):
    result = task.evaluate(tiny_bart, "sample", CPU)
    assert set(result) == {"rouge1", "rouge2", "rougeL", "loss", "examples"} and result["examples"] == 2
    assert all(0.0 <= result[key] <= 100.0 for key in ("rouge1", "rouge2", "rougeL"))
    # A random model spreads its probability: the loss is near ln(50265) = 10.83.
    assert result["loss"] == pytest.approx(math.log(50265), abs=0.5)


def test_prepare_model_takes_the_decoder_start_token(bart_tokenizer):
    task = SummarizationTask(bart_tokenizer)
    model = SimpleNamespace(config=SimpleNamespace(decoder_start_token_id=0))
    task.prepare_model(model)
    batch = task.collate([{"input_ids": [0, 2], "attention_mask": [1, 1], "labels": [0, 9, 2]}])
    assert batch["decoder_input_ids"].tolist() == [[0, 0, 9]]


@pytest.mark.parametrize(
    ("option", "message"),
    [
        ({"contrastive_states": "middle"}, "contrastive_states='middle': allowed is one of decoder, encoder"),
        ({"num_beams": 0}, "num_beams=0: allowed is an integer >= 1"),
        ({"no_repeat_ngram_size": -1}, "no_repeat_ngram_size=-1: allowed is None or an integer >= 0"),
    ],
)
def test_invalid_settings_name_the_field(bart_tokenizer, option, message):
    with pytest.raises(ValueError, match=message):
        SummarizationTask(bart_tokenizer, **option)


def test_hub_out_of_reach_is_a_one_line_error(bart_tokenizer, monkeypatch):
    def offline(*args, **kwargs):
        raise ConnectionError("Couldn't reach 'EdinburghNLP/xsum' on the Hub\nmore")

    monkeypatch.setattr(summarization_task, "load_xsum", offline)
    with pytest.raises(ValueError, match=r"^could not read XSum validation from the hub \(Couldn't reach .*\); pass --data-dir"):
        SummarizationTask(bart_tokenizer).eval_dataset("validation")
