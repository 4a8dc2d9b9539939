"""Write a quantized decoder-only model as a GGUF file that llama.cpp runs, with our codes exactly.

The weights are the packed export's: the same integer codes and the same fp16 scales
(`packed_entries`), laid out in llama.cpp's block types, each block holding one fp16 scale `d`:

    bits   GGML type                 block  block bytes  a block dequantizes to
    2      TQ2_0 (default, fastest)  256    66           (trit - 1) * d, trit = code + 1
    2      TQ1_0 (smallest)          256    54           the same, five trits a byte
    2      Q2_0 (width % 256 != 0)   64     18           (q - 1) * d, q = code + 1
    3-4    Q4_0                      32     18           (nibble - 8) * d, nibble = code + 8
    5-8    Q8_0                      32     34           int8 * d, int8 = code

with d = alpha / k, the stored scale. The type is chosen per tensor by its input width: a ternary
matrix goes to TQ2_0 (or TQ1_0) where the width is a multiple of 256 and to Q2_0 where it is a
multiple of 64 (SmolLM2's 576, Qwen2.5-0.5B's 896), never to a type of more bits; a width no
type fits is an error. A per-matrix scale becomes every block's `d`, the word
embedding's per-row scale the `d` of each of its row's blocks. The tied LM head is not written:
llama.cpp then multiplies by the token embedding; an untied one is `output.weight`, row-wise like
the embedding. Llama's (and Mistral's) q/k rows are reordered as llama.cpp's converter reorders
them for its rotary layout, codes and per-row scales together; Qwen2's are not (llama.cpp rotates
them as Transformers does). The position embedding is F16, or blocks of the
same table at `position_bits`; LayerNorm weights and biases are F32, as llama.cpp's converter keeps
one-dimensional tensors. Every quantized tensor is dequantized with `gguf.quants.dequantize` before
it is written and must equal codes x fp16 scales to the bit.

Names and metadata follow llama.cpp's own converter (`convert_hf_to_gguf.py`): tensor names from
`gguf.get_tensor_name_map`, the architecture's hyperparameters as its model class writes them, the
byte-level BPE vocabulary as `get_vocab_base` and `gguf.SpecialVocab` write it. The file itself is
written by `gguf.GGUFWriter`.
"""

from __future__ import annotations

import functools
import hashlib
import json
import tempfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from ..errors import InputFileError, OutputPathError, QuantgptError, UsageError
from ..model_sources import TokenizerFields, add_tokenizer_fields, is_gguf_file, read_tokenizer_gguf
from ..serialization import load_quantized
from .exporter import fp32_parameter_bytes, packed_entries, resolve_quantized_dir
from .output_path import check_output_path, staged_output
from .packed_format import DenseTensor, PackedTensor

TERNARY_TYPES = ("tq2_0", "tq1_0")
DEFAULT_TERNARY_TYPE = "tq2_0"


class MissingGGUFError(UsageError, ModuleNotFoundError):
    """The `gguf` package (the `quantgpt[gguf]` extra) is not installed."""


def _gguf():
    try:
        import gguf
    except ModuleNotFoundError:
        raise MissingGGUFError(
            "--format gguf needs the gguf package: pip install 'quantgpt[gguf]' (or pip install gguf)"
        ) from None
    return gguf


# ------------------------------------------------------------------------------ architectures


def _gpt2_hyperparameters(config: Any) -> dict[str, Any]:
    """What llama.cpp's converter writes for GPT2LMHeadModel (its GPT2Model.set_gguf_parameters)."""
    return {
        "block_count": config.n_layer,
        "context_length": config.n_positions,
        "embedding_length": config.n_embd,
        "feed_forward_length": config.n_inner or 4 * config.n_embd,
        "head_count": config.n_head,
        "layer_norm_eps": config.layer_norm_epsilon,
    }


def _check_gpt2(config: Any) -> None:
    """llama.cpp's GPT-2 graph is the standard one: tanh GeLU, attention scaled by 1/sqrt(head dim)."""
    if config.activation_function not in ("gelu_new", "gelu_pytorch_tanh", "gelu_fast"):
        raise UsageError(
            f"activation_function={config.activation_function!r}: llama.cpp's GPT-2 uses the tanh GeLU "
            "(gelu_new); this model would run differently there"
        )
    if not config.scale_attn_weights or config.scale_attn_by_inverse_layer_idx:
        raise UsageError("this GPT-2 scales attention differently from llama.cpp's (1/sqrt(head dim) in every layer)")


def _head_dim(config: Any) -> int:
    return getattr(config, "head_dim", None) or config.hidden_size // config.num_attention_heads


def _rope_theta(config: Any) -> float:
    """The rotary base, refusing a scaled rotary embedding (llama.cpp would need its own keys for it)."""
    rope = getattr(config, "rope_parameters", None) or getattr(config, "rope_scaling", None) or {}
    kind = rope.get("rope_type", rope.get("type", "default"))
    if kind != "default":
        raise UsageError(f"rope type {kind!r}: quantgpt writes GGUF only for the plain rotary embedding")
    return float(rope.get("rope_theta", getattr(config, "rope_theta", None) or 10000.0))


def _llama_hyperparameters(config: Any) -> dict[str, Any]:
    """What llama.cpp's converter writes for LlamaForCausalLM, MistralForCausalLM (its LlamaModel) and
    Qwen2ForCausalLM (Qwen2Model: the same keys; it leaves the rotary dimensions at the head's).

    A Mistral sliding window shorter than the positions caps the context, where both attend alike.
    """
    heads, head_dim = config.num_attention_heads, _head_dim(config)
    window = getattr(config, "sliding_window", None) if config.model_type == "mistral" else None
    values = {
        "block_count": config.num_hidden_layers,
        "context_length": min(config.max_position_embeddings, window or config.max_position_embeddings),
        "embedding_length": config.hidden_size,
        "feed_forward_length": config.intermediate_size,
        "head_count": heads,
        "head_count_kv": config.num_key_value_heads or heads,
        "rope_freq_base": _rope_theta(config),
        "layer_norm_rms_eps": config.rms_norm_eps,
        "rope_dimension_count": head_dim,
        "vocab_size": config.vocab_size,
    }
    if heads * head_dim != config.hidden_size:
        values.update(key_length=head_dim, value_length=head_dim)
    return values


def _check_llama(config: Any) -> None:
    """llama.cpp's llama and qwen2 graphs: SiLU-gated MLP without biases, full attention."""
    if config.hidden_act != "silu":
        raise UsageError(f"hidden_act={config.hidden_act!r}: llama.cpp's {config.model_type} uses SiLU")
    if getattr(config, "mlp_bias", False):
        raise UsageError("mlp_bias=True: llama.cpp's llama graph has no MLP biases")
    if getattr(config, "use_sliding_window", False):
        raise UsageError("use_sliding_window=True: llama.cpp's qwen2 attends to the whole context")
    _rope_theta(config)


def _llama_rotary_rows(name: str, config: Any) -> np.ndarray | None:
    """The row order llama.cpp's converter gives q_proj and k_proj (`LlamaModel.permute`).

    Transformers rotates the two halves of each head (rotate_half); llama.cpp's llama graph rotates
    adjacent pairs, so each head's rows (h, half, j) move to (h, j, half). Row i of the GGUF tensor
    is row `order[i]` of ours, codes and per-row scales alike.
    """
    if name.endswith(("q_proj.weight", "q_proj.bias")):
        heads = config.num_attention_heads
    elif name.endswith(("k_proj.weight", "k_proj.bias")):
        heads = config.num_key_value_heads or config.num_attention_heads
    else:
        return None
    return np.arange(heads * _head_dim(config)).reshape(heads, 2, -1).swapaxes(1, 2).reshape(-1)


@dataclass(frozen=True)
class GGUFArchitecture:
    """How one Transformers model type becomes a llama.cpp model.

    `arch` names the GGUF architecture (its tensor names come from `gguf.get_tensor_name_map`),
    `hyperparameters` gives the `GGUFWriter.add_<key>` values from the model's config (what
    llama.cpp's converter writes for that class), `check` refuses a config llama.cpp would run
    differently, `row_order` gives the order llama.cpp's converter puts a tensor's rows in (None:
    as they are).
    """

    arch: str  # a gguf.MODEL_ARCH member name
    model_classes: tuple[str, ...]
    hyperparameters: Callable[[Any], dict[str, Any]]
    check: Callable[[Any], None] | None = None
    row_order: Callable[[str, Any], np.ndarray | None] | None = None


# Keyed by `config.model_type`; one row per decoder-only architecture quantgpt quantizes. Where
# llama.cpp's converter reorders a tensor's rows (Llama's q/k heads for its rotary layout), the
# codes and per-row scales must be reordered the same way before encoding.
GGUF_ARCHITECTURES: dict[str, GGUFArchitecture] = {
    "gpt2": GGUFArchitecture("GPT2", ("GPT2LMHeadModel",), _gpt2_hyperparameters, _check_gpt2),
    "llama": GGUFArchitecture("LLAMA", ("LlamaForCausalLM",), _llama_hyperparameters, _check_llama, _llama_rotary_rows),
    # llama.cpp's converter writes Mistral as a llama (the same graph).
    "mistral": GGUFArchitecture("LLAMA", ("MistralForCausalLM",), _llama_hyperparameters, _check_llama, _llama_rotary_rows),
    "qwen2": GGUFArchitecture("QWEN2", ("Qwen2ForCausalLM",), _llama_hyperparameters, _check_llama),
}
# Architectures quantgpt quantizes that llama.cpp cannot run, and why.
NO_GGUF_ARCHITECTURE = {"opt": "llama.cpp has no OPT architecture"}


def gguf_architecture_of(model: nn.Module) -> GGUFArchitecture:
    """The table row for `model`, or an error naming the classes that can be written as GGUF."""
    model_type = getattr(model.config, "model_type", None)
    row = GGUF_ARCHITECTURES.get(model_type)
    if row is None or type(model).__name__ not in row.model_classes:
        supported = ", ".join(name for r in GGUF_ARCHITECTURES.values() for name in r.model_classes)
        reason = f" ({NO_GGUF_ARCHITECTURE[model_type]})" if model_type in NO_GGUF_ARCHITECTURE else ""
        raise UsageError(
            f"{type(model).__name__} (model_type={model_type!r}) cannot be written as GGUF{reason}: supported are "
            f"{supported}; export it in the packed format instead"
        )
    return row


# ------------------------------------------------------------------------------ block encoding


# The block types that hold `bits`-bit codes with one fp16 scale a block exactly, in order of
# preference (the ternary type asked for first, then Q2_0 for widths that are not multiples of 256).
def exact_types(bits: int, ternary_type: str = DEFAULT_TERNARY_TYPE) -> list[str]:
    if bits == 2:
        return [ternary_type.upper(), "Q2_0"]
    return ["Q4_0"] if bits <= 4 else ["Q8_0"]


def ggml_type_for(bits: int, width: int, ternary_type: str = DEFAULT_TERNARY_TYPE, label: str = "tensor"):
    """The GGML type for a matrix of `bits`-bit codes and input `width` (see the module's table).

    Q2_0 (type 42) is known only to the gguf-py that comes with a llama.cpp that has it; with an
    older gguf a width that needs it is an error saying how to get that gguf.
    """
    gguf = _gguf()
    names = exact_types(bits, ternary_type)
    for name in names:
        qtype = getattr(gguf.GGMLQuantizationType, name, None)
        if qtype is None:
            raise MissingGGUFError(
                f"{label}: input width {width} needs GGML type {name}, which the installed gguf package does not know; "
                "install the gguf-py of the llama.cpp you run (pip install --no-deps "
                "'<llama.cpp source>/gguf-py'; `make test` installs the one in llama-cpp-python's source)"
            )
        if width % gguf.GGML_QUANT_SIZES[qtype][0] == 0:
            return qtype
    blocks = ", ".join(f"{name} ({gguf.GGML_QUANT_SIZES[gguf.GGMLQuantizationType[name]][0]})" for name in names)
    raise UsageError(
        f"{label}: input width {width} is a multiple of no block of the GGUF types that hold its {bits}-bit codes "
        f"exactly ({blocks} columns); use the packed format"
    )


def encode_blocks(codes: np.ndarray, scales: np.ndarray, qtype) -> np.ndarray:
    """The GGML blocks of integer `codes` (rows, width) with one fp16 scale per row (`scales`, (rows,)).

    Returns uint8 (rows, width / block x block bytes), what `GGUFWriter.add_tensor(raw_dtype=qtype)`
    takes. Ternary blocks are packed by `gguf.quants.quantize` from the codes themselves (whose
    blocks then have d = 1 or 0), and d is set to the scale; Q4_0 and Q8_0 are built here, because
    gguf's quantizers pick their own d (max / -8, max / 127) and so their own codes.
    """
    gguf = _gguf()
    block, block_bytes = gguf.GGML_QUANT_SIZES[qtype]
    rows, width = codes.shape
    per_row = width // block
    d = np.repeat(scales.astype(np.float16), per_row).reshape(-1, 1).view(np.uint8)  # (blocks, 2)
    flat = codes.reshape(-1, block)
    if qtype.name == "Q2_0":
        # Built here from llama.cpp's block_q2_0 (ggml-common.h), since gguf-py has no Q2_0 quantizer:
        # d first, then q = code + 1 in two bits, element j at bits 2 (j % 4) of byte j / 4.
        q = (flat.astype(np.int16) + 1).astype(np.uint8).reshape(len(flat), block // 4, 4)
        blocks = np.concatenate([d, q[..., 0] | (q[..., 1] << 2) | (q[..., 2] << 4) | (q[..., 3] << 6)], axis=1)
    elif qtype in (gguf.GGMLQuantizationType.TQ1_0, gguf.GGMLQuantizationType.TQ2_0):
        blocks = gguf.quants.quantize(flat.astype(np.float32), qtype).reshape(-1, block_bytes)
        blocks[:, -2:] = d  # TQ1_0 and TQ2_0 end with d
    elif qtype == gguf.GGMLQuantizationType.Q4_0:
        nibbles = (flat.astype(np.int16) + 8).astype(np.uint8)
        # Byte j holds element j in its low nibble and element j + 16 in its high nibble.
        blocks = np.concatenate([d, nibbles[:, : block // 2] | (nibbles[:, block // 2 :] << 4)], axis=1)
    elif qtype == gguf.GGMLQuantizationType.Q8_0:
        blocks = np.concatenate([d, flat.astype(np.int8).view(np.uint8)], axis=1)
    else:
        raise ValueError(f"{qtype.name} is not one of the exact types TQ2_0, TQ1_0, Q2_0, Q4_0, Q8_0")
    return np.ascontiguousarray(blocks).reshape(rows, per_row * block_bytes)


def dequantize_q2_0(blocks: np.ndarray) -> np.ndarray:
    """llama.cpp's `dequantize_row_q2_0` (ggml-quants.c) in numpy: (q - 1) * d for each 2-bit q.

    `blocks` is uint8 (rows, n x 18); returns float32 (rows, n x 64). Written from llama.cpp's
    definition because gguf-py's `quants.dequantize` has no Q2_0.
    """
    rows = blocks.shape[0]
    flat = blocks.reshape(-1, 18)
    d = flat[:, :2].copy().view(np.float16).astype(np.float32)
    q = (flat[:, 2:, None] >> np.array([0, 2, 4, 6], dtype=np.uint8)) & 3
    return ((q.reshape(-1, 64).astype(np.float32) - 1) * d).reshape(rows, -1)


def dequantize_blocks(blocks: np.ndarray, qtype) -> np.ndarray:
    """The values a GGML tensor holds: gguf's dequantization, or llama.cpp's for Q2_0."""
    return dequantize_q2_0(blocks) if qtype.name == "Q2_0" else _gguf().quants.dequantize(blocks, qtype)


def _row_scales(entry: PackedTensor, label: str) -> np.ndarray:
    """One fp16 scale per row: the matrix's scale repeated, or the per-row scales."""
    if entry.scale_neg is not None and not torch.equal(entry.scale_neg.half(), entry.scale.half()):
        raise UsageError(
            f"{label}: its codes need two scales (PACT's two-sided clip: one for negative codes, one for "
            "positive) and a GGUF block has one, so it cannot be written exactly; use the packed format"
        )
    scale = entry.scale.detach().to(torch.float16)
    if not bool(torch.isfinite(scale).all()):
        raise UsageError(f"{label}: a scale overflows float16")
    rows = entry.shape[0]
    return (scale.expand(rows) if scale.ndim == 0 else scale.reshape(rows)).numpy()


def _quantized_tensor(entry: PackedTensor, label: str, qtype, row_order: np.ndarray | None = None) -> np.ndarray:
    if len(entry.shape) != 2:
        raise ValueError(f"{label}: a quantized tensor of shape {entry.shape} is not a matrix")
    codes = entry.codes().numpy()
    scales = _row_scales(entry, label)
    if row_order is not None:
        codes, scales = codes[row_order], scales[row_order]
    blocks = encode_blocks(codes, scales, qtype)
    expected = codes.astype(np.float32) * scales.astype(np.float32)[:, None]
    if not np.array_equal(dequantize_blocks(blocks, qtype), expected):
        raise RuntimeError(f"{label}: the {qtype.name} blocks do not dequantize to codes x scales (a bug in quantgpt)")
    return blocks


# ------------------------------------------------------------------------------ tokenizer


PRE_TOKENIZER_TABLE = Path(__file__).with_name("llama_cpp_pre_tokenizers.json")


@functools.cache
def pre_tokenizer_table() -> dict[str, Any]:
    """llama.cpp's converter's probe text and its table of probe-id hashes -> `tokenizer.ggml.pre`
    (data copied from llama.cpp; where from is in the file's "source")."""
    return json.loads(PRE_TOKENIZER_TABLE.read_text(encoding="utf-8"))


def probe_hash(tokenizer: Any) -> str:
    """The converter's `chkhsh`: sha256 of the repr of the probe text's ids (special tokens added,
    as its `tokenizer.encode(chktxt)` adds them)."""
    ids = tokenizer.encode(pre_tokenizer_table()["probe_text"])
    return hashlib.sha256(str(list(ids)).encode()).hexdigest()


def _is_plain_byte_level_bpe(tokenizer: Any) -> bool:
    """GPT-2's pre-tokenization: a byte-level BPE with GPT-2's regex, no normalizer, no prefix space."""
    spec = json.loads(tokenizer.backend_tokenizer.to_str())
    model, pre, normalizer = spec.get("model") or {}, spec.get("pre_tokenizer") or {}, spec.get("normalizer")
    return (
        model.get("type") == "BPE"
        and normalizer is None
        and pre.get("type") == "ByteLevel"
        and pre.get("use_regex", True)
        and not pre.get("add_prefix_space", False)
    )


def pre_tokenizer_name(tokenizer: Any) -> str:
    """llama.cpp's name for the tokenizer's pre-tokenization (`tokenizer.ggml.pre`).

    As llama.cpp's converter does it: the hash of the probe text's ids, looked up in its table
    (gpt-2, llama-bpe, qwen2, smollm, ...). A vocabulary trained here (the testbed's) matches no
    published hash; it is GPT-2's pre-tokenization when its configuration is GPT-2's exactly.
    """
    digest = probe_hash(tokenizer)
    known = pre_tokenizer_table()["by_hash"].get(digest)
    if known is not None:
        return known["pre"]
    if _is_plain_byte_level_bpe(tokenizer):
        return "gpt-2"
    raise UsageError(
        f"tokenizer: llama.cpp does not know its pre-tokenizer (probe hash {digest[:12]}... is not in llama.cpp's "
        "converter table, and it is not GPT-2's byte-level BPE), so llama.cpp would split text differently; "
        "use a tokenizer llama.cpp supports, or export in the packed format"
    )


def _vocabulary(tokenizer: Any, vocab_size: int) -> tuple[list[str], list[int]]:
    """Tokens and token types by id, as llama.cpp's converter (`get_vocab_base`) makes them."""
    gguf = _gguf()
    vocab = tokenizer.get_vocab()
    if max(vocab.values()) >= vocab_size:
        raise UsageError(f"tokenizer has id {max(vocab.values())}, beyond the model's vocabulary of {vocab_size}")
    reverse = {token_id: token for token, token_id in vocab.items()}
    added = tokenizer.get_added_vocab()
    tokens, types = [], []
    for token_id in range(vocab_size):
        if token_id not in reverse:
            tokens.append(f"[PAD{token_id}]")
            types.append(gguf.TokenType.UNUSED)
        elif reverse[token_id] in added:
            token, decoder = reverse[token_id], tokenizer.added_tokens_decoder[token_id]
            if not decoder.normalized:  # llama.cpp takes added tokens as pre-normalized
                token = tokenizer.decode(tokenizer.encode(token, add_special_tokens=False))
            tokens.append(token)
            types.append(gguf.TokenType.CONTROL if decoder.special else gguf.TokenType.USER_DEFINED)
        else:
            tokens.append(reverse[token_id])
            types.append(gguf.TokenType.NORMAL)
    return tokens, types


@dataclass(frozen=True)
class _TokenizerFields:
    """The tokenizer as llama.cpp reads it, checked before anything is encoded or written: either
    the `tokenizer.*` fields of the GGUF file the model came from (`copied`, as they were), or a
    Transformers tokenizer as llama.cpp's converter writes it."""

    copied: TokenizerFields | None = None
    pre: str | None = None
    tokens: list[str] | None = None
    types: list[int] | None = None
    special: Any = None  # gguf.SpecialVocab: merges and special token ids


def _tokenizer_fields(tokenizer: Any, vocab_size: int) -> _TokenizerFields:
    gguf = _gguf()
    vocabulary = getattr(tokenizer, "gguf_vocabulary", None)
    if vocabulary is not None:
        copied = read_tokenizer_gguf(vocabulary)
        tokens = copied.get("tokenizer.ggml.tokens", ([],))[0]
        if len(tokens) != vocab_size:
            raise UsageError(f"{vocabulary}: {len(tokens)} tokens, but the model's vocabulary is {vocab_size}")
        return _TokenizerFields(copied=copied)
    pre = pre_tokenizer_name(tokenizer)
    tokens, types = _vocabulary(tokenizer, vocab_size)
    # SpecialVocab reads merges and special tokens from saved files, as in the converter.
    with tempfile.TemporaryDirectory(prefix="quantgpt-gguf-tokenizer-") as saved:
        tokenizer.save_pretrained(saved)
        special = gguf.SpecialVocab(saved, load_merges=True, n_vocab=vocab_size)
    if not special.merges:
        raise UsageError("tokenizer: no BPE merges found; llama.cpp needs them to tokenize")
    special.add_special_token.setdefault("bos", False)  # GPT-2 prepends nothing; llama.cpp must not either
    return _TokenizerFields(pre=pre, tokens=tokens, types=types, special=special)


def _add_tokenizer(writer: Any, fields: _TokenizerFields) -> None:
    if fields.copied is not None:
        add_tokenizer_fields(writer, fields.copied)
        return
    writer.add_tokenizer_model("gpt2")
    writer.add_tokenizer_pre(fields.pre)
    writer.add_token_list(fields.tokens)
    writer.add_token_types(fields.types)
    fields.special.add_to_gguf(writer, quiet=True)


# ------------------------------------------------------------------------------ writing


def _main_type(tensors: list[tuple[str, np.ndarray, Any]]):
    """The block type holding the most bytes of quantized weights (the file's `general.file_type`)."""
    sizes: dict[Any, int] = {}
    for _, data, qtype in tensors:
        if data.dtype == np.uint8:
            sizes[qtype] = sizes.get(qtype, 0) + data.nbytes
    return max(sizes, key=sizes.get)


@dataclass(frozen=True)
class GGUFExportResult:
    """Where the GGUF file went, its size against the model's parameters in fp32, each tensor's type."""

    path: Path
    file_bytes: int
    fp32_bytes: int  # 4 bytes per parameter, tied parameters once, quantizer scales not counted
    tensor_types: dict[str, str]  # GGUF tensor name -> GGML type name

    @property
    def ratio(self) -> float:
        return self.fp32_bytes / self.file_bytes


def _load_tokenizer(directory: Path) -> Any:
    """The saved tokenizer as the language-modelling task loads it (`tokenizer.json` as saved).

    Not AutoTokenizer: Transformers 5 picks the class from config.json's model type, and its
    Qwen2Tokenizer replaces the saved pre-tokenizer with Qwen2's, so the ids would not be the
    model's.
    """
    from ..tokenization import load_decoder_tokenizer

    try:
        return load_decoder_tokenizer(directory)
    except (OSError, ValueError, QuantgptError) as error:
        raise InputFileError(
            f"{directory}: no tokenizer to write into the GGUF file ({str(error).splitlines()[0]}); "
            "save it beside the model or pass tokenizer="
        ) from None


def export_gguf(
    model_or_dir: nn.Module | str | Path,
    out_path: str | Path,
    *,
    ternary_type: str = DEFAULT_TERNARY_TYPE,
    position_bits: int | None = None,
    tokenizer: Any = None,
    overwrite: bool = False,
    name: str | None = None,
) -> GGUFExportResult:
    """Write a quantized decoder-only model as one GGUF file for llama.cpp.

    `model_or_dir` is a model prepared by `quantize_model`, or a directory (a `save_pretrained`
    quantized model, or a training run whose `best/` is one), whose tokenizer is written too; with
    a model, pass `tokenizer=`. `ternary_type` is "tq2_0" (fastest) or "tq1_0" (smallest) for 2-bit
    codes. `position_bits` stores the position embedding row-wise round-to-nearest at that many
    bits in the same block types (8: Q8_0) instead of F16. A width that no exact block type fits,
    or codes that need two scales (PACT), raise `UsageError` naming the tensor.
    """
    gguf = _gguf()
    if ternary_type not in TERNARY_TYPES:
        raise UsageError(f"ternary_type={ternary_type!r} is not allowed: use one of {', '.join(TERNARY_TYPES)}")
    out_path = Path(out_path).expanduser()
    if out_path.is_dir():
        raise OutputPathError(f"{out_path} is a directory: name the .gguf file to write")
    inputs = [] if isinstance(model_or_dir, nn.Module) else [model_or_dir]
    out_path = check_output_path(out_path, kind="GGUF file", is_same_kind=is_gguf_file, overwrite=overwrite, inputs=inputs)
    if isinstance(model_or_dir, nn.Module):
        model = model_or_dir
    else:
        source = resolve_quantized_dir(model_or_dir)
        model = load_quantized(source)
        tokenizer = tokenizer if tokenizer is not None else _load_tokenizer(source)
        name = name or Path(model_or_dir).expanduser().resolve().name
    if tokenizer is None:
        raise UsageError("export_gguf needs the tokenizer: llama.cpp reads it from the GGUF file; pass tokenizer=")
    architecture = gguf_architecture_of(model)
    if architecture.check is not None:
        architecture.check(model.config)
    if position_bits is not None and architecture.arch != "GPT2":
        raise UsageError(
            f"--position-bits {position_bits}: {model.config.model_type} has no position embedding table "
            "(its positions are rotary); leave the flag out"
        )
    tokenizer_fields = _tokenizer_fields(tokenizer, model.config.vocab_size)
    entries, _, _ = packed_entries(model, position_bits, dense_dtype=torch.float32)
    config = model.config
    names = gguf.get_tensor_name_map(gguf.MODEL_ARCH[architecture.arch], config.num_hidden_layers)
    quant_config = model.quantization_config

    tensors: list[tuple[str, np.ndarray, Any]] = []
    for entry in entries:
        gguf_name = names.get_name(entry.name, try_suffixes=(".weight", ".bias"))
        if gguf_name is None:
            raise ValueError(f"{entry.name}: no GGUF tensor name for it in {architecture.arch} (a bug in quantgpt)")
        label = f"{gguf_name} ({entry.name})"
        row_order = architecture.row_order(entry.name, config) if architecture.row_order else None
        if isinstance(entry, PackedTensor):
            qtype = ggml_type_for(entry.bits, entry.shape[-1], ternary_type, label)
            tensors.append((gguf_name, _quantized_tensor(entry, label, qtype, row_order), qtype))
            continue
        assert isinstance(entry, DenseTensor)
        dense = entry.tensor if row_order is None else entry.tensor[torch.from_numpy(row_order)]
        if dense.ndim == 1:  # norm weights and biases: F32, as llama.cpp's converter keeps them
            tensors.append((gguf_name, dense.float().numpy(), gguf.GGMLQuantizationType.F32))
            continue
        half = dense.to(torch.float16)
        if not bool(torch.isfinite(half).all()):
            raise UsageError(f"{label}: a value overflows float16")
        tensors.append((gguf_name, half.numpy(), gguf.GGMLQuantizationType.F16))

    file_type = gguf.LlamaFileType[f"MOSTLY_{_main_type(tensors).name}"]

    def write(path: Path) -> None:
        writer = gguf.GGUFWriter(path, gguf.MODEL_ARCH_NAMES[gguf.MODEL_ARCH[architecture.arch]])
        writer.add_name(name or type(model).__name__)
        writer.add_quantized_by("quantgpt")
        writer.add_string("quantgpt.quantization_config", json.dumps(quant_config.to_dict(), sort_keys=True))
        for key, value in architecture.hyperparameters(config).items():
            getattr(writer, f"add_{key}")(value)
        writer.add_file_type(file_type)
        writer.add_quantization_version(gguf.GGML_QUANT_VERSION)
        _add_tokenizer(writer, tokenizer_fields)
        for gguf_name, data, qtype in tensors:
            writer.add_tensor(gguf_name, data, raw_dtype=qtype if data.dtype == np.uint8 else None)
        writer.write_header_to_file()
        writer.write_kv_data_to_file()
        writer.write_tensors_to_file()
        writer.close()

    try:
        with staged_output(out_path, directory=False) as staging:
            write(staging)
    except OSError as error:  # a full disk, a read-only folder: nothing is left at `out_path`
        raise OutputPathError(f"{out_path}: cannot write the GGUF file ({error.strerror or error})") from None
    return GGUFExportResult(
        out_path, out_path.stat().st_size, fp32_parameter_bytes(model), {n: q.name for n, _, q in tensors}
    )


__all__ = [
    "GGUF_ARCHITECTURES",
    "GGUFArchitecture",
    "GGUFExportResult",
    "MissingGGUFError",
    "TERNARY_TYPES",
    "encode_blocks",
    "export_gguf",
    "ggml_type_for",
    "is_gguf_file",
]
