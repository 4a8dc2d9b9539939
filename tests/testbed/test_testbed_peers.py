"""The torchao peer: torchao's fake quantizer registered as method "torchao", on a tiny GPT-2.

torchao is an optional extra for users (`pip install quantgpt[peers]`) and part of the dev extra, so
these tests run in `make test`; without it a user's job refuses the peer with the install command."""

from __future__ import annotations

import pytest
import torch
from tiny_models import tiny_model

from quantgpt import QuantConfig
from quantgpt.api import prepare
from quantgpt.convert import quantized_weight_modules
from quantgpt.testbed import peers
from quantgpt.testbed.job import TestbedJob


def test_job_without_torchao_names_the_install_command(monkeypatch):
    monkeypatch.setattr(peers, "torchao_available", lambda: False)
    monkeypatch.setattr("quantgpt.testbed.job.torchao_available", lambda: False)
    with pytest.raises(ValueError, match="pip install torchao"):
        TestbedJob(peers=("torchao",))


def test_torchao_student_has_per_output_channel_grids():
    teacher = tiny_model("tiny", n_layer=1, n_embd=16, vocab_size=50, n_positions=8).eval()
    student = prepare(teacher, QuantConfig(method="torchao", bits="2-2-8"))
    modules = quantized_weight_modules(student)
    assert set(modules) == {"transformer.wte", "transformer.h.0.attn.c_attn", "transformer.h.0.attn.c_proj",
                            "transformer.h.0.mlp.c_fc", "transformer.h.0.mlp.c_proj"}
    for name, module in modules.items():
        w = module.weight.detach()
        w = w.t() if getattr(module, "transposed", False) else w  # (out, in): one scale per output row
        # torchao's symmetric int2: scale = max|w_row| / ((1 - (-2)) / 2), codes clamp(round(w / scale), -2, 1).
        scale = w.abs().amax(dim=1, keepdim=True) / 1.5
        expected = torch.clamp(torch.round(w / scale), -2, 1) * scale
        # The row's largest |w| sits exactly on the tie -1.5 or 1.5, which float rounding settles
        # either way: compare every other entry.
        off_tie = w.abs() < w.abs().amax(dim=1, keepdim=True)
        assert torch.allclose(module.quantized_weight().detach()[off_tie], expected[off_tie], atol=1e-6), name
    ids = torch.randint(0, 50, (2, 8))
    assert student(input_ids=ids).logits.shape == (2, 8, 50)
    assert teacher.transformer.h[0].attn.c_attn.__class__.__name__ == "Conv1D"  # the teacher is untouched
