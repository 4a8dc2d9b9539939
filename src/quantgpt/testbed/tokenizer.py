"""A small byte-level BPE tokenizer trained on the testbed's own training text.

GPT-2's 50,257-token vocabulary would make the word embedding of a width-256 model the bulk of its
parameters and of its compute on two cores; a vocabulary near 8k, trained on the text the teacher
learns from, keeps the model small while byte-level BPE still encodes any text (no unknown bytes).
The result is a `GPT2TokenizerFast`, saved with `save_pretrained` so that every command loads it
like GPT-2's (`quantgpt.tokenization.load_gpt2_tokenizer(dir)`).
"""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path

from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
from transformers import GPT2TokenizerFast
from ..errors import ConfigError
from ..validators import is_int

END_OF_TEXT = "<|endoftext|>"
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


def train_bpe_tokenizer(
    lines: Iterable[str], vocab_size: int = 8192, min_frequency: int = 2, model_max_length: int = 1024
) -> GPT2TokenizerFast:
    """A GPT-2-style byte-level BPE tokenizer learned from `lines`, with exactly `vocab_size` tokens
    when the text has enough distinct merges (fewer otherwise).

    The vocabulary holds `<|endoftext|>` (id 0, also GPT-2's bos/eos/unk token), the 256 byte
    symbols, then the merges in order of frequency; no prefix space is added, as in GPT-2, so that
    tokenizing text and decoding the ids gives the text back.
    """
    if not is_int(vocab_size) or vocab_size < 258:
        raise ConfigError(f"vocab_size={vocab_size!r}: allowed is an integer >= 258 (256 bytes, <|endoftext|> and a merge)")
    tokenizer = Tokenizer(models.BPE())
    tokenizer.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tokenizer.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        min_frequency=min_frequency,
        special_tokens=[END_OF_TEXT],
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    tokenizer.train_from_iterator(_chunks(lines), trainer)
    return GPT2TokenizerFast(
        tokenizer_object=tokenizer,
        bos_token=END_OF_TEXT,
        eos_token=END_OF_TEXT,
        unk_token=END_OF_TEXT,
        model_max_length=model_max_length,
    )


def save_tokenizer(tokenizer: GPT2TokenizerFast, directory: str | Path) -> Path:
    """Writes the tokenizer (tokenizer.json and its configs) to `directory`; returns it."""
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    tokenizer.save_pretrained(str(directory))
    return directory
