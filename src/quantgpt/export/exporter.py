"""Walk a fake-quantized model and write it as a packed low-bit model directory (the convert step).

What is stored (docs/method.md#weight-quantizer, #size-accounting):
- each quantized weight matrix as its integer codes, packed at its bit width (ternary five to a
  byte, 3-4 bits in nibbles, 8 bits as int8), in (out_features, in_features) layout whatever the
  module (GPT-2's Conv1D keeps (in, out) in memory; the runtime wants rows = outputs), with one
  scale per matrix (two for PACT);
- the word embedding row-wise, one scale per token; tied copies (LM head, BART's encoder and
  decoder embeddings) are not stored again, the index records which module they share;
- every other tensor (LayerNorm, biases, position embeddings, BART's final_logits_bias) in fp16.
  With `position_bits=8` the position embedding is stored as 8-bit row-wise symmetric
  round-to-nearest codes instead: an option beyond the paper, which keeps it in full precision.

The JSON `extra` holds what the runtime needs to rebuild the model: the QuantConfig, the module
map (which module is a quantized linear layer, an embedding, a tied copy) and each quantized input's
bits and symmetry, and the attention modules' activation quantization.
"""

from __future__ import annotations

import json
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn

from ..architectures import architecture_of
from ..attention import AttentionQuantizers
from ..config import QuantConfig
from ..errors import MissingInputError, OutputPathError, UsageError
from ..layers import QuantEmbedding, QuantLinear, QuantTiedHead
from ..quantizers import ActivationQuantizer, RoundToNearestQuantizer
from ..serialization import CheckpointError, load_quantized
from ..tokenization import TOKENIZER_GGUF, save_tokenizer
from .output_path import check_output_path, staged_output
from .packed_format import FORMAT_NAME, INDEX_FILE, WEIGHTS_FILE, DenseTensor, Entry, PackedTensor, write_packed

BEST_DIR = "best"  # a training run keeps its best model here (training/checkpoints.py)
TOKENIZER_FILES = (
    "tokenizer.json",
    "tokenizer_config.json",
    "special_tokens_map.json",
    "added_tokens.json",
    "vocab.json",
    "merges.txt",
    "chat_template.jinja",
    TOKENIZER_GGUF,
)
# Everything an export may write (a tokenizer's save_pretrained names included); `--overwrite`
# refuses a folder holding anything else, which is the user's, not ours to delete.
PACKED_EXPORT_FILES = frozenset({
    WEIGHTS_FILE, INDEX_FILE, "generation_config.json", *TOKENIZER_FILES,
    "tokenizer.model", "spiece.model", "sentencepiece.bpe.model", "vocab.txt", "chat_template.json",
})
GENERATION_CONFIG = "generation_config.json"
WEIGHT_LAYOUT = "out_in"  # packed matrices are (out_features, in_features), row-major
POSITION_METHOD = "rtn-row-symmetric"
PACKED_KIND = "packed model"


@dataclass(frozen=True)
class ExportResult:
    """Where the packed model went and its size against the same model's parameters in fp32."""

    directory: Path
    packed_bytes: int  # model.safetensors + quantgpt_packed.json
    fp32_bytes: int  # 4 bytes per parameter, tied parameters once, quantizer scales not counted

    @property
    def ratio(self) -> float:
        return self.fp32_bytes / self.packed_bytes


def resolve_quantized_dir(path: str | Path) -> Path:
    """The `save_pretrained` directory of a quantized model: `path` itself or a training run's `best/`."""
    path = Path(path).expanduser()
    if not path.is_dir():
        raise MissingInputError(f"{path}: no such directory")
    for candidate in (path, path / BEST_DIR):
        if (candidate / "config.json").is_file():
            return candidate
    raise CheckpointError(
        f"{path}: neither it nor {path / BEST_DIR} holds config.json; pass a quantized model saved with "
        "save_pretrained or a training run directory"
    )


def _input_record(quantizer: ActivationQuantizer | None) -> dict[str, Any] | None:
    return None if quantizer is None else {"bits": quantizer.bits, "symmetric": quantizer.symmetric}


def _linear_entry(name: str, module: QuantLinear) -> PackedTensor:
    quantizer = module.weight_quantizer
    codes, scale, scale_neg = quantizer.codes(module.weight.detach())
    if module.transposed:
        if scale.numel() > 1 or (scale_neg is not None and scale_neg.numel() > 1):
            raise UsageError(f"{name}: a per-row scale on a transposed (Conv1D) weight cannot be exported")
        codes = codes.T
    return PackedTensor.from_codes(f"{name}.weight", codes.contiguous(), quantizer.bits, scale, scale_neg)


def _embedding_entry(name: str, module: QuantEmbedding) -> PackedTensor:
    quantizer = module.weight_quantizer
    codes, scale, scale_neg = quantizer.codes(module.weight.detach())
    return PackedTensor.from_codes(f"{name}.weight", codes, quantizer.bits, scale, scale_neg)


def _position_entry(key: str, weight: torch.Tensor, bits: int) -> PackedTensor:
    """Row-wise symmetric round-to-nearest: alpha = max|row|, codes = round(w / alpha * k) (Eq. 1)."""
    quantizer = RoundToNearestQuantizer(bits, per_row=True, rows=weight.shape[0])
    codes, scale, _ = quantizer.codes(weight.detach().float())
    return PackedTensor.from_codes(key, codes, bits, scale)


def _dense_entry(key: str, tensor: torch.Tensor, dtype: torch.dtype) -> DenseTensor:
    tensor = tensor.detach()
    if tensor.is_floating_point():
        stored = tensor.to(dtype)
        if not bool(torch.isfinite(stored).all()) and bool(torch.isfinite(tensor).all()):
            raise UsageError(f"{key}: a value overflows {dtype}; export with dense_dtype=torch.float32")
        tensor = stored
    return DenseTensor(key, tensor)


def packed_entries(
    model: nn.Module, position_bits: int | None = None, dense_dtype: torch.dtype = torch.float16
) -> tuple[list[Entry], dict[str, Any], dict[str, Any]]:
    """The entries, model config and `extra` that `write_packed` stores for a quantized model.

    `model` is a model prepared by `quantize_model` (or loaded by `load_quantized`). The entries
    keep float32 scales (`write_packed` stores them in fp16), so building a runtime model from them
    in memory reproduces the fake-quantized model to float32 rounding, which the tests use.
    """
    quant_config = getattr(model, "quantization_config", None)
    if not isinstance(quant_config, QuantConfig):
        raise UsageError(f"{type(model).__name__} is not quantized: run quantize_model(model, config) first")
    if position_bits is not None and (type(position_bits) is not int or not 2 <= position_bits <= 8):
        raise UsageError(f"position_bits={position_bits!r} is not allowed: use None (fp16) or an integer from 2 to 8")
    architecture_of(model)  # refuses a class the runtime cannot rebuild
    module_names = {id(module): name for name, module in model.named_modules()}
    entries: list[Entry] = []
    modules: dict[str, dict[str, Any]] = {}
    attention: list[str] = []
    attention_settings: dict[str, Any] | None = None
    handled: set[int] = set()  # tensors already stored (tied weights appear under several keys)
    position_keys: set[str] = set()

    for name, module in model.named_modules():
        if isinstance(module, QuantLinear):
            entries.append(_linear_entry(name, module))
            handled.add(id(module.weight))
            modules[name] = {
                "kind": "linear",
                "weight": f"{name}.weight",
                "bias": None if module.bias is None else f"{name}.bias",
                "input": _input_record(module.input_quantizer),
            }
        elif isinstance(module, QuantEmbedding):
            source = module.__dict__["_source"]
            record = {"padding_idx": module.padding_idx, "embed_scale": float(module.embed_scale)}
            if source is None:
                entries.append(_embedding_entry(name, module))
                handled.add(id(module.weight))
                modules[name] = {"kind": "embedding", "weight": f"{name}.weight", **record}
            else:
                modules[name] = {"kind": "tied_embedding", "source": module_names[id(source)], **record}
        elif isinstance(module, QuantTiedHead):
            modules[name] = {
                "kind": "tied_head",
                "source": module_names[id(module.embedding)],
                "bias": None if module.bias is None else f"{name}.bias",
                "input": _input_record(module.input_quantizer),
            }
        elif isinstance(module, nn.Embedding):  # what is left after quantize_model: position embeddings
            position_keys.add(f"{name}.weight")
        quantizers = getattr(module, "attention_quantizers", None)
        if isinstance(quantizers, AttentionQuantizers):
            attention.append(name)
            settings = {"bits": quantizers.query.bits, "quantize_values": quantizers.value is not None}
            if attention_settings not in (None, settings):
                raise UsageError(f"{name}: attention quantizers differ between modules ({settings} vs {attention_settings})")
            attention_settings = settings

    dequantize_at_load = []
    for key, tensor in model.state_dict(keep_vars=True).items():
        if id(tensor) in handled or ".weight_quantizer." in f".{key}":
            continue
        handled.add(id(tensor))
        if key in position_keys and position_bits is not None:
            entries.append(_position_entry(key, tensor, position_bits))
            dequantize_at_load.append(key)
        else:
            entries.append(_dense_entry(key, tensor, dense_dtype))

    model_config = model.config.to_dict()
    model_config.pop("quantization_config", None)
    extra = {
        "architecture": type(model).__name__,
        "quantization_config": quant_config.to_dict(),
        "weight_layout": WEIGHT_LAYOUT,
        "modules": modules,
        "attention": None if attention_settings is None else {**attention_settings, "modules": attention},
        "dequantize_at_load": dequantize_at_load,
        "position_embedding": None if position_bits is None else {"bits": position_bits, "method": POSITION_METHOD},
    }
    return entries, model_config, extra


def fp32_parameter_bytes(model: nn.Module) -> int:
    """4 bytes per model parameter, tied ones once, quantizer parameters (scales) not counted."""
    return 4 * sum(p.numel() for name, p in model.named_parameters() if ".weight_quantizer." not in f".{name}")


def holds_packed_model(path: Path) -> bool:
    """Whether `path` is a directory written by `export_packed`: its index file names the packed
    format, and it holds only files an export writes (no config.json, no folder, no file of the user's)."""
    if not path.is_dir() or path.is_symlink() or not (path / INDEX_FILE).is_file():
        return False
    if any(child.name not in PACKED_EXPORT_FILES or not child.is_file() for child in path.iterdir()):
        return False
    try:
        index = json.loads((path / INDEX_FILE).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return False
    return isinstance(index, dict) and index.get("format") == FORMAT_NAME


def copy_tokenizer_files(source: Path, target: Path) -> list[str]:
    """Copy the tokenizer files found in `source` into `target`; returns the names copied."""
    copied = []
    for name in TOKENIZER_FILES:
        if (source / name).is_file():
            shutil.copyfile(source / name, target / name)
            copied.append(name)
    return copied


def export_packed(
    model_or_dir: nn.Module | str | Path,
    out_dir: str | Path,
    position_bits: int | None = None,
    *,
    tokenizer: Any = None,
    overwrite: bool = False,
    dense_dtype: torch.dtype = torch.float16,
) -> ExportResult:
    """Write the packed low-bit model of a quantized model into `out_dir`.

    `model_or_dir` is a model prepared by `quantize_model`, or a directory: a quantized model saved
    with `save_pretrained`, or a training run whose `best/` is one. From a directory, its tokenizer
    files are copied beside the packed model; with a model, pass `tokenizer=` to save one there.
    The generation config is saved too, so `load_packed` + `generate` decode as the source would.
    `position_bits=8` stores the position embedding at 8 bits (row-wise round-to-nearest) instead of fp16.

    `out_dir` must not exist yet (or be empty); `overwrite=True` replaces it only when it holds a
    packed model already (`holds_packed_model`), never the input or a model or run directory.
    Everything is written to a temporary sibling first and renamed into place when complete.
    """
    inputs = [] if isinstance(model_or_dir, nn.Module) else [model_or_dir]
    out = check_output_path(out_dir, kind=PACKED_KIND, is_same_kind=holds_packed_model, overwrite=overwrite, inputs=inputs)
    source_dir = None
    if isinstance(model_or_dir, nn.Module):
        model = model_or_dir
    else:
        source_dir = resolve_quantized_dir(model_or_dir)
        model = load_quantized(source_dir)
    entries, model_config, extra = packed_entries(model, position_bits, dense_dtype)
    try:
        with staged_output(out, directory=True) as staging:
            write_packed(staging, entries, model_config, extra)
            if source_dir is not None:
                copy_tokenizer_files(source_dir, staging)
            if tokenizer is not None:
                save_tokenizer(tokenizer, staging)
            generation_config = getattr(model, "generation_config", None)
            if generation_config is not None:
                generation_config.save_pretrained(staging)
            packed_bytes = sum((staging / name).stat().st_size for name in (WEIGHTS_FILE, INDEX_FILE))
    except OSError as error:  # a full disk, a read-only folder: nothing is left at `out`
        raise OutputPathError(f"{out}: cannot write the packed model ({error.strerror or error})") from None
    return ExportResult(out, packed_bytes, fp32_parameter_bytes(model))


__all__ = [
    "ExportResult",
    "copy_tokenizer_files",
    "export_packed",
    "fp32_parameter_bytes",
    "holds_packed_model",
    "packed_entries",
    "resolve_quantized_dir",
]
