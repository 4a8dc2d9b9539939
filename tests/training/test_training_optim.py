"""Optimizer groups, the linear decay to 0, and LAQ's curvature from Adam's second moments."""

from __future__ import annotations

import json

import pytest
import torch
from transformers import GPT2LMHeadModel

from quantgpt import QuantConfig, quantize_model, quantizer_parameters
from quantgpt.convert import after_optimizer_step, quantized_weight_modules
from quantgpt.distill import ContrastiveConfig
from quantgpt.quantizers import LAQQuantizer
from quantgpt.tasks.lm_task import LanguageModelingTask
from quantgpt.training import ObjectiveConfig, TrainingConfig, build_objective, build_optimizer, build_scheduler, train
from quantgpt.training.checkpoints import CHECKPOINTS_DIR
from quantgpt.training.metrics import read_metrics

from tiny_models import tiny_model

VOCAB = 64


def tiny_quantized(method: str, seed: int = 0) -> GPT2LMHeadModel:
    model = tiny_model("tiny", seed=seed, vocab_size=VOCAB, n_positions=16, bos_token_id=0, eos_token_id=0)
    return quantize_model(model, QuantConfig(method, "2-2-8"))


def one_step(model, optimizer, seed: int = 1) -> None:
    torch.manual_seed(seed)
    ids = torch.randint(0, VOCAB, (2, 8))
    model(input_ids=ids, labels=ids).loss.backward()
    optimizer.step()


def test_two_groups_quantizer_parameters_at_their_own_rate():
    model = tiny_quantized("quantgpt")
    objective = build_objective(ObjectiveConfig.for_method("quantgpt", ContrastiveConfig()), model.config, model.config)
    config = TrainingConfig("unused", learning_rate=5e-4, quantizer_learning_rate=1e-3)
    optimizer = build_optimizer(model, objective, config)
    backbone, quantizers = optimizer.param_groups
    assert (backbone["name"], backbone["lr"], quantizers["name"], quantizers["lr"]) == ("backbone", 5e-4, "quantizers", 1e-3)
    # 2 layers x 4 linear layers, one gamma each, and the word embedding's per-row gammas.
    assert sorted(tuple(p.shape) for p in quantizers["params"]) == [()] * 8 + [(VOCAB, 1)]
    assert {id(p) for p in quantizers["params"]} == {id(p) for p in quantizer_parameters(model)}
    projection_ids = {id(p) for p in objective.parameters()}
    assert projection_ids and projection_ids <= {id(p) for p in backbone["params"]}
    assert quantizers["weight_decay"] == 0.0

    gammas = [p.detach().clone() for p in quantizers["params"]]
    weight = model.transformer.h[0].mlp.c_fc.weight
    before = weight.detach().clone()
    one_step(model, optimizer)
    # Adam's first step moves every parameter with a gradient by lr * g / (|g| + eps) = +-lr.
    for old, new in zip(gammas, quantizers["params"]):
        moved = (new.detach() - old).abs()
        assert torch.allclose(moved[moved > 0], torch.tensor(1e-3), rtol=1e-3)
    moved = (weight.detach() - before).abs()
    assert torch.allclose(moved[moved > 1e-7], torch.tensor(5e-4), rtol=1e-2)


def test_schedule_decays_linearly_to_zero():
    model = tiny_quantized("pact")
    optimizer = build_optimizer(model, None, TrainingConfig("unused", learning_rate=5e-4, quantizer_learning_rate=1e-3))
    scheduler = build_scheduler(optimizer, TrainingConfig("unused"), total_steps=4)
    backbone, quantizers = [], []
    for _ in range(4):
        backbone.append(optimizer.param_groups[0]["lr"])
        quantizers.append(optimizer.param_groups[1]["lr"])
        optimizer.step()
        scheduler.step()
    assert backbone == pytest.approx([5e-4, 3.75e-4, 2.5e-4, 1.25e-4])
    assert quantizers == pytest.approx([1e-3, 7.5e-4, 5e-4, 2.5e-4])
    assert [group["lr"] for group in optimizer.param_groups] == [0.0, 0.0]


def test_laq_gets_the_bias_corrected_second_moment():
    model = tiny_quantized("laq")
    optimizer = build_optimizer(model, None, TrainingConfig("unused"))
    laq_modules = {n: m for n, m in quantized_weight_modules(model).items() if isinstance(m.weight_quantizer, LAQQuantizer)}
    assert len(laq_modules) == 9  # 8 linear layers and the word embedding
    after_optimizer_step(model, optimizer)
    assert all(m.weight_quantizer._curvature is None for m in laq_modules.values())  # no second moment before the first step
    torch.manual_seed(1)
    ids = torch.randint(0, VOCAB, (2, 8))
    model(input_ids=ids, labels=ids).loss.backward()
    gradients = {name: module.weight.grad.clone() for name, module in laq_modules.items()}
    optimizer.step()
    after_optimizer_step(model, optimizer)
    for name, module in laq_modules.items():
        # After one step v = (1 - beta2) g^2, bias-corrected v_hat = g^2, so D = sqrt(v_hat) + eps = |g| + 1e-8.
        expected = gradients[name].abs() + 1e-8
        torch.testing.assert_close(module.weight_quantizer._curvature, expected, rtol=1e-5, atol=1e-12, msg=name)


def test_the_loop_hands_curvature_and_logs_decaying_rates(tmp_path, shared_data, gpt2_tokenizer):
    teacher = tiny_model("tiny", seed=0, vocab_size=len(gpt2_tokenizer))
    student = quantize_model(GPT2LMHeadModel(teacher.config), QuantConfig("laq", "2-2-8"))
    student.load_state_dict(teacher.state_dict(), strict=False)
    task = LanguageModelingTask(
        gpt2_tokenizer, "wikitext-2", shared_data, block_size=32, train_split="testbed-train",
        max_train_blocks=8, max_eval_blocks=2,
    )
    config = TrainingConfig(
        str(tmp_path / "run"), batch_size=2, max_steps=4, log_every=1, eval_every=0, save_every=0,
        eval_split="testbed-select", progress=False,
    )
    objective = build_objective(ObjectiveConfig.for_method("laq"), student.config)
    train(student=student, teacher=teacher, task=task, objective=objective, config=config)
    curvatures = [m.weight_quantizer._curvature for m in quantized_weight_modules(student).values()]
    assert len(curvatures) == 9 and all(c is not None and bool((c > 0).all()) for c in curvatures)
    rates = [r["lr"] for r in read_metrics(tmp_path / "run") if r["kind"] == "train"]
    assert rates == pytest.approx([5e-4, 3.75e-4, 2.5e-4, 1.25e-4])  # the rate each step used
    scheduler_state = json.loads((tmp_path / "run" / CHECKPOINTS_DIR / "step-4" / "scheduler.json").read_text())
    assert scheduler_state["_last_lr"] == [0.0]  # after the last step the rate has reached 0
