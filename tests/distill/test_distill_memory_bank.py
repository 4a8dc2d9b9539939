import pytest
import torch

from quantgpt.distill import MemoryBank


def test_update_rule_entry_by_entry():
    bank = MemoryBank(vocab_size=6, dim=2)
    ids = torch.tensor([1, 3, 1, -1])
    reps = torch.tensor([[1.0, 2.0], [5.0, 5.0], [3.0, 0.0], [100.0, 100.0]])
    bank.update(ids, reps, momentum=0.5)
    # First write: the representation itself; id 1 twice -> the mean of its two rows.
    assert bank.vectors[1].tolist() == [2.0, 1.0]
    assert bank.vectors[3].tolist() == [5.0, 5.0]
    # Padding (-1) ignored, never-seen rows untouched.
    for row in (0, 2, 4, 5):
        assert bank.vectors[row].tolist() == [0.0, 0.0]
    assert bank.written.tolist() == [False, True, False, True, False, False]

    bank.update(torch.tensor([1, 4]), torch.tensor([[4.0, 3.0], [-2.0, 6.0]]), momentum=0.25)
    # Second write of id 1: 0.25 * old + 0.75 * new.
    assert bank.vectors[1].tolist() == [0.25 * 2.0 + 0.75 * 4.0, 0.25 * 1.0 + 0.75 * 3.0]
    assert bank.vectors[4].tolist() == [-2.0, 6.0]  # first write of id 4
    assert bank.vectors[3].tolist() == [5.0, 5.0]  # not in this batch: unchanged


def test_fill_unwritten_only_touches_new_entries_and_lookup_is_detached():
    bank = MemoryBank(vocab_size=4, dim=2)
    bank.update(torch.tensor([0]), torch.tensor([[1.0, 1.0]]), momentum=0.5)
    reps = torch.tensor([[9.0, 9.0], [2.0, 4.0], [4.0, 0.0]], requires_grad=True)
    bank.fill_unwritten(torch.tensor([0, 2, 2]), reps)
    assert bank.vectors[0].tolist() == [1.0, 1.0]  # written before: kept
    assert bank.vectors[2].tolist() == [3.0, 2.0]  # filled with the mean
    # A fill is not a write: the next update sets the entry to the new representation.
    assert not bank.written[2]
    bank.update(torch.tensor([2]), torch.tensor([[7.0, 7.0]]), momentum=0.5)
    assert bank.vectors[2].tolist() == [7.0, 7.0]
    looked_up = bank.lookup(torch.tensor([[2, 0]]))
    assert looked_up.shape == (1, 2, 2) and not looked_up.requires_grad
    assert looked_up[0, 1].tolist() == [1.0, 1.0]


def test_buffers_round_trip_through_state_dict():
    bank = MemoryBank(vocab_size=5, dim=3)
    bank.update(torch.tensor([4]), torch.tensor([[1.0, 2.0, 3.0]]), momentum=0.5)
    restored = MemoryBank(vocab_size=5, dim=3)
    restored.load_state_dict(bank.state_dict())
    assert torch.equal(restored.vectors, bank.vectors)
    assert torch.equal(restored.written, bank.written)


def test_wrong_dim_is_rejected():
    with pytest.raises(ValueError, match="dim"):
        MemoryBank(vocab_size=5, dim=3).update(torch.tensor([1]), torch.zeros(1, 4), momentum=0.5)
