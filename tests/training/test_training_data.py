"""Which examples each process reads, and capped language-modelling data."""

from __future__ import annotations

import pytest
import torch

from quantgpt.tasks.language_modeling import load_lm_text, tokenize_to_blocks
from quantgpt.tasks.lm_task import LanguageModelingTask
from quantgpt.training.data import StepBatchSampler


def test_steps_cover_each_epoch_once_in_a_seeded_order():
    sampler = StepBatchSampler(num_examples=10, global_batch=4, total_steps=5, seed=3)
    assert sampler.steps_per_epoch == 2  # 10 // 4; the last 2 examples of each epoch's order are dropped
    order0 = torch.randperm(10, generator=torch.Generator().manual_seed(3)).tolist()
    order1 = torch.randperm(10, generator=torch.Generator().manual_seed(4)).tolist()
    assert list(sampler) == [order0[0:4], order0[4:8], order1[0:4], order1[4:8], torch.randperm(
        10, generator=torch.Generator().manual_seed(5)).tolist()[0:4]]


def test_processes_and_accumulation_split_the_same_global_batch():
    whole = StepBatchSampler(12, global_batch=4, total_steps=3, seed=0)
    for accumulation in (1, 2):
        per_process = [
            StepBatchSampler(12, 4, 3, 0, num_processes=2, process_index=rank, accumulation=accumulation) for rank in (0, 1)
        ]
        for step in (1, 2, 3):
            batch = whole.global_batch_indices(step)
            micro = [sampler.micro_batches(step) for sampler in per_process]
            assert all(len(m) == accumulation and all(len(b) == 2 // accumulation for b in m) for m in micro)
            # micro-step a, process p holds slice a of the global batch, then slice p of that
            rebuilt = [i for a in range(accumulation) for p in (0, 1) for i in micro[p][a]]
            assert rebuilt == batch


def test_a_resumed_sampler_continues_where_the_run_stopped():
    full = list(StepBatchSampler(8, global_batch=2, total_steps=9, seed=1, accumulation=2))
    resumed = list(StepBatchSampler(8, global_batch=2, total_steps=9, seed=1, accumulation=2, start_step=5))
    assert resumed == full[10:]  # 5 steps x 2 micro-batches consumed
    assert len(resumed) == 8


def test_sampler_rejects_what_cannot_split():
    with pytest.raises(ValueError, match="fewer than one batch"):
        StepBatchSampler(3, global_batch=4, total_steps=1, seed=0)
    with pytest.raises(ValueError, match="does not split"):
        StepBatchSampler(12, global_batch=4, total_steps=1, seed=0, num_processes=3)


def test_capped_blocks_equal_the_first_blocks_of_the_whole_text(shared_data, gpt2_tokenizer):
    lines = load_lm_text("wikitext-2", "testbed-train", shared_data)
    whole = tokenize_to_blocks(lines, gpt2_tokenizer, 32)
    for cap in (1, 37, 400):
        task = LanguageModelingTask(
            gpt2_tokenizer, "wikitext-2", shared_data, block_size=32, train_split="testbed-train",
            max_train_blocks=cap, max_eval_blocks=cap,
        )
        train = task.train_dataset().blocks
        assert torch.equal(train, whole[:cap])
        evaluation = task.eval_dataset("testbed-train").blocks
        assert len(evaluation) == cap and all(torch.equal(a, b) for a, b in zip(evaluation, whole[:cap]))


def test_lm_task_rejects_bad_settings(shared_data, gpt2_tokenizer, tmp_path):
    with pytest.raises(ValueError, match="dataset=''"):  # any other name is a hub dataset, read when needed
        LanguageModelingTask(gpt2_tokenizer, "", shared_data)
    with pytest.raises(ValueError, match="block_size=1"):
        LanguageModelingTask(gpt2_tokenizer, "wikitext-2", shared_data, block_size=1)
    with pytest.raises(FileNotFoundError, match="--data-dir"):
        LanguageModelingTask(gpt2_tokenizer, "wikitext-2", tmp_path / "nowhere")
    task = LanguageModelingTask(gpt2_tokenizer, "wikitext-2", shared_data)  # no train split here
    with pytest.raises(ValueError, match="train.txt"):
        task.train_dataset()
