"""PersonaChatTask: double-head losses and distillation targets (hand-computed), hits@1, data splits."""

import copy
import math
from types import SimpleNamespace

import pytest
import torch
from torch import nn
from transformers import GPT2DoubleHeadsModel

from quantgpt import QuantConfig, quantize_model
from quantgpt.convert import quantized_weight_modules
from quantgpt.tasks import DataError, PersonaChatDataset
from quantgpt.tasks.personachat_task import (
    MultipleChoiceScorer,
    PersonaChatTask,
    double_head_distill_targets,
    double_head_loss,
)
from quantgpt.training.objectives import ObjectiveConfig, build_objective

import tiny_models  # its tiny_model, not this module's fixture of that name

CPU = SimpleNamespace(process_index=0, num_processes=1, device=torch.device("cpu"), is_main_process=True)
LN2 = math.log(2.0)


@pytest.fixture(scope="module")
def task(shared_data):
    # Its own tokenizer: the task adds special tokens, which must not leak into the shared fixture.
    tokenizer = PersonaChatTask.load_tokenizer(str(shared_data / "gpt2-tokenizer"))
    return PersonaChatTask(tokenizer, data_dir=shared_data, train_split="valid", max_length=128, max_train_examples=6)


@pytest.fixture(scope="module")
def tiny_model(task):
    model = tiny_models.tiny_model("tiny", seed=0, model_class=GPT2DoubleHeadsModel, vocab_size=50257)
    task.prepare_model(model)
    return model.eval()


def toy_batch():
    """One example, two candidates of three positions, V = 2; the true candidate (index 1) has a pad at the end."""
    return {
        "input_ids": torch.tensor([[[0, 1, 0], [1, 0, 1]]]),
        "attention_mask": torch.tensor([[[1, 1, 1], [1, 1, 0]]]),
        "labels": torch.tensor([[[-100, -100, -100], [-100, 0, 1]]]),
        "mc_labels": torch.tensor([1]),
    }


def toy_outputs(true_lm: list[list[float]], distractor_lm: list[list[float]], mc: list[float]):
    return SimpleNamespace(
        logits=torch.tensor([[distractor_lm, true_lm]]), mc_logits=torch.tensor([mc]), hidden_states=None
    )


def test_combined_distillation_loss_by_hand():
    # Student: uniform over V=2 at the true candidate's real positions, so each costs ln 2 whatever
    # the teacher; its padded position and the distractor disagree with the teacher, so counting
    # them would change the result. Multiple choice: student softmax (1/4, 3/4), teacher (1/2, 1/2):
    # -(1/2 ln 1/4 + 1/2 ln 3/4) = 1/2 ln(16/3).
    student = toy_outputs([[0, 0], [0, 0], [0, 9]], [[0, 5]] * 3, [0.0, math.log(3.0)])
    teacher = toy_outputs([[3, 0], [0, 1], [9, 0]], [[5, 0]] * 3, [0.0, 0.0])
    objective = build_objective(ObjectiveConfig(kind="distill"), SimpleNamespace(hidden_size=4, vocab_size=2))
    task = SimpleNamespace(
        distill_targets=lambda outputs, batch: double_head_distill_targets(outputs, batch, "true"),
        task_loss=lambda outputs, batch: torch.tensor(0.0),
    )
    parts = objective(task, student, teacher, toy_batch())
    assert parts["loss"].item() == pytest.approx(LN2 + 0.5 * math.log(16 / 3), abs=1e-6)  # 1.530135

    # "all": the distractor's three positions join the two real ones of the true candidate.
    task.distill_targets = lambda outputs, batch: double_head_distill_targets(outputs, batch, "all")
    p = 1 / (1 + math.exp(-5))  # teacher's softmax of (5, 0); the student's log-softmax of (0, 5) is (-5 - c, -c)
    c = math.log(1 + math.exp(-5))
    distractor = p * (5 + c) + (1 - p) * c
    expected = (2 * LN2 + 3 * distractor) / 5 + 0.5 * math.log(16 / 3)
    assert objective(task, student, teacher, toy_batch())["loss"].item() == pytest.approx(expected, abs=1e-6)


def test_task_loss_by_hand():
    # Labels 0 and 1 at positions 1, 2 are predicted by the logits at 0, 1 (uniform: ln 2 each);
    # position 2's logits and the distractor are never scored. Choice: -ln(3/4) = ln(4/3).
    outputs = toy_outputs([[0, 0], [0, 0], [7, -7]], [[9, -9]] * 3, [0.0, math.log(3.0)])
    total, lm, mc = double_head_loss(outputs, toy_batch())
    assert lm.item() == pytest.approx(LN2)
    assert mc.item() == pytest.approx(math.log(4 / 3))
    assert total.item() == pytest.approx(math.log(8 / 3))  # 0.980829
    total, _, _ = double_head_loss(outputs, toy_batch(), lm_coef=2.0, mc_coef=0.5)
    assert total.item() == pytest.approx(2 * LN2 + 0.5 * math.log(4 / 3))


def test_task_loss_matches_the_models_own_losses(task, tiny_model):
    batch = task.collate([task.train_dataset()[i] for i in range(2)])
    assert batch["input_ids"].shape[:2] == (2, 2)  # train_candidates=2
    with torch.no_grad():
        own = tiny_model(**task.model_inputs(batch), labels=batch["labels"], mc_labels=batch["mc_labels"])
    total, lm, mc = double_head_loss(own, batch)
    assert lm.item() == pytest.approx(own.loss.item(), rel=1e-5)
    assert mc.item() == pytest.approx(own.mc_loss.item(), rel=1e-5)
    assert task.task_loss(own, batch).item() == pytest.approx(total.item())


def test_distill_targets_select_the_true_candidate(task, tiny_model):
    # The last 4 of the official candidates: the true reply is index 3 (LM logits of 20 would take 1 GB).
    dataset = PersonaChatDataset(task.examples("parlai-valid"), task.tokenizer, max_length=128, num_candidates=4)
    batch = task.collate([dataset[0], dataset[1]])
    with torch.no_grad():
        outputs = tiny_model(**task.model_inputs(batch), output_hidden_states=True)
    b, n, length = batch["input_ids"].shape
    assert n == 4 and batch["mc_labels"].tolist() == [3, 3]
    targets = task.distill_targets(outputs, batch)
    (lm_logits, lm_mask), (mc_logits, mc_mask) = targets.logits
    assert torch.equal(lm_logits, outputs.logits[:, 3])
    assert torch.equal(lm_mask, batch["attention_mask"][:, 3].bool())
    assert mc_logits is outputs.mc_logits and mc_mask is None
    assert torch.equal(targets.token_ids, batch["input_ids"][:, 3])
    assert len(targets.hidden_states) == 3  # embeddings + 2 layers
    # Inner entries are flattened (B * N, L, H) by the model, the last one (B, N, L, H).
    assert torch.equal(targets.hidden_states[0][1], outputs.hidden_states[0][1 * n + 3])
    assert torch.equal(targets.hidden_states[-1], outputs.hidden_states[-1][:, 3])
    everything = double_head_distill_targets(outputs, batch, "all")
    assert everything.logits[0][0].shape == (b * n, length, outputs.logits.shape[-1])
    assert everything.hidden_states[1].shape == (b * n, length, 32)
    assert torch.equal(everything.token_mask, batch["attention_mask"].reshape(b * n, length))


def test_multiple_choice_scorer_equals_the_models_mc_logits(task, tiny_model):
    batch = task.collate([task.train_dataset()[2], task.train_dataset()[3]])
    inputs = task.model_inputs(batch)
    student = quantize_model(copy.deepcopy(tiny_model), QuantConfig("quantgpt", "2-2-8")).eval()
    assert "multiple_choice_head.summary" in quantized_weight_modules(student)  # Appendix B.5
    with torch.no_grad():
        for model in (tiny_model, student):
            assert torch.allclose(MultipleChoiceScorer(model)(**inputs).mc_logits, model(**inputs).mc_logits, atol=1e-6)


class ScriptedChooser(nn.Module):
    """A stand-in double-head model whose choice head scores candidate k with `scores[k]`."""

    def __init__(self, scores: list[float]) -> None:
        super().__init__()
        self.weight = nn.Parameter(torch.zeros(1))
        self.scores = torch.tensor(scores)
        self.transformer = lambda input_ids, **_: SimpleNamespace(last_hidden_state=torch.zeros(*input_ids.shape, 1))
        self.multiple_choice_head = lambda hidden, mc_token_ids: self.scores.expand(*mc_token_ids.shape).unsqueeze(-1)


def test_evaluate_counts_the_true_reply_among_20(task):
    # The true reply is the last of the official 20 candidates: ranking the last first is always right.
    assert task.evaluate(ScriptedChooser(list(range(20))), "parlai-valid", CPU) == {"accuracy": 100.0, "examples": 5}
    # A tie is broken towards the first candidate, a distractor.
    assert task.evaluate(ScriptedChooser([0.0] * 20), "parlai-valid", CPU) == {"accuracy": 0.0, "examples": 5}
    scores = [0.0] * 20
    scores[19], scores[3] = 1.0, 2.0
    assert task.evaluate(ScriptedChooser(scores), "parlai-test", CPU)["accuracy"] == 0.0


def test_splits_candidates_and_caps(task):
    assert len(task.train_dataset()) == 6  # max_train_examples
    item = task.train_dataset()[0]
    assert len(item["input_ids"]) == 2 and item["mc_labels"] == 1
    valid = task.examples("valid")
    assert len(valid) == 7801 and all(len(example.candidates) == 20 for example in valid[:50])
    assert len(task.eval_dataset("parlai-test")) == 5
    assert max(len(ids) for ids in task.eval_dataset("valid")[0]["input_ids"]) <= 128
    with pytest.raises(ValueError, match="split='dev' is unknown"):
        task.eval_dataset("dev")
    offline = PersonaChatTask(task.tokenizer)
    with pytest.raises(DataError, match="'parlai-valid' is a local ParlAI fixture: pass --data-dir"):
        offline.eval_dataset("parlai-valid")


def test_prepare_model_is_idempotent(task):
    model = tiny_models.tiny_model("tiny", model_class=GPT2DoubleHeadsModel, n_layer=1, n_embd=8, vocab_size=50257)
    task.prepare_model(model)
    task.prepare_model(model)
    assert model.get_input_embeddings().num_embeddings == len(task.tokenizer) == 50262


@pytest.mark.parametrize(
    ("option", "message"),
    [
        ({"train_candidates": 21}, r"train_candidates=21: allowed is an integer from 1 to 20"),
        ({"distill_candidates": "some"}, "distill_candidates='some': allowed is one of true, all"),
        ({"mc_coef": -1.0}, "mc_coef=-1.0: allowed is a number >= 0"),
        ({"max_history": -1}, "max_history=-1: allowed is an integer >= 0"),
    ],
)
def test_invalid_settings_name_the_field(task, option, message):
    with pytest.raises(ValueError, match=message):
        PersonaChatTask(task.tokenizer, **option)


def test_hub_out_of_reach_is_a_one_line_error(task, monkeypatch):
    import quantgpt.tasks.personachat_task as personachat_task

    def offline(*args, **kwargs):
        raise ConnectionError("Couldn't reach 'AlekseyKorshuk/persona-chat' on the Hub\nmore")

    monkeypatch.setattr(personachat_task, "load_personachat", offline)
    with pytest.raises(ValueError, match=r"^could not read Persona-Chat train from the hub \(Couldn't reach .*\); pass --data-dir"):
        PersonaChatTask(task.tokenizer).train_dataset()
