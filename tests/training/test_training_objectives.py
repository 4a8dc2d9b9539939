"""The objectives' losses against the formulas, on a tiny GPT-2 and a batch of real text."""

from __future__ import annotations

import copy

import pytest
import torch
from transformers import GPT2LMHeadModel

from quantgpt.distill import ContrastiveConfig, hidden_state_mse
from quantgpt.tasks.lm_task import LanguageModelingTask
from quantgpt.training import ObjectiveConfig, TrainingModule, build_objective

from tiny_models import tiny_config


@pytest.fixture(scope="module")
def setup(shared_data, gpt2_tokenizer):
    task = LanguageModelingTask(
        gpt2_tokenizer, "wikitext-2", shared_data, block_size=16, train_split="testbed-train", max_train_blocks=3
    )
    batch = task.collate([task.train_dataset()[i] for i in range(3)])
    batch["attention_mask"][2, 10:] = 0  # a padded tail takes part in no loss
    batch["labels"][2, 10:] = -100
    torch.manual_seed(0)
    config = tiny_config("tiny", vocab_size=len(gpt2_tokenizer))
    teacher = GPT2LMHeadModel(config).eval()
    torch.manual_seed(1)
    student = GPT2LMHeadModel(config).eval()
    return task, batch, student, teacher


def by_formula_soft_ce(student_logits, teacher_logits, mask):
    """Eq. 4 written out: -(1/n) sum_i sum_c p_t(c) log p_s(c) over the n real positions."""
    per_position = -(teacher_logits.softmax(-1) * student_logits.log_softmax(-1)).sum(-1)
    return per_position[mask.bool()].mean()


def test_finetune_objective_is_next_token_cross_entropy(setup):
    task, batch, student, _ = setup
    objective = build_objective(ObjectiveConfig(kind="finetune"), student.config)
    out = TrainingModule(student, objective, task)(batch)
    logits = student(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"]).logits
    labels = batch["input_ids"].masked_fill(batch["attention_mask"] == 0, -100)
    expected = torch.nn.functional.cross_entropy(logits[:, :-1].reshape(-1, logits.size(-1)), labels[:, 1:].reshape(-1))
    torch.testing.assert_close(out["loss"], expected)
    assert out["loss"].requires_grad


def test_distillation_is_logit_loss_plus_lambda_contrastive(setup):
    task, batch, student, teacher = setup
    contrastive = ContrastiveConfig(num_negatives=4, lam=0.1)
    objective = build_objective(ObjectiveConfig.for_method("quantgpt", contrastive), student.config, teacher.config)
    distiller_before = copy.deepcopy(objective.distiller)
    torch.manual_seed(5)
    out = TrainingModule(student, objective, task, teacher)(batch)

    inputs = {"input_ids": batch["input_ids"], "attention_mask": batch["attention_mask"], "output_hidden_states": True}
    s_out, t_out = student(**inputs), teacher(**inputs)
    logit = by_formula_soft_ce(s_out.logits, t_out.logits, batch["attention_mask"])
    torch.manual_seed(5)  # the same negatives
    cont = distiller_before(s_out.hidden_states, t_out.hidden_states, batch["input_ids"], batch["attention_mask"])
    torch.testing.assert_close(out["logit_loss"], logit.detach())
    torch.testing.assert_close(out["contrastive_loss"], cont.detach())
    torch.testing.assert_close(out["loss"], logit + 0.1 * cont)  # Eq. 5
    assert set(out) == {"loss", "logit_loss", "contrastive_loss", "task_loss"}
    # the banks were written (Eq. 3) for exactly the real tokens of the batch
    real_ids = batch["input_ids"][batch["attention_mask"].bool()].unique()
    assert torch.equal(objective.distiller.student_bank.written.nonzero().squeeze(1), real_ids)


def test_baseline_distillation_with_hidden_states(setup):
    task, batch, student, teacher = setup
    objective = build_objective(ObjectiveConfig.for_method("pact", hidden_distill=True), student.config, teacher.config)
    assert objective.distiller is None and objective.needs_hidden_states
    out = TrainingModule(student, objective, task, teacher)(batch)
    inputs = {"input_ids": batch["input_ids"], "attention_mask": batch["attention_mask"], "output_hidden_states": True}
    s_out, t_out = student(**inputs), teacher(**inputs)
    hidden = hidden_state_mse(s_out.hidden_states, t_out.hidden_states, batch["attention_mask"])
    logit = by_formula_soft_ce(s_out.logits, t_out.logits, batch["attention_mask"])
    torch.testing.assert_close(out["loss"], logit + hidden)
    assert "contrastive_loss" not in out


def test_teacher_gets_no_gradient(setup):
    task, batch, student, teacher = setup
    objective = build_objective(ObjectiveConfig.for_method("quantgpt", ContrastiveConfig(num_negatives=4)), student.config)
    student.zero_grad(set_to_none=True)
    TrainingModule(student, objective, task, teacher)(batch)["loss"].backward()
    assert all(p.grad is None for p in teacher.parameters())
    assert student.transformer.h[0].attn.c_attn.weight.grad is not None
    assert objective.distiller.teacher_proj.weight.grad is not None  # the teacher's projection trains


def test_objective_config_validates():
    with pytest.raises(ValueError, match="kind='distil'"):
        ObjectiveConfig(kind="distil")
    with pytest.raises(ValueError, match="no teacher"):
        ObjectiveConfig(kind="finetune", hidden_distill=True)
    assert ObjectiveConfig.for_method("quantgpt").contrastive == ContrastiveConfig()
    assert ObjectiveConfig.for_method("lsq").contrastive is None
    assert ObjectiveConfig.for_method("lsq", use_contrastive=True).contrastive is not None
