"""PACT, LSQ, LAQ and round-to-nearest: forward values and gradients computed by hand."""

import math

import numpy as np
import pytest
import torch

from quantgpt.quantizers import LAQQuantizer, LSQQuantizer, PACTQuantizer, RoundToNearestQuantizer

W = [0.5, -1.0, 0.1, 2.0]
UPSTREAM = [1.0, 2.0, 3.0, 4.0]


def forward_backward(quantizer, w=W, upstream=UPSTREAM):
    w = torch.tensor(w, requires_grad=True)
    out = quantizer(w)
    out.backward(torch.tensor(upstream))
    return w, out.detach()


# ---- PACT (flexible two-sided): alpha_n = 0.8, alpha_p = 1.5 ----


def pact(bits):
    quantizer = PACTQuantizer(bits)
    with torch.no_grad():
        quantizer.alpha_neg.fill_(0.8)
        quantizer.alpha_pos.fill_(1.5)
    return quantizer


def test_pact_initializes_both_factors_to_2_5():
    quantizer = PACTQuantizer(2)
    assert quantizer.alpha_neg.item() == 2.5 and quantizer.alpha_pos.item() == 2.5


@pytest.mark.parametrize(
    "bits, expected",
    [
        (2, [0.0, -0.8, 0.0, 1.5]),  # 0.5/1.5 = 0.33 -> 0; -1.0 clipped to -0.8; 2.0 clipped to 1.5
        (4, [1.5 * 2 / 7, -0.8, 0.0, 1.5]),  # 0.33*7 = 2.33 -> 2; 0.1/1.5*7 = 0.47 -> 0
        (8, [1.5 * 42 / 127, -0.8, 1.5 * 8 / 127, 1.5]),  # 42.33 -> 42; 8.47 -> 8
    ],
)
def test_pact_forward_and_gradients(bits, expected):
    quantizer = pact(bits)
    w, out = forward_backward(quantizer)
    np.testing.assert_allclose(out.numpy(), expected, rtol=1e-6)
    # Only the weights at or beyond a clipping factor feed it; they get no gradient themselves.
    assert quantizer.alpha_pos.grad.item() == pytest.approx(4.0)  # w = 2.0 >= 1.5
    assert quantizer.alpha_neg.grad.item() == pytest.approx(-2.0)  # w = -1.0 <= -0.8, d(-alpha_n)/d alpha_n = -1
    np.testing.assert_allclose(w.grad.numpy(), [1.0, 0.0, 3.0, 0.0])


# ---- LSQ: step initialized to 2 mean|w| / sqrt(Q_P) ----


@pytest.mark.parametrize("bits", [2, 4, 8])
def test_lsq_step_initialization(bits):
    quantizer = LSQQuantizer(bits)
    quantizer.initialize(torch.tensor(W))
    q_p = 2 ** (bits - 1) - 1
    assert quantizer.step.item() == pytest.approx(2 * 0.9 / math.sqrt(q_p))


def lsq_by_hand(bits):
    """LSQ forward and step gradient with plain Python, straight from Esser et al."""
    q_p = 2 ** (bits - 1) - 1
    step = 2 * 0.9 / math.sqrt(q_p)
    out, grad_step, grad_w = [], 0.0, []
    for wi, gi in zip(W, UPSTREAM):
        v = wi / step
        level = max(-q_p, min(q_p, round(v)))
        inside = -q_p <= v <= q_p
        out.append(level * step)
        grad_step += gi * ((level - v) if inside else level)
        grad_w.append(gi if inside else 0.0)
    return out, grad_step / math.sqrt(len(W) * q_p), grad_w


def test_lsq_ternary_worked_example():
    # step = 1.8; v = w/1.8 = [5/18, -10/18, 1/18, 20/18]; levels [0, -1, 0, 1]; last outside.
    # d/ds sum = 1(-5/18) + 2(-1 + 10/18) + 3(-1/18) + 4(1) = 8/3; times 1/sqrt(4 * 1) = 4/3.
    quantizer = LSQQuantizer(2)
    quantizer.initialize(torch.tensor(W))
    w, out = forward_backward(quantizer)
    np.testing.assert_allclose(out.numpy(), [0.0, -1.8, 0.0, 1.8], rtol=1e-6)
    assert quantizer.step.grad.item() == pytest.approx(4 / 3, rel=1e-6)
    np.testing.assert_allclose(w.grad.numpy(), [1.0, 2.0, 3.0, 0.0])


@pytest.mark.parametrize("bits", [2, 4, 8])
def test_lsq_matches_hand_computation(bits):
    quantizer = LSQQuantizer(bits)
    quantizer.initialize(torch.tensor(W))
    w, out = forward_backward(quantizer)
    expected_out, expected_grad_step, expected_grad_w = lsq_by_hand(bits)
    np.testing.assert_allclose(out.numpy(), expected_out, rtol=1e-6)
    assert quantizer.step.grad.item() == pytest.approx(expected_grad_step, rel=1e-5)
    np.testing.assert_allclose(w.grad.numpy(), expected_grad_w)


# ---- LAQ: alternating proximal Newton solver with diagonal Hessian D ----


def test_laq_ternary_with_identity_curvature():
    # D = 1. alpha0 = mean|w| = 0.9 -> b = [1, -1, 0, 1] -> alpha = (0.5 + 1 + 2) / 3 = 7/6
    # -> b = [0, -1, 0, 1] (0.5 < 7/12) -> alpha = (1 + 2) / 2 = 1.5 -> final b = [0, -1, 0, 1].
    quantizer = LAQQuantizer(2, iterations=2)
    w, out = forward_backward(quantizer)
    np.testing.assert_allclose(out.numpy(), [0.0, -1.5, 0.0, 1.5], rtol=1e-6)
    assert quantizer.alpha.item() == pytest.approx(1.5)
    np.testing.assert_allclose(w.grad.numpy(), UPSTREAM)  # straight-through


@pytest.mark.parametrize(
    ("bits", "expected_alpha", "expected"),
    [
        # D = 1, cold start at max|w| = 2. 4 bits, k = 7: w / 2 * 7 = [1.75, -3.85, 0.35, 7] -> c = [2, -4, 0, 7]
        # -> alpha = 7 sum(w c) / sum(c c) = 7 (1 + 4.4 + 14) / 69 = 1.968116; w / alpha * 7 rounds to the same c.
        (4, 7 * 19.4 / 69, [2 / 7 * 7 * 19.4 / 69, -4 / 7 * 7 * 19.4 / 69, 0.0, 7 * 19.4 / 69]),
        # 8 bits, k = 127: w / 2 * 127 = [31.75, -69.85, 6.35, 127] -> c = [32, -70, 6, 127]
        # -> alpha = 127 (16 + 77 + 0.6 + 254) / (1024 + 4900 + 36 + 16129) = 127 x 347.6 / 22089 = 1.998515.
        (8, 127 * 347.6 / 22089, [c * 347.6 / 22089 for c in (32, -70, 6, 127)]),
    ],
)
def test_laq_multibit_with_identity_curvature(bits, expected_alpha, expected):
    quantizer = LAQQuantizer(bits, iterations=1)
    w, out = forward_backward(quantizer, w=[0.5, -1.1, 0.1, 2.0])
    assert quantizer.alpha.item() == pytest.approx(expected_alpha, rel=1e-6)
    np.testing.assert_allclose(out.numpy(), expected, rtol=1e-5, atol=1e-7)
    np.testing.assert_allclose(w.grad.numpy(), UPSTREAM)  # straight-through


def test_laq_uses_the_optimizers_second_moment_as_curvature():
    # v = [9, 1, 1, 1] -> D = sqrt(v) = [3, 1, 1, 1]. alpha0 = (1.5 + 1 + 0.1 + 2) / 6 = 0.767
    # -> b = [1, -1, 0, 1] -> alpha = ||D w b||_1 / ||D b||_1 = (1.5 + 1 + 2) / (3 + 1 + 1) = 0.9 -> stable.
    quantizer = LAQQuantizer(2, iterations=2)
    quantizer.set_curvature(torch.tensor([9.0, 1.0, 1.0, 1.0]))
    _, out = forward_backward(quantizer)
    np.testing.assert_allclose(out.numpy(), [0.9, -0.9, 0.0, 0.9], rtol=1e-5)


def test_laq_warm_starts_from_the_previous_alpha():
    quantizer = LAQQuantizer(2, iterations=1)
    w = torch.tensor(W)
    quantizer(w)  # cold start at 0.9: b = [1, -1, 0, 1] -> alpha = 7/6
    assert quantizer.alpha.item() == pytest.approx(7 / 6)
    quantizer(w)  # warm start at 7/6: b = [0, -1, 0, 1] -> alpha = 1.5, as two iterations from cold
    assert quantizer.alpha.item() == pytest.approx(1.5)


def test_laq_eval_reuses_the_alpha_found_in_training():
    quantizer = LAQQuantizer(4)
    quantizer.set_curvature(torch.rand(6, 7))
    w = torch.randn(6, 7)
    trained = quantizer(w).detach()
    quantizer.eval()
    quantizer.set_curvature(None)
    torch.testing.assert_close(quantizer(w).detach(), trained)
    codes, scale, _ = quantizer.codes(w)
    torch.testing.assert_close(codes.float() * scale, trained)


# ---- round to nearest ----


@pytest.mark.parametrize(
    "bits, expected",
    [(2, [0.0, -2.0, 0.0, 2.0]), (4, [2 * 2 / 7, -2 * 4 / 7, 0.0, 2.0])],  # alpha = max|w| = 2
)
def test_round_to_nearest(bits, expected):
    w, out = forward_backward(RoundToNearestQuantizer(bits), w=[0.5, -1.2, 0.1, 2.0])
    np.testing.assert_allclose(out.numpy(), expected, rtol=1e-6)
    np.testing.assert_allclose(w.grad.numpy(), UPSTREAM)


@pytest.mark.parametrize("cls", [PACTQuantizer, LSQQuantizer, LAQQuantizer, RoundToNearestQuantizer])
@pytest.mark.parametrize("bits", [2, 4, 8])
def test_codes_reproduce_forward_and_stay_on_grid(cls, bits):
    quantizer = cls(bits, per_row=True, rows=6)
    w = torch.randn(6, 9) * 0.5
    quantizer.initialize(w)
    quantizer.eval()
    codes, scale, scale_neg = quantizer.codes(w)
    k = 2 ** (bits - 1) - 1
    assert codes.dtype == torch.int8 and int(codes.abs().max()) <= k
    scales = scale if scale_neg is None else torch.where(codes < 0, scale_neg, scale)
    torch.testing.assert_close(codes.float() * scales, quantizer(w).detach())
    for row in quantizer(w).detach():
        assert row.unique().numel() <= 2 * k + 1


def test_pact_initialized_from_the_weights_clips_nothing_at_the_start():
    w = torch.tensor([[0.06, -0.2, 0.1], [-0.03, 0.04, 0.01]])
    layer_wise = PACTQuantizer(2, init_from="weights")
    layer_wise.initialize(w)
    assert float(layer_wise.alpha_pos.detach()) == pytest.approx(0.1) and float(layer_wise.alpha_neg.detach()) == pytest.approx(0.2)
    row_wise = PACTQuantizer(2, per_row=True, rows=2, init_from="weights")
    row_wise.initialize(w)
    assert row_wise.alpha_pos.flatten().tolist() == pytest.approx([0.1, 0.04])
    assert row_wise.alpha_neg.flatten().tolist() == pytest.approx([0.2, 0.03])
    # Ternary on [-0.2, 0.1]: each side rounds on its own grid, nothing rounds to zero for lack of range.
    assert layer_wise(w).tolist()[0] == pytest.approx([0.1, -0.2, 0.1])
    paper = PACTQuantizer(2)
    paper.initialize(w)
    assert float(paper.alpha_pos) == 2.5 and bool((paper(w) == 0).all())  # the paper's 2.5: every weight is 0
    with pytest.raises(ValueError, match="init_from"):
        PACTQuantizer(2, init_from="max")
