"""A new weight quantizer is one class and one registry line: this file defines a toy method,
registers it, and trains it through the same verbs, loop, saving and reports as the paper's."""

from __future__ import annotations

import pytest
import torch
from torch import nn
from tiny_models import tiny_model

from quantgpt import QuantConfig, load_quantized, quantizer_parameters
from quantgpt.api import distill, prepare
from quantgpt.cli import build_parser
from quantgpt.convert import quantized_weight_modules
from quantgpt.quantizers import WEIGHT_QUANTIZERS, WeightQuantizer, display_name, register_weight_quantizer, round_to_grid
from quantgpt.quantizers.base import symmetric
from quantgpt.tasks.lm_task import LanguageModelingTask
from quantgpt.training import TrainingConfig
from quantgpt.training.metrics import read_metrics


class HalfMaxQuantizer(WeightQuantizer):
    """Toy method: clip at alpha = s * max|w| with a learned s (initialized to 1/2); the rounding is
    straight-through, so both w and s get autograd's gradient."""

    display_name = "Toy"

    def __init__(self, bits: int, per_row: bool = False, rows: int | None = None) -> None:
        super().__init__(bits, per_row, rows)
        self.s = nn.Parameter(torch.full(self.parameter_shape(), 0.5))
        self.hook_calls = 0

    def alpha(self, w: torch.Tensor) -> torch.Tensor:
        peak = w.detach().abs().amax(dim=1, keepdim=True) if self.per_row else w.detach().abs().max()
        return self.s * peak

    def forward(self, w: torch.Tensor) -> torch.Tensor:
        alpha = self.alpha(w)
        u = (w / alpha).clamp(-1.0, 1.0)
        return alpha * (u + (round_to_grid(u, self.bits) - u).detach())

    def clipping_range(self, w: torch.Tensor):
        return symmetric(self.alpha(w))

    def after_optimizer_step(self, weight, optimizer) -> None:
        self.hook_calls += 1


@pytest.fixture
def toy_registered(monkeypatch):
    monkeypatch.setitem(WEIGHT_QUANTIZERS, "toy", HalfMaxQuantizer)  # undone after the test
    register_weight_quantizer("toy", HalfMaxQuantizer)  # the one line a new method adds (again: a no-op)


def test_registering_twice_under_one_name_is_refused(toy_registered):
    with pytest.raises(ValueError, match="already registered"):
        register_weight_quantizer("toy", type("Other", (HalfMaxQuantizer,), {}))
    with pytest.raises(TypeError):
        register_weight_quantizer("not-a-quantizer", nn.Linear)


def test_a_registered_toy_quantizer_trains_saves_and_reports(toy_registered, tmp_path, shared_data, gpt2_tokenizer):
    assert display_name("toy") == "Toy"
    args = build_parser()[0].parse_args(["quantize", "--teacher", "t", "--method", "toy", "--output-dir", "o"])
    assert args.method == "toy"  # the command line offers it at once
    teacher = tiny_model("tiny", n_layer=1, vocab_size=len(gpt2_tokenizer), n_positions=32)
    student = prepare(teacher, QuantConfig(method="toy", bits="2-2-8"))
    modules = quantized_weight_modules(student)
    assert all(isinstance(m.weight_quantizer, HalfMaxQuantizer) for m in modules.values())
    assert modules["transformer.wte"].weight_quantizer.s.shape == (len(gpt2_tokenizer), 1)  # row-wise embedding
    initial = {name: m.weight_quantizer.s.detach().clone() for name, m in modules.items()}

    task = LanguageModelingTask(
        gpt2_tokenizer, "wikitext-2", shared_data, block_size=32, train_split="testbed-train", max_train_blocks=8, max_eval_blocks=2
    )
    config = TrainingConfig(
        str(tmp_path / "run"), batch_size=2, max_steps=3, log_every=1, eval_every=0, save_every=0,
        eval_split="testbed-select", progress=False,
    )
    result = distill(task, config, student, teacher)

    assert result.steps == 3
    assert [r["lr_quantizers"] for r in read_metrics(tmp_path / "run") if r["kind"] == "train"][0] == pytest.approx(1e-3)
    assert {id(p) for p in quantizer_parameters(student)} == {id(m.weight_quantizer.s) for m in modules.values()}
    assert all(m.weight_quantizer.hook_calls == 3 for m in modules.values())  # after each optimizer step
    moved = [name for name, m in modules.items() if not torch.equal(m.weight_quantizer.s.detach(), initial[name])]
    assert len(moved) == len(modules)  # every learned clip factor trained
    low, high = modules["transformer.h.0.mlp.c_fc"].weight_quantizer.clipping_range(modules["transformer.h.0.mlp.c_fc"].weight)
    assert float(high) > 0 and float(low) == -float(high)

    loaded = load_quantized(tmp_path / "run" / "best").eval()
    student.eval()
    ids = torch.randint(0, len(gpt2_tokenizer), (1, 16))
    with torch.no_grad():
        torch.testing.assert_close(loaded(input_ids=ids).logits, student(input_ids=ids).logits)
