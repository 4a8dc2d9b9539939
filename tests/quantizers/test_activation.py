"""8-bit activation quantizers: symmetric and asymmetric min-max, straight-through gradient."""

import numpy as np
import torch

from quantgpt.quantizers import ActivationQuantizer


def test_symmetric_8bit_by_hand():
    x = torch.tensor([0.5, -1.01, 0.25, 2.0], requires_grad=True)
    out = ActivationQuantizer(8, symmetric=True)(x)
    # alpha = 2; x / 2 * 127 = [31.75, -64.1, 15.9, 127] -> [32, -64, 16, 127]
    np.testing.assert_allclose(out.detach().numpy(), [2 * 32 / 127, -2 * 64 / 127, 2 * 16 / 127, 2.0], rtol=1e-6)
    out.sum().backward()
    np.testing.assert_allclose(x.grad.numpy(), [1.0, 1.0, 1.0, 1.0])


def test_asymmetric_uses_2_to_the_b_levels_from_min_to_max():
    x = torch.tensor([-0.1, 0.3, 0.9])
    # 2 bits: 4 levels, step (0.9 + 0.1) / 3; (x - min) / step = [0, 1.2, 3] -> [0, 1, 3]
    out = ActivationQuantizer(2, symmetric=False)(x)
    np.testing.assert_allclose(out.numpy(), [-0.1, -0.1 + 1 / 3, 0.9], rtol=1e-6)


def test_asymmetric_8bit_keeps_softmax_outputs_close():
    probs = torch.softmax(torch.randn(4, 16), dim=-1)
    out = ActivationQuantizer(8, symmetric=False)(probs)
    assert (out - probs).abs().max() <= (probs.max() - probs.min()) / 255 / 2 + 1e-7
    assert out.unique().numel() <= 256
