import math
from types import SimpleNamespace

import pytest
import torch

from quantgpt.tasks import (
    DataError,
    collate_lm_blocks,
    evaluate_perplexity,
    load_lm_text,
    make_lm_dataloader,
    tokenize_to_blocks,
)

from tiny_models import tiny_model

# The release's line counts (../shared/data/README.md).
LINE_COUNTS = [
    ("wikitext-2", "valid", 3760),
    ("wikitext-2", "test", 4358),
    ("wikitext-2-raw", "test", 4358),
    ("wikitext-103", "valid", 3760),
    ("wikitext-103", "test", 4358),
    ("ptb", "valid", 3370),
    ("ptb", "test", 3761),
]
# GPT-2 BPE tokens of wikitext-2/valid.txt, the whole file tokenized in one piece.
WIKITEXT2_VALID_GPT2_TOKENS = 258_659


@pytest.mark.parametrize(("corpus", "split", "lines"), LINE_COUNTS)
def test_load_lm_text_reads_release_line_counts(shared_data, corpus, split, lines):
    assert len(load_lm_text(corpus, split, shared_data)) == lines


def test_lines_give_back_the_file_byte_for_byte(shared_data):
    lines = load_lm_text("wikitext-2", "valid", shared_data)
    assert lines[:2] == [" ", " = Homarus gammarus = "]
    rebuilt = "".join(line + "\n" for line in lines)
    assert rebuilt.encode("utf-8") == (shared_data / "wikitext-2/valid.txt").read_bytes()


def test_testbed_splits_are_first_90_and_last_10_percent_of_valid(shared_data):
    valid = load_lm_text("wikitext-2", "validation", shared_data)
    train = load_lm_text("wikitext-2", "testbed-train", shared_data)
    select = load_lm_text("wikitext-2", "testbed-select", shared_data)
    assert (len(train), len(select)) == (3384, 376)  # int(0.9 * 3760) = 3384
    assert train + select == valid


def test_missing_file_names_the_path(shared_data):
    with pytest.raises(DataError, match=r"wikitext-2-raw/wiki\.valid\.raw: file not found"):
        load_lm_text("wikitext-2-raw", "valid", shared_data)


def test_malformed_file_is_a_data_error(tmp_path):
    (tmp_path / "ptb").mkdir()
    (tmp_path / "ptb/ptb.test.txt").write_bytes(b"ok\n\xff\xfe\n")
    with pytest.raises(DataError, match=r"ptb\.test\.txt: expected UTF-8"):
        load_lm_text("ptb", "test", tmp_path)


def test_unknown_corpus_and_split_are_rejected(shared_data):
    with pytest.raises(ValueError, match="corpus='wikitext-3' is unknown"):
        load_lm_text("wikitext-3", "test", shared_data)
    with pytest.raises(ValueError, match="split='dev' is unknown"):
        load_lm_text("ptb", "dev", shared_data)


def test_blocks_of_the_real_validation_text(shared_data, gpt2_tokenizer):
    lines = load_lm_text("wikitext-2", "valid", shared_data)
    blocks = tokenize_to_blocks(lines, gpt2_tokenizer, block_size=512)
    assert blocks.shape == (WIKITEXT2_VALID_GPT2_TOKENS // 512, 512) == (505, 512)
    assert blocks.dtype == torch.long
    assert blocks[0, :9].tolist() == gpt2_tokenizer.encode(" \n = Homarus gammarus = \n")[:9]

    with_tail = tokenize_to_blocks(lines, gpt2_tokenizer, block_size=512, keep_tail=True)
    assert len(with_tail) == 506
    assert with_tail[-1].numel() == WIKITEXT2_VALID_GPT2_TOKENS - 505 * 512 == 99
    assert torch.equal(torch.stack(with_tail[:-1]), blocks)


def test_too_short_text_for_one_block_is_an_error(gpt2_tokenizer):
    with pytest.raises(ValueError, match="fewer than one block"):
        tokenize_to_blocks(["a b c"], gpt2_tokenizer, block_size=512)
    assert [block.tolist() for block in tokenize_to_blocks(["a b"], gpt2_tokenizer, 512, keep_tail=True)] == [
        gpt2_tokenizer.encode("a b\n")
    ]


def test_collate_pads_and_masks_the_tail():
    batch = collate_lm_blocks(
        [{"input_ids": torch.tensor([5, 6, 7, 8])}, {"input_ids": torch.tensor([9, 10])}], pad_token_id=0
    )
    assert batch["input_ids"].tolist() == [[5, 6, 7, 8], [9, 10, 0, 0]]
    assert batch["attention_mask"].tolist() == [[1, 1, 1, 1], [1, 1, 0, 0]]
    assert batch["labels"].tolist() == [[5, 6, 7, 8], [9, 10, -100, -100]]


class UniformLM(torch.nn.Module):
    """Equal logits over `vocab` tokens: every token costs exactly log(vocab) nats."""

    def __init__(self, vocab: int):
        super().__init__()
        self.vocab = vocab

    def forward(self, input_ids, attention_mask=None):
        return SimpleNamespace(logits=torch.zeros(*input_ids.shape, self.vocab))


def test_uniform_model_has_perplexity_vocab_size():
    blocks = [torch.tensor([1, 2, 3, 4, 5]), torch.tensor([1, 2])]
    result = evaluate_perplexity(UniformLM(7), make_lm_dataloader(blocks, batch_size=2), progress=False)
    assert result["tokens"] == 4 + 1
    assert result["loss"] == pytest.approx(math.log(7), rel=1e-6)
    assert result["perplexity"] == pytest.approx(7.0, rel=1e-6)


def test_perplexity_is_token_weighted_like_a_loop_over_tokens(shared_data, gpt2_tokenizer):
    model = tiny_model("tiny", seed=0, n_positions=64)
    lines = load_lm_text("wikitext-2", "test", shared_data)[:8]
    blocks = tokenize_to_blocks(lines, gpt2_tokenizer, block_size=48, keep_tail=True)
    assert blocks[-1].numel() < 48  # unequal blocks: a mean of batch means would differ

    total_nll, total_tokens = 0.0, 0
    model.eval()
    with torch.no_grad():
        for block in blocks:
            log_probs = torch.log_softmax(model(block[None]).logits[0].double(), dim=-1)
            for position in range(block.numel() - 1):
                total_nll -= log_probs[position, block[position + 1]].item()
                total_tokens += 1

    model.train()
    result = evaluate_perplexity(model, make_lm_dataloader(blocks, batch_size=3), progress=False)
    assert model.training  # mode restored
    assert result["tokens"] == total_tokens == sum(block.numel() for block in blocks) - len(blocks)
    assert result["loss"] == pytest.approx(total_nll / total_tokens, rel=1e-5)
    assert result["perplexity"] == pytest.approx(math.exp(total_nll / total_tokens), rel=1e-5)
