import pytest
import torch

from quantgpt.distill import hidden_state_mse


def test_masked_mean_over_layers_by_hand():
    student = [torch.tensor([[[1.0, 2.0], [3.0, 4.0]]]), torch.tensor([[[0.0, 0.0], [1.0, 1.0]]])]
    teacher = [torch.tensor([[[1.0, 0.0], [0.0, 0.0]]]), torch.tensor([[[2.0, 2.0], [9.0, 9.0]]])]
    mask = torch.tensor([[1, 0]])  # only the first position is real
    # layer 0: ((1-1)^2 + (2-0)^2) / 2 = 2; layer 1: (4 + 4) / 2 = 4; mean = 3
    assert hidden_state_mse(student, teacher, mask).item() == pytest.approx(3.0)
    # Unmasked, layer 0 adds (9 + 16) / 2 = 12.5 -> (2 + 12.5)/2; layer 1 adds 64 -> (4 + 64)/2.
    assert hidden_state_mse(student, teacher).item() == pytest.approx(((2 + 12.5) / 2 + (4 + 64) / 2) / 2)


def test_layer_count_mismatch_is_rejected():
    with pytest.raises(ValueError, match="one to one"):
        hidden_state_mse([torch.zeros(1, 2, 2)] * 3, [torch.zeros(1, 2, 2)] * 2)
