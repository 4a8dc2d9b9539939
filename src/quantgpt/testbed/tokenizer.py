"""A small byte-level BPE tokenizer trained on the testbed's own training text.

GPT-2's 50,257-token vocabulary would make the word embedding of a width-256 model the bulk of its
parameters and of its compute on two cores; a vocabulary near 8k, trained on the text the teacher
learns from, keeps the model small while byte-level BPE still encodes any text (no unknown bytes).
The result is a `GPT2TokenizerFast`, saved with `save_pretrained` so that every command loads it
like GPT-2's (`quantgpt.tokenization.load_gpt2_tokenizer(dir)`). The summarization testbed's BART
gets the same kind of vocabulary with BART's special tokens (`train_bart_tokenizer`), saved as a
`BartTokenizerFast`.
"""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path

from tokenizers import AddedToken, Tokenizer, decoders, models, pre_tokenizers, processors, trainers
from transformers import BartTokenizerFast, GPT2TokenizerFast
from ..errors import ConfigError
from ..validators import is_int

END_OF_TEXT = "<|endoftext|>"
# BART's special tokens, in the order (and so with the ids 0-3) of facebook/bart-base; <mask> follows.
BART_SPECIALS = ("<s>", "<pad>", "</s>", "<unk>", "<mask>")
# Lines are fed to the BPE trainer in chunks so that a corpus of millions of lines streams.
_CHUNK_LINES = 1000


def _chunks(lines: Iterable[str]) -> Iterable[str]:
    chunk: list[str] = []
    for line in lines:
        chunk.append(line)
        if len(chunk) == _CHUNK_LINES:
            yield "\n".join(chunk) + "\n"
            chunk = []
    if chunk:
        yield "\n".join(chunk) + "\n"


def _byte_level_bpe(lines: Iterable[str], vocab_size: int, min_frequency: int, special_tokens: list[str]) -> Tokenizer:
    """Byte-level BPE learned from `lines`: the special tokens first (ids 0, 1, ...), the 256 byte
    symbols, then the merges in order of frequency, up to `vocab_size` tokens. No prefix space is
    added, as in GPT-2, so that tokenizing text and decoding the ids gives the text back."""
    if not is_int(vocab_size) or vocab_size < 256 + len(special_tokens) + 1:
        raise ConfigError(
            f"vocab_size={vocab_size!r}: allowed is an integer >= {256 + len(special_tokens) + 1} "
            f"(256 bytes, {len(special_tokens)} special token(s) and a merge)"
        )
    tokenizer = Tokenizer(models.BPE())
    tokenizer.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tokenizer.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        min_frequency=min_frequency,
        special_tokens=special_tokens,
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    tokenizer.train_from_iterator(_chunks(lines), trainer)
    return tokenizer


def train_bpe_tokenizer(
    lines: Iterable[str], vocab_size: int = 8192, min_frequency: int = 2, model_max_length: int = 1024
) -> GPT2TokenizerFast:
    """A GPT-2-style byte-level BPE tokenizer learned from `lines`, with exactly `vocab_size` tokens
    when the text has enough distinct merges (fewer otherwise); `<|endoftext|>` (id 0) is its
    bos/eos/unk token, as GPT-2's."""
    return GPT2TokenizerFast(
        tokenizer_object=_byte_level_bpe(lines, vocab_size, min_frequency, [END_OF_TEXT]),
        bos_token=END_OF_TEXT,
        eos_token=END_OF_TEXT,
        unk_token=END_OF_TEXT,
        model_max_length=model_max_length,
    )


def train_bart_tokenizer(
    lines: Iterable[str], vocab_size: int = 8192, min_frequency: int = 2, model_max_length: int = 1024
) -> BartTokenizerFast:
    """A BART tokenizer learned from `lines`: byte-level BPE as `train_bpe_tokenizer`, with BART's
    special tokens (<s> 0, <pad> 1, </s> 2, <unk> 3, <mask> 4) and BART's framing of every text as
    `<s> ... </s>` (RoBERTa's post-processor, as facebook/bart-base's tokenizer.json)."""
    tokenizer = _byte_level_bpe(lines, vocab_size, min_frequency, list(BART_SPECIALS))
    ids = {token: tokenizer.token_to_id(token) for token in BART_SPECIALS}
    tokenizer.post_processor = processors.RobertaProcessing(("</s>", ids["</s>"]), ("<s>", ids["<s>"]), trim_offsets=False, add_prefix_space=False)
    return BartTokenizerFast(
        tokenizer_object=tokenizer,
        bos_token="<s>", eos_token="</s>", sep_token="</s>", cls_token="<s>", unk_token="<unk>", pad_token="<pad>",
        mask_token=AddedToken("<mask>", lstrip=True, rstrip=False),  # as bart-base: it takes the space before it
        model_max_length=model_max_length,
    )


def save_tokenizer(tokenizer: GPT2TokenizerFast | BartTokenizerFast, directory: str | Path) -> Path:
    """Writes the tokenizer (tokenizer.json and its configs) to `directory`; returns it."""
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    tokenizer.save_pretrained(str(directory))
    return directory
