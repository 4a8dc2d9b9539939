"""`quantgpt report` on the tiny job's runs: each figure is a PNG of sensible size; clipping ranges,
the table formatter and the step-time reader against numbers computed by hand."""

from __future__ import annotations

import math

import pytest
import torch

from quantgpt.cli import main
from quantgpt.quantizers import DynamicScalingQuantizer, LAQQuantizer, LSQQuantizer, PACTQuantizer
from quantgpt.report import FIGURE_FILES, ResultRow, ratios_to_full_precision, table1_markdown
from quantgpt.testbed.measure import seconds_per_step

from testbed_png import assert_png, png_size


def test_report_command_writes_every_figure(tiny_job, tmp_path, capsys):
    out, _ = tiny_job
    runs = sorted(str(p) for p in (out / "runs").glob("*-2-2-8-seed0"))
    assert len(runs) == 5
    assert main(["report", *runs, "--out", str(tmp_path / "figures")]) == 0
    printed = capsys.readouterr().out
    for name in FIGURE_FILES.values():
        assert_png(tmp_path / "figures" / name)
        assert name in printed
    width, height = png_size(tmp_path / "figures" / FIGURE_FILES["embeddings"])
    assert width > 2 * height  # six panels side by side: full precision and five trained rows


def test_report_of_one_quantgpt_run_still_draws_gamma(tiny_job, tmp_path):
    out, _ = tiny_job
    assert main(["report", str(out / "runs" / "quantgpt-2-2-8-seed0"), "--out", str(tmp_path)]) == 0
    assert_png(tmp_path / FIGURE_FILES["gamma"])


def test_report_refuses_a_folder_that_is_not_a_run(tmp_path, capsys):
    assert main(["report", str(tmp_path)]) == 2
    assert "run_config.json" in capsys.readouterr().err


def test_clipping_ranges_by_hand():
    w = torch.tensor([[0.1, -0.3], [0.2, -0.4]])  # mean |w| = 0.25, max |w| = 0.4
    quantgpt = DynamicScalingQuantizer(2)
    with torch.no_grad():
        quantgpt.gamma.fill_(2.0)
    low, high = quantgpt.clipping_range(w)
    assert math.isclose(float(high), 0.5, rel_tol=1e-6) and math.isclose(float(low), -0.5, rel_tol=1e-6)  # gamma * mean|w|, Eq. 6
    pact = PACTQuantizer(2)
    with torch.no_grad():
        pact.alpha_neg.fill_(0.7)
    assert [round(float(v), 6) for v in pact.clipping_range(w)] == [-0.7, 2.5]
    lsq = LSQQuantizer(4)  # Q_P = 7
    with torch.no_grad():
        lsq.step.fill_(0.05)
    assert math.isclose(float(lsq.clipping_range(w)[1]), 0.35, rel_tol=1e-6)
    laq = LAQQuantizer(2)
    laq.alpha.fill_(0.3)
    assert math.isclose(float(laq.clipping_range(w)[1]), 0.3, rel_tol=1e-6)


def test_table1_ratios_and_compression_by_hand():
    rows = [
        ResultRow("full precision", None, 474.9, {"wikitext-2": 14.48, "ptb": 14.72}),
        ResultRow("quantgpt", "2-2-8", 33.0, {"wikitext-2": 17.30, "ptb": 16.12}),
    ]
    ratios = ratios_to_full_precision(rows)
    assert ratios[0] == {"wikitext-2": 1.0, "ptb": 1.0}
    assert math.isclose(ratios[1]["wikitext-2"], 17.30 / 14.48)  # 1.195, the paper's 2-2-8 ratio
    text = table1_markdown(rows)
    assert "| QuantGPT | 2-2-8 | 33.0 | 14.4x | 17.30 | 1.195 | 16.12 | 1.095 |" in text
    with pytest.raises(ValueError, match="full precision"):
        table1_markdown(rows[1:])


def test_seconds_per_step_uses_records_before_the_first_evaluation():
    # 1000 tokens a step; at step 10 the run had taken 10 s (1000 tok/s), at step 30 it had taken 20 s.
    records = [
        {"kind": "train", "step": 10, "tokens_per_s": 1000.0},
        {"kind": "train", "step": 30, "tokens_per_s": 1500.0},
        {"kind": "eval", "step": 30},
        {"kind": "train", "step": 40, "tokens_per_s": 10.0},  # after an evaluation: not used
    ]
    assert math.isclose(seconds_per_step(records, 1000), 0.5)  # (20 s - 10 s) / 20 steps
    assert seconds_per_step(records[:1], 1000) is None
