import math

import numpy as np
import pytest
import torch

from quantgpt.distill import (
    ContrastiveConfig,
    TokenContrastiveDistiller,
    in_sequence_candidates,
    sample_negatives,
)

TAU = 0.1


def _cos(a: np.ndarray, b: np.ndarray) -> float:
    return float(a @ b / (np.linalg.norm(a) * np.linalg.norm(b)))


def _eq2(anchors, positive_keys, negative_keys_of) -> float:
    """-(1/n) sum_i log(exp(s(a_i, p_i)/tau) / (exp(s(a_i, p_i)/tau) + sum_neg exp(s(a_i, k)/tau)))."""
    total = 0.0
    for i, anchor in enumerate(anchors):
        numerator = math.exp(_cos(anchor, positive_keys[i]) / TAU)
        denominator = numerator + sum(math.exp(_cos(anchor, key) / TAU) for key in negative_keys_of(i))
        total += -math.log(numerator / denominator)
    return total / len(anchors)


def _bank_by_hand(ids, reps) -> dict:
    """A first write: the mean representation of each token id."""
    return {t: np.mean([r for s, r in zip(ids, reps) if s == t], axis=0) for t in set(ids)}


def _identity_distiller(dim: int, vocab: int = 16, **config) -> TokenContrastiveDistiller:
    distiller = TokenContrastiveDistiller(dim, vocab, ContrastiveConfig(tau=TAU, **config))
    with torch.no_grad():
        for proj in (distiller.student_proj, distiller.teacher_proj):
            proj.weight.copy_(torch.eye(dim))
            proj.bias.zero_()
    return distiller


def _negatives_in_sequence(ids):
    """Loop form of the rule: other positions with a different token id."""
    return lambda i: [j for j in range(len(ids)) if j != i and ids[j] != ids[i]]


IDS = [5, 7, 5, 9, 2]


def test_five_token_example_matches_loop_evaluation_of_eq2_over_two_steps():
    torch.manual_seed(0)
    distiller = _identity_distiller(4, num_negatives=32)
    input_ids = torch.tensor([IDS])
    negatives = _negatives_in_sequence(IDS)
    assert negatives(0) == [1, 3, 4]  # position 2 holds token 5 too: never a negative of position 0
    bank_s, bank_t = {}, {}
    for step in range(2):
        hs, ht = torch.randn(1, 5, 4), torch.randn(1, 5, 4)
        s, t = hs[0].numpy().astype(np.float64), ht[0].numpy().astype(np.float64)
        new_s, new_t = _bank_by_hand(IDS, s), _bank_by_hand(IDS, t)
        # Step 0: banks are empty, so they are filled with this step's per-token means first.
        keys_s = [bank_s.get(x, new_s[x]) for x in IDS]
        keys_t = [bank_t.get(x, new_t[x]) for x in IDS]
        s2t = _eq2(s, keys_t, lambda i: [keys_t[j] for j in negatives(i)])
        t2s = _eq2(t, keys_s, lambda i: [keys_s[j] for j in negatives(i)])
        loss = distiller(hs, ht, input_ids)
        assert loss.item() == pytest.approx((s2t + t2s) / 2, rel=1e-5)
        if step == 0:
            # Including the same-token position 2 as a negative of position 0 would change the loss.
            wrong = _eq2(s, keys_t, lambda i: [keys_t[j] for j in range(5) if j != i])
            assert abs(wrong - s2t) > 1e-3
        # Eq. 3 by hand: first write = mean, later m * old + (1 - m) * new with m = 0.5.
        bank_s = {x: 0.5 * bank_s[x] + 0.5 * new_s[x] if x in bank_s else new_s[x] for x in new_s}
        bank_t = {x: 0.5 * bank_t[x] + 0.5 * new_t[x] if x in bank_t else new_t[x] for x in new_t}
        for x in set(IDS):
            assert np.allclose(distiller.student_bank.vectors[x].numpy(), bank_s[x], atol=1e-6)
            assert np.allclose(distiller.teacher_bank.vectors[x].numpy(), bank_t[x], atol=1e-6)
    assert distiller.student_bank.written.nonzero().flatten().tolist() == [2, 5, 7, 9]


def test_padding_positions_take_no_part_immediate_keys():
    torch.manual_seed(1)
    distiller = _identity_distiller(3, negatives="immediate")
    ids = [[4, 6, 4, 8], [1, 2, 3, 0]]
    mask = torch.tensor([[1, 1, 1, 1], [1, 1, 1, 0]])
    hs, ht = torch.randn(2, 4, 3), torch.randn(2, 4, 3)
    s, t = hs.numpy().astype(np.float64), ht.numpy().astype(np.float64)
    # 1/n over the 7 real positions of the batch: weight each sequence's mean by its length.
    expected = 0.0
    for b, length in ((0, 4), (1, 3)):
        seq = ids[b][:length]
        neg = _negatives_in_sequence(seq)
        s2t = _eq2(s[b, :length], t[b, :length], lambda i: [t[b, j] for j in neg(i)])
        t2s = _eq2(t[b, :length], s[b, :length], lambda i: [s[b, j] for j in neg(i)])
        expected += (s2t + t2s) / 2 * length / 7
    assert distiller(hs, ht, torch.tensor(ids), mask).item() == pytest.approx(expected, rel=1e-5)
    assert not distiller.student_bank.written.any()  # immediate keys: no bank


def test_sampled_negatives_respect_the_rules_and_count():
    input_ids = torch.tensor([[1, 1, 1, 2, 3, 4], [1, 1, 1, 1, 2, 0], [1, 2, 3, 4, 5, 6]])
    real = torch.tensor([[1, 1, 1, 1, 1, 1], [1, 1, 1, 1, 1, 0], [1, 1, 1, 1, 1, 1]]).bool()
    candidates = in_sequence_candidates(input_ids, real)
    assert candidates[0, 0].tolist() == [False, False, False, True, True, True]
    assert candidates[1, 0].tolist() == [False, False, False, False, True, False]  # position 5 is padding
    assert not candidates[1, 5].any()
    torch.manual_seed(0)
    chosen = sample_negatives(candidates, num_negatives=2)
    assert not (chosen & ~candidates).any()
    expected_counts = candidates.sum(-1).clamp(max=2)
    assert torch.equal(chosen.sum(-1), expected_counts)
    assert chosen.sum(-1)[1].tolist() == [1, 1, 1, 1, 2, 0]
    # Seeding reproduces the draw.
    torch.manual_seed(0)
    assert torch.equal(sample_negatives(candidates, num_negatives=2), chosen)


def test_sampling_is_uniform_among_candidates():
    candidates = torch.tensor([[True, False, True, True, True, True]]).expand(4000, 6)
    torch.manual_seed(0)
    frequency = sample_negatives(candidates, num_negatives=2).float().mean(0)
    assert frequency[1].item() == 0.0
    # Choose 2 of 5 uniformly: each candidate is picked with probability 0.4.
    assert torch.allclose(frequency[[0, 2, 3, 4, 5]], torch.full((5,), 0.4), atol=0.04)


def test_fewer_negatives_than_candidates_gives_one_of_the_hand_values():
    torch.manual_seed(2)
    ids = [3, 3, 4]
    distiller = _identity_distiller(3, num_negatives=1, negatives="immediate")
    hs, ht = torch.randn(1, 3, 3), torch.randn(1, 3, 3)
    s, t = hs[0].numpy().astype(np.float64), ht[0].numpy().astype(np.float64)
    # Positions 0 and 1 have one candidate (2); position 2 has two (0, 1) and gets one of them.
    possible = set()
    for s_pick in (0, 1):
        for t_pick in (0, 1):
            s2t = _eq2(s, t, lambda i: [t[2]] if i < 2 else [t[s_pick]])
            t2s = _eq2(t, s, lambda i: [s[2]] if i < 2 else [s[t_pick]])
            possible.add(round((s2t + t2s) / 2, 5))
    got = round(distiller(hs, ht, torch.tensor([ids])).item(), 5)
    assert any(abs(got - value) < 1e-4 for value in possible)
    every_candidate = _eq2(s, t, lambda i: [t[2]] if i < 2 else [t[0], t[1]])
    assert all(abs(every_candidate - value) > 1e-4 for value in possible)


def test_gradients_reach_student_and_both_projections_but_not_teacher_or_banks():
    torch.manual_seed(3)
    distiller = TokenContrastiveDistiller(8, 20, ContrastiveConfig(proj_dim=6), teacher_hidden_size=10)
    student_hidden = torch.randn(2, 5, 8, requires_grad=True)
    teacher_hidden = torch.randn(2, 5, 10, requires_grad=True)
    input_ids = torch.randint(0, 20, (2, 5))
    distiller(student_hidden, teacher_hidden, input_ids).backward()
    assert student_hidden.grad is not None and student_hidden.grad.abs().sum() > 0
    assert distiller.student_proj.weight.grad.abs().sum() > 0
    assert distiller.teacher_proj.weight.grad.abs().sum() > 0
    assert teacher_hidden.grad is None
    for bank in (distiller.student_bank, distiller.teacher_bank):
        assert not bank.vectors.requires_grad
        assert bank.vectors.shape == (20, 6)


@pytest.mark.parametrize("source", ["memory_bank", "immediate", "fp+quan", "quan_only", "global", "sequence"])
def test_every_variant_gives_a_finite_loss_with_padding_and_a_hidden_states_tuple(source):
    torch.manual_seed(4)
    distiller = TokenContrastiveDistiller(8, 30, ContrastiveConfig(negatives=source, num_negatives=3, layer=1))
    mask = torch.tensor([[1, 1, 1, 1, 1, 1], [1, 1, 1, 0, 0, 0], [1, 1, 1, 1, 1, 0]])
    for _ in range(2):
        student_states = tuple(torch.randn(3, 6, 8, requires_grad=True) for _ in range(3))
        teacher_states = tuple(torch.randn(3, 6, 8) for _ in range(3))
        loss = distiller(student_states, teacher_states, torch.randint(0, 30, (3, 6)), mask)
        assert torch.isfinite(loss) and loss.item() > 0
        loss.backward()
        # layer=1 picks the first layer: only that entry of the tuple gets a gradient.
        assert student_states[1].grad is not None
        assert student_states[0].grad is None and student_states[2].grad is None


def test_fp_quan_and_quan_only_negatives_by_hand():
    torch.manual_seed(5)
    hs, ht = torch.randn(1, 5, 4), torch.randn(1, 5, 4)
    s, t = hs[0].numpy().astype(np.float64), ht[0].numpy().astype(np.float64)
    neg = _negatives_in_sequence(IDS)
    bank_s, bank_t = _bank_by_hand(IDS, s), _bank_by_hand(IDS, t)
    keys_s, keys_t = [bank_s[x] for x in IDS], [bank_t[x] for x in IDS]
    both_s2t = _eq2(s, keys_t, lambda i: [t[j] for j in neg(i)] + [s[j] for j in neg(i)])
    both_t2s = _eq2(t, keys_s, lambda i: [t[j] for j in neg(i)] + [s[j] for j in neg(i)])
    fp_quan = _identity_distiller(4, negatives="fp+quan")(hs, ht, torch.tensor([IDS]))
    assert fp_quan.item() == pytest.approx((both_s2t + both_t2s) / 2, rel=1e-5)
    own_s2t = _eq2(s, keys_t, lambda i: [s[j] for j in neg(i)])
    own_t2s = _eq2(t, keys_s, lambda i: [t[j] for j in neg(i)])
    quan_only = _identity_distiller(4, negatives="quan_only")(hs, ht, torch.tensor([IDS]))
    assert quan_only.item() == pytest.approx((own_s2t + own_t2s) / 2, rel=1e-5)


def test_global_negatives_are_written_vocabulary_tokens_by_hand():
    torch.manual_seed(6)
    distiller = _identity_distiller(3, vocab=12, negatives="global", num_negatives=50)
    first_ids = [1, 3, 1, 5]
    distiller(torch.randn(1, 4, 3), torch.randn(1, 4, 3), torch.tensor([first_ids]))
    bank_s = {x: distiller.student_bank.vectors[x].double().numpy() for x in (1, 3, 5)}
    bank_t = {x: distiller.teacher_bank.vectors[x].double().numpy() for x in (1, 3, 5)}
    # Second step sees only tokens 1 and 3, but token 5 is written, so it is a negative too.
    hs, ht = torch.randn(1, 2, 3), torch.randn(1, 2, 3)
    s, t = hs[0].numpy().astype(np.float64), ht[0].numpy().astype(np.float64)
    ids = [1, 3]
    others = lambda i: [x for x in (1, 3, 5) if x != ids[i]]  # noqa: E731
    s2t = _eq2(s, [bank_t[x] for x in ids], lambda i: [bank_t[x] for x in others(i)])
    t2s = _eq2(t, [bank_s[x] for x in ids], lambda i: [bank_s[x] for x in others(i)])
    assert distiller(hs, ht, torch.tensor([ids])).item() == pytest.approx((s2t + t2s) / 2, rel=1e-5)


def test_sequence_level_in_batch_contrast_by_hand():
    torch.manual_seed(7)
    distiller = _identity_distiller(3, negatives="sequence")
    mask = torch.tensor([[1, 1, 1], [1, 1, 0], [1, 0, 0]])
    hs, ht = torch.randn(3, 3, 3), torch.randn(3, 3, 3)
    lengths = [3, 2, 1]
    pooled_s = [hs[b, :n].double().mean(0).numpy() for b, n in enumerate(lengths)]
    pooled_t = [ht[b, :n].double().mean(0).numpy() for b, n in enumerate(lengths)]
    others = lambda b: [c for c in range(3) if c != b]  # noqa: E731
    s2t = _eq2(pooled_s, pooled_t, lambda b: [pooled_t[c] for c in others(b)])
    t2s = _eq2(pooled_t, pooled_s, lambda b: [pooled_s[c] for c in others(b)])
    loss = distiller(hs, ht, torch.randint(0, 16, (3, 3)), mask)
    assert loss.item() == pytest.approx((s2t + t2s) / 2, rel=1e-5)


def test_gather_output_drives_the_bank_update():
    torch.manual_seed(8)
    distiller = _identity_distiller(2, vocab=10)
    other_ids = torch.tensor([4, 6, -1])
    other_reps = torch.tensor([[1.0, 3.0], [2.0, 2.0], [50.0, 50.0]])
    calls = []

    def fake_gather(tensor):
        """Stands in for another process whose batch was ids [4, 6, pad]."""
        calls.append(tensor.shape)
        return torch.cat([tensor, other_ids if tensor.dtype == torch.long else other_reps])

    hs, ht = torch.randn(1, 2, 2), torch.randn(1, 2, 2)
    distiller(hs, ht, torch.tensor([[4, 7]]), gather=fake_gather)
    assert calls == [(2,), (2, 2), (2, 2)]
    # Token 4 is seen by both "processes": first write is the mean of both rows.
    expected_4 = (hs[0, 0] + other_reps[0]) / 2
    assert torch.allclose(distiller.student_bank.vectors[4], expected_4)
    assert torch.allclose(distiller.teacher_bank.vectors[4], (ht[0, 0] + other_reps[0]) / 2)
    assert torch.allclose(distiller.student_bank.vectors[7], hs[0, 1])
    assert torch.allclose(distiller.student_bank.vectors[6], other_reps[1])  # only the other process saw it
    assert distiller.student_bank.written.nonzero().flatten().tolist() == [4, 6, 7]


def test_banks_are_restored_from_a_checkpoint():
    torch.manual_seed(9)
    config = ContrastiveConfig()
    distiller = TokenContrastiveDistiller(4, 10, config)
    distiller(torch.randn(1, 3, 4), torch.randn(1, 3, 4), torch.tensor([[1, 2, 3]]))
    restored = TokenContrastiveDistiller(4, 10, config)
    restored.load_state_dict(distiller.state_dict())
    assert torch.equal(restored.teacher_bank.vectors, distiller.teacher_bank.vectors)
    assert restored.student_bank.written.nonzero().flatten().tolist() == [1, 2, 3]


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("tau", 0.0),
        ("momentum", 1.0),
        ("momentum", -0.1),
        ("num_negatives", 0),
        ("num_negatives", 2.5),
        ("lam", -1.0),
        ("proj_dim", 0),
        ("negatives", "in-batch"),
        ("layer", "last"),
    ],
)
def test_config_rejects_bad_values_naming_field_and_value(field, value):
    with pytest.raises(ValueError, match=rf"{field}={value!r}.*allowed") as error:
        ContrastiveConfig(**{field: value})
    assert field in str(error.value)


def test_config_defaults_are_the_papers():
    config = ContrastiveConfig()
    assert (config.tau, config.momentum, config.num_negatives, config.lam) == (0.1, 0.5, 32, 0.1)
    assert config.negatives == "memory_bank" and config.layer == -1 and config.proj_dim is None
