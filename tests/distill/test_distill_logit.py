import math

import numpy as np
import pytest
import torch

from quantgpt.distill import soft_cross_entropy


def _hand_soft_ce(student: np.ndarray, teacher: np.ndarray) -> float:
    """-sum_c p_t(c) log p_s(c) for one position, written out."""
    p_t = np.exp(teacher) / np.exp(teacher).sum()
    log_p_s = student - math.log(np.exp(student).sum())
    return float(-(p_t * log_p_s).sum())


def test_masked_mean_over_real_positions_matches_hand_computation():
    student = np.array([[[1.0, 2.0, 0.5], [0.0, -1.0, 3.0], [9.0, -9.0, 0.0]]])
    teacher = np.array([[[2.0, 1.0, 0.0], [0.5, 0.5, 1.0], [-5.0, 5.0, 0.0]]])
    mask = torch.tensor([[1, 1, 0]])  # the third position is padding
    expected = (_hand_soft_ce(student[0, 0], teacher[0, 0]) + _hand_soft_ce(student[0, 1], teacher[0, 1])) / 2
    got = soft_cross_entropy(torch.tensor(student), torch.tensor(teacher), mask=mask)
    assert got.item() == pytest.approx(expected, rel=1e-6)
    # Without the mask the padding position (a huge disagreement) would count.
    unmasked = soft_cross_entropy(torch.tensor(student), torch.tensor(teacher))
    assert unmasked.item() > expected + 1.0


def test_two_dimensional_logits_and_temperature():
    student = np.array([[0.2, 0.1, -0.3, 1.0], [1.0, 1.0, 1.0, 1.0]])
    teacher = np.array([[1.0, 0.0, 0.0, 2.0], [0.0, 3.0, 0.0, 0.0]])
    expected = np.mean([_hand_soft_ce(s, t) for s, t in zip(student, teacher)])
    got = soft_cross_entropy(torch.tensor(student), torch.tensor(teacher))
    assert got.item() == pytest.approx(expected, rel=1e-6)
    temperature = 2.0
    expected_t = np.mean([_hand_soft_ce(s / 2, t / 2) for s, t in zip(student, teacher)]) * temperature**2
    got_t = soft_cross_entropy(torch.tensor(student), torch.tensor(teacher), temperature=temperature)
    assert got_t.item() == pytest.approx(expected_t, rel=1e-6)


def test_gradient_reaches_student_only():
    student = torch.randn(2, 3, 5, requires_grad=True)
    teacher = torch.randn(2, 3, 5, requires_grad=True)
    soft_cross_entropy(student, teacher).backward()
    # d/dz_s of soft CE = (softmax(z_s) - softmax(z_t)) / N
    expected = (torch.softmax(student, -1) - torch.softmax(teacher, -1)).detach() / 6
    assert torch.allclose(student.grad, expected, atol=1e-6)
    assert teacher.grad is None


def test_shape_mismatch_is_rejected():
    with pytest.raises(ValueError, match="shape"):
        soft_cross_entropy(torch.zeros(2, 3), torch.zeros(2, 4))
    with pytest.raises(ValueError, match="mask"):
        soft_cross_entropy(torch.zeros(2, 3), torch.zeros(2, 3), mask=torch.ones(3))
