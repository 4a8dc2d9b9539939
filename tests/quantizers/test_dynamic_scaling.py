"""Dynamic scaling (Eq. 1, 6, 7): forward values and gradients computed by hand."""

import numpy as np
import pytest
import torch

from quantgpt.quantizers import DynamicScalingQuantizer

W = [0.5, -1.0, 0.1, 2.0]  # mean |w| = 0.9, so alpha = gamma * 0.9 = 0.9 at gamma = 1
UPSTREAM = [1.0, 2.0, 3.0, 4.0]


def run(bits, w=W, upstream=UPSTREAM, **kwargs):
    quantizer = DynamicScalingQuantizer(bits, **kwargs)
    w = torch.tensor(w, requires_grad=True)
    out = quantizer(w)
    out.backward(torch.tensor(upstream))
    return quantizer, w, out


@pytest.mark.parametrize(
    "bits, expected",
    [
        # u = w / 0.9 = [0.556, -1.111, 0.111, 2.222] -> clipped to [-1, 1] -> rounded on the k-grid
        (2, [0.9, -0.9, 0.0, 0.9]),  # k = 1: grid {-1, 0, 1}
        (4, [0.9 * 4 / 7, -0.9, 0.9 * 1 / 7, 0.9]),  # k = 7: 0.556*7 = 3.89 -> 4, 0.111*7 = 0.78 -> 1
        (8, [0.9 * 71 / 127, -0.9, 0.9 * 14 / 127, 0.9]),  # k = 127: 70.56 -> 71, 14.11 -> 14
    ],
)
def test_forward_matches_hand_values(bits, expected):
    _, _, out = run(bits)
    np.testing.assert_allclose(out.detach().numpy(), expected, rtol=1e-6)


@pytest.mark.parametrize(
    "bits, expected_gamma_grad",
    [
        # Eq. 7: inside (|w| < alpha): 0.9 * (Q(u) - u); outside: 0.9 * sign(w). Entries 0, 2 inside; 1, 3 outside.
        (2, 1 * (0.9 * 1 - 0.5) + 2 * (-0.9) + 3 * (0.0 - 0.1) + 4 * 0.9),
        (4, 1 * (0.9 * 4 / 7 - 0.5) + 2 * (-0.9) + 3 * (0.9 / 7 - 0.1) + 4 * 0.9),
        (8, 1 * (0.9 * 71 / 127 - 0.5) + 2 * (-0.9) + 3 * (0.9 * 14 / 127 - 0.1) + 4 * 0.9),
    ],
)
def test_gamma_gradient_is_eq7_by_hand(bits, expected_gamma_grad):
    quantizer, w, _ = run(bits)
    assert quantizer.gamma.grad.item() == pytest.approx(expected_gamma_grad, rel=1e-5)
    # Straight-through estimator: dL/dw = dL/dw_q, outside the clip range too.
    np.testing.assert_allclose(w.grad.numpy(), UPSTREAM)


def test_masked_ste_zeroes_gradient_outside_clip():
    _, w, _ = run(2, masked_ste=True)
    np.testing.assert_allclose(w.grad.numpy(), [1.0, 0.0, 3.0, 0.0])


def eq7_direct(w: np.ndarray, gamma: float, bits: int, upstream: np.ndarray) -> float:
    """Eq. 7 evaluated entry by entry with plain NumPy loops."""
    k = 2 ** (bits - 1) - 1
    mean_abs = np.abs(w).sum() / w.size
    alpha = gamma * mean_abs
    total = 0.0
    for wi, gi in zip(w.ravel(), upstream.ravel()):
        if abs(wi) < alpha:
            u = wi / alpha
            total += gi * mean_abs * (np.round(u * k) / k - u)
        else:
            total += gi * mean_abs * np.sign(wi)
    return total


@pytest.mark.parametrize("bits", [2, 4, 8])
@pytest.mark.parametrize("gamma", [0.7, 1.0, 1.6])
def test_autograd_gamma_gradient_equals_direct_eq7(bits, gamma):
    rng = np.random.default_rng(bits)
    w = rng.standard_t(df=3, size=(16, 24)).astype(np.float64)  # heavy tails, like GPT-2's weights
    upstream = rng.normal(size=w.shape)
    quantizer = DynamicScalingQuantizer(bits).double()
    with torch.no_grad():
        quantizer.gamma.fill_(gamma)
    out = quantizer(torch.tensor(w))
    out.backward(torch.tensor(upstream))
    assert quantizer.gamma.grad.item() == pytest.approx(eq7_direct(w, gamma, bits, upstream), rel=1e-9)


def test_per_row_gamma_has_its_own_eq7_gradient():
    w = np.array([[0.5, -1.0, 0.1, 2.0], [0.2, 0.2, -0.4, 0.0]])
    upstream = np.array([UPSTREAM, [1.0, -1.0, 2.0, 5.0]])
    quantizer = DynamicScalingQuantizer(2, per_row=True, rows=2).double()
    out = quantizer(torch.tensor(w))
    out.backward(torch.tensor(upstream))
    assert quantizer.gamma.shape == (2, 1)
    for row in range(2):
        expected = eq7_direct(w[row], 1.0, 2, upstream[row])
        assert quantizer.gamma.grad[row, 0].item() == pytest.approx(expected, rel=1e-9)
    # Row 1: mean |w| = 0.2, so alpha = 0.2: entries 0.2, 0.2, -0.4 sit at or beyond it.
    np.testing.assert_allclose(out[1].detach().numpy(), [0.2, 0.2, -0.2, 0.0])


def test_codes_times_scale_reproduce_forward():
    quantizer = DynamicScalingQuantizer(4)
    w = torch.randn(8, 5)
    codes, scale, scale_neg = quantizer.codes(w)
    assert codes.dtype == torch.int8 and int(codes.abs().max()) <= 7 and scale_neg is None
    torch.testing.assert_close(codes.float() * scale, quantizer(w).detach())


def test_pact_gamma_gradient_counts_only_clipped_weights():
    """Table 7's "Ours with PACT": entries 1 and 3 are outside alpha = 0.9, so 0.9 * (2 * -1 + 4 * 1)."""
    quantizer, w, _ = run(2, gamma_gradient="pact")
    assert quantizer.gamma.grad.item() == pytest.approx(0.9 * (2 * -1.0 + 4 * 1.0), rel=1e-6)
    np.testing.assert_allclose(w.grad.numpy(), UPSTREAM)


def test_gamma_gradient_is_a_quant_config_setting():
    from quantgpt.config import ConfigError, QuantConfig
    from quantgpt.quantizers import DynamicScalingQuantizer as cls

    assert cls.from_config(2, QuantConfig(gamma_gradient="pact")).gamma_gradient == "pact"
    with pytest.raises(ConfigError, match="gamma_gradient"):
        QuantConfig(gamma_gradient="lsq")
