"""BART's denoising corruption (testbed/denoising.py), checked on hand-made token sequences."""

from __future__ import annotations

import itertools

import numpy as np

from quantgpt.testbed.denoising import permute_sentences, span_lengths, text_infilling

MASK = 4
RANDOM_IDS = (5, 9)  # ids a random replacement may take; every test token is >= 100


def test_span_lengths_sum_to_the_masked_count():
    rng = np.random.default_rng(0)
    for count in (1, 7, 30, 77):
        lengths = span_lengths(count, 3.5, rng)
        assert lengths.sum() == count and (lengths >= 0).all()


def test_text_infilling_masks_the_ratio_in_spans_each_one_token():
    tokens = np.arange(100, 200)
    out = text_infilling(tokens, MASK, RANDOM_IDS, np.random.default_rng(1), mask_ratio=0.3, poisson_lambda=3.5, random_ratio=0.0)
    kept = out[out != MASK]
    assert (np.diff(kept) > 0).all()  # the unmasked tokens keep their order
    removed = 100 - len(kept)
    assert 1 <= removed <= 30  # ceil(0.3 * 100) masked, fewer when spans overlap or run past the end
    masks = int((out == MASK).sum())
    assert 1 <= masks <= removed + 30  # one <mask> per span run, plus one per zero-length span
    assert len(out) == len(kept) + masks


def test_text_infilling_with_random_ratio_one_replaces_every_span_by_a_random_token():
    tokens = np.arange(100, 160)
    rng = np.random.default_rng(2)
    out = text_infilling(tokens, MASK, RANDOM_IDS, rng, mask_ratio=0.5, poisson_lambda=100.0, random_ratio=1.0)
    assert MASK not in out  # lambda 100: no zero-length span, so no inserted <mask>
    replaced = out[out < 100]
    assert len(replaced) >= 1 and ((replaced >= 5) & (replaced < 9)).all()


def test_no_masking_leaves_the_tokens_as_they_are():
    tokens = np.arange(100, 110)
    assert (text_infilling(tokens, MASK, RANDOM_IDS, np.random.default_rng(0), mask_ratio=0.0) == tokens).all()


def test_sentence_permutation_reorders_whole_sentences():
    ends = np.zeros(300, dtype=bool)
    ends[[102, 105, 109]] = True
    sentences = [(100, 101, 102), (103, 104, 105), (106, 107, 108, 109), (110, 111)]  # the last: the tail
    tokens = np.arange(100, 112)
    orders = {tuple(sum((sentences[i] for i in order), ())): order for order in itertools.permutations(range(4))}
    seen = set()
    for seed in range(20):
        out = tuple(permute_sentences(tokens, ends, np.random.default_rng(seed)).tolist())
        assert out in orders  # a concatenation of the four sentences, each whole
        seen.add(orders[out])
    assert len(seen) > 1
