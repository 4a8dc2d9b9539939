"""Tokenizers for GPT-2 and BART that load offline from a local GPT-2 BPE directory.

GPT-2 needs only `vocab.json` + `merges.txt`. BART (like RoBERTa) uses the same byte-level BPE and
merges but numbers the tokens in fairseq's dictionary order, so its `vocab.json` is derived from
the GPT-2 one and `fairseq-gpt2-dict.txt` (see ../shared/data/README.md, "Tokenizer"):

    BART id = 4 + line number (0-based) for the first 50,257 lines of the dict, whose entries
    are GPT-2 ids; <s>, <pad>, </s>, <unk> = 0-3; madeupword0000-0002 = 50261-50263;
    <mask> = 50264.

The decoder-only families (GPT-2, Llama, Mistral, Qwen2, OPT) load a saved `tokenizer.json`
exactly as saved (`load_decoder_tokenizer`): `GPT2TokenizerFast.from_pretrained` keeps only its
vocabulary, merges and post-processor and puts GPT-2's pre-tokenizer in place of the saved one,
which gives a Llama/Mistral (Metaspace) or Qwen2 (its own regex) tokenizer the wrong ids.

A name that is not an existing path is treated as a Hugging Face hub name ("gpt2",
"facebook/bart-base"), which needs network access.
"""

from __future__ import annotations

import json
import shutil
import tempfile
from pathlib import Path
from typing import Any

from tokenizers import AddedToken
from transformers import BartTokenizerFast, GPT2TokenizerFast, PreTrainedTokenizerFast

from quantgpt.tasks.errors import DataError

TOKENIZER_GGUF = "tokenizer.gguf"  # llama.cpp's vocabulary of a model that came from a GGUF file

GPT2_VOCAB_SIZE = 50257
BART_VOCAB_SIZE = 50265
GPT2_END_OF_TEXT = "<|endoftext|>"
# Both hub models were trained with 1,024 positions; local files carry no tokenizer_config.json.
MODEL_MAX_LENGTH = 1024
FAIRSEQ_DICT_NAME = "fairseq-gpt2-dict.txt"
BART_SPECIAL_TOKENS = {"<s>": 0, "<pad>": 1, "</s>": 2, "<unk>": 3}
BART_MADEUP_WORDS = {f"madeupword{i:04d}": 50261 + i for i in range(3)}
BART_MASK_ID = 50264


def _local_dir(path_or_name: str | Path) -> Path | None:
    """The local directory meant by `path_or_name`, or None when it is a hub name."""
    path = Path(path_or_name).expanduser()
    if path.exists():
        if not path.is_dir():
            raise DataError(f"{path}: expected a tokenizer directory, found a file")
        return path
    if str(path_or_name).startswith((".", "/", "~")):
        raise DataError(f"{path}: tokenizer directory does not exist")
    return None


def _require_files(directory: Path, names: tuple[str, ...]) -> None:
    missing = [name for name in names if not (directory / name).is_file()]
    if missing:
        raise DataError(f"{directory}: expected tokenizer files {', '.join(missing)}")


def load_gpt2_tokenizer(path_or_name: str | Path = "gpt2") -> GPT2TokenizerFast:
    """GPT-2's byte-level BPE tokenizer (50,257 tokens) from a local directory or the hub.

    A local directory needs `vocab.json` + `merges.txt` (or a saved `tokenizer.json`). No padding
    token is set, as in the original; the task modules add the ones they need.
    """
    directory = _local_dir(path_or_name)
    if directory is None:
        return GPT2TokenizerFast.from_pretrained(str(path_or_name))
    if (directory / "tokenizer.json").is_file():
        return GPT2TokenizerFast.from_pretrained(str(directory))
    _require_files(directory, ("vocab.json", "merges.txt"))
    overrides = {} if (directory / "tokenizer_config.json").is_file() else {"model_max_length": MODEL_MAX_LENGTH}
    return GPT2TokenizerFast.from_pretrained(str(directory), **overrides)


def load_decoder_tokenizer(path_or_name: str | Path = "gpt2") -> Any:
    """A decoder-only model's tokenizer: a saved `tokenizer.json` loaded exactly as saved.

    A local directory with `tokenizer.json` gets its pre-tokenizer, normalizer, decoder and
    post-processor as saved, and the special tokens of its `tokenizer_config.json` /
    `special_tokens_map.json` (GPT-2's `<|endoftext|>` when there are none and the vocabulary has
    it). A `vocab.json` + `merges.txt` directory or a hub name loads as `load_gpt2_tokenizer`.
    """
    directory = _local_dir(path_or_name)
    if directory is None or not (directory / "tokenizer.json").is_file():
        return load_gpt2_tokenizer(path_or_name)
    tokenizer = PreTrainedTokenizerFast.from_pretrained(str(directory))
    if (directory / TOKENIZER_GGUF).is_file():
        tokenizer.gguf_vocabulary = directory / TOKENIZER_GGUF
    has_config = any((directory / name).is_file() for name in ("tokenizer_config.json", "special_tokens_map.json"))
    if not has_config and GPT2_END_OF_TEXT in tokenizer.get_vocab():
        tokenizer.add_special_tokens(dict.fromkeys(("bos_token", "eos_token", "unk_token"), GPT2_END_OF_TEXT))
    return tokenizer


def save_tokenizer(tokenizer: Any, directory: str | Path) -> None:
    """`save_pretrained`, plus the llama.cpp vocabulary it was loaded with (`tokenizer.gguf`, kept
    beside a model that came from a GGUF file), so that a GGUF export copies the original metadata."""
    tokenizer.save_pretrained(str(directory))
    vocabulary = getattr(tokenizer, "gguf_vocabulary", None)
    if vocabulary is not None:
        shutil.copyfile(vocabulary, Path(directory) / TOKENIZER_GGUF)


def build_bart_vocab(gpt2_vocab: dict[str, int], fairseq_dict_path: Path) -> dict[str, int]:
    """BART's token -> id map from GPT-2's token -> id map and fairseq's dictionary file.

    Raises DataError when the dictionary's first 50,257 entries are not exactly the GPT-2 ids.
    """
    gpt2_token_of_id = {token_id: token for token, token_id in gpt2_vocab.items()}
    if len(gpt2_token_of_id) != GPT2_VOCAB_SIZE:
        raise DataError(f"vocab.json: expected {GPT2_VOCAB_SIZE} GPT-2 tokens, found {len(gpt2_token_of_id)}")
    lines = fairseq_dict_path.read_text(encoding="utf-8").splitlines()[:GPT2_VOCAB_SIZE]
    try:
        gpt2_ids = [int(line.split()[0]) for line in lines]
    except (ValueError, IndexError):
        raise DataError(
            f"{fairseq_dict_path}: expected lines '<GPT-2 id> <count>' for the first {GPT2_VOCAB_SIZE} lines"
        ) from None
    if sorted(gpt2_ids) != list(range(GPT2_VOCAB_SIZE)):
        raise DataError(
            f"{fairseq_dict_path}: expected its first {GPT2_VOCAB_SIZE} lines to hold each GPT-2 id exactly once"
        )
    vocab = dict(BART_SPECIAL_TOKENS)
    offset = len(BART_SPECIAL_TOKENS)
    vocab.update({gpt2_token_of_id[gpt2_id]: offset + line for line, gpt2_id in enumerate(gpt2_ids)})
    vocab.update(BART_MADEUP_WORDS)
    vocab["<mask>"] = BART_MASK_ID
    return vocab


def write_bart_tokenizer_files(gpt2_dir: str | Path, out_dir: str | Path) -> Path:
    """Writes BART's `vocab.json` and `merges.txt` derived from a GPT-2 BPE directory; returns out_dir."""
    gpt2_dir, out_dir = Path(gpt2_dir), Path(out_dir)
    _require_files(gpt2_dir, ("vocab.json", "merges.txt", FAIRSEQ_DICT_NAME))
    try:
        gpt2_vocab = json.loads((gpt2_dir / "vocab.json").read_text(encoding="utf-8"))
    except json.JSONDecodeError as error:
        raise DataError(f"{gpt2_dir / 'vocab.json'}: expected a JSON object token -> id ({error})") from None
    vocab = build_bart_vocab(gpt2_vocab, gpt2_dir / FAIRSEQ_DICT_NAME)
    out_dir.mkdir(parents=True, exist_ok=True)
    (out_dir / "vocab.json").write_text(json.dumps(vocab, ensure_ascii=False), encoding="utf-8")
    shutil.copyfile(gpt2_dir / "merges.txt", out_dir / "merges.txt")
    return out_dir


def load_bart_tokenizer(
    path_or_name: str | Path = "facebook/bart-base", cache_dir: str | Path | None = None
) -> BartTokenizerFast:
    """BART's tokenizer (50,265 tokens, ids as facebook/bart-base) from a local directory or the hub.

    A local GPT-2 BPE directory holding `fairseq-gpt2-dict.txt` gets the BART vocabulary derived
    offline; the derived `vocab.json` + `merges.txt` are written to `cache_dir` (kept) or to a
    temporary directory (removed once loaded). A local directory that already holds a BART
    tokenizer (`tokenizer.json`) is loaded as it is.
    """
    directory = _local_dir(path_or_name)
    if directory is None:
        return BartTokenizerFast.from_pretrained(str(path_or_name))
    if (directory / "tokenizer.json").is_file():
        return BartTokenizerFast.from_pretrained(str(directory))
    if not (directory / FAIRSEQ_DICT_NAME).is_file():
        raise DataError(
            f"{directory}: expected {FAIRSEQ_DICT_NAME} next to vocab.json/merges.txt to derive BART's vocabulary"
        )
    # <mask> strips the space before it, as in the hub's bart-base tokenizer_config.json.
    options = {"mask_token": AddedToken("<mask>", lstrip=True, rstrip=False), "model_max_length": MODEL_MAX_LENGTH}
    if cache_dir is not None:
        return BartTokenizerFast.from_pretrained(str(write_bart_tokenizer_files(directory, cache_dir)), **options)
    with tempfile.TemporaryDirectory(prefix="quantgpt-bart-tokenizer-") as tmp:
        return BartTokenizerFast.from_pretrained(str(write_bart_tokenizer_files(directory, tmp)), **options)
