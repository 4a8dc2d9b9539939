"""Load a packed model back as a Transformers model whose linear layers compute with low-bit codes.

`load_packed(dir)` reads the directory with the validating reader, rebuilds the architecture from
the stored config on the meta device (no random init, no fp32 weights ever allocated), swaps in
the runtime layers of `lowbit_layers` (codes unpacked once to int8) and fills every remaining
tensor from the file. Activations are quantized exactly as in training: the same per-tensor
min-max quantizers on every linear input and the "quantgpt" attention function with its
quantizers. The result is an ordinary `PreTrainedModel`: `model(...)` and `model.generate(...)`.

Everything the index says is checked against the rebuilt model (module names and kinds, shapes,
every parameter filled, no tensor left over); a mismatch raises `PackedFormatError`.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import torch
import transformers
from torch import nn
from transformers import CONFIG_MAPPING, GenerationConfig, PreTrainedModel
from transformers.pytorch_utils import Conv1D

from ..architectures import ARCHITECTURES
from ..attention import ATTENTION_IMPLEMENTATION, register_attention
from ..config import ConfigError, QuantConfig
from .exporter import GENERATION_CONFIG, WEIGHT_LAYOUT
from .lowbit_layers import Int8Weight, LowBitEmbedding, LowBitLinear, inference_attention_quantizers
from .packed_format import DenseTensor, Entry, PackedFormatError, PackedTensor, read_packed

_MODULE_FIELDS = {
    "linear": {"kind", "weight", "bias", "input"},
    "embedding": {"kind", "weight", "padding_idx", "embed_scale"},
    "tied_embedding": {"kind", "source", "padding_idx", "embed_scale"},
    "tied_head": {"kind", "source", "bias", "input"},
}
_ORIGINAL_CLASSES: dict[str, tuple[type, ...]] = {
    "linear": (nn.Linear, Conv1D),
    "embedding": (nn.Embedding,),
    "tied_embedding": (nn.Embedding,),
    "tied_head": (nn.Linear,),
}
_EXTRA_FIELDS = {
    "architecture",
    "quantization_config",
    "weight_layout",
    "modules",
    "attention",
    "dequantize_at_load",
    "position_embedding",
}


def _require(condition: bool, message: str) -> None:
    if not condition:
        raise PackedFormatError(message)


def _is_int(value: Any) -> bool:
    return type(value) is int


def _check_input(where: str, record: Any) -> None:
    if record is None:
        return
    _require(
        isinstance(record, dict) and set(record) == {"bits", "symmetric"},
        f"{where}: input must be null or {{'bits', 'symmetric'}}, got {record!r}",
    )
    _require(_is_int(record["bits"]) and 2 <= record["bits"] <= 8, f"{where}: input bits={record['bits']!r}; allowed 2..8")
    _require(isinstance(record["symmetric"], bool), f"{where}: input symmetric={record['symmetric']!r} must be a bool")


def _check_extra(extra: dict[str, Any]) -> QuantConfig:
    """The schema of `extra` (types and allowed values); returns the stored QuantConfig."""
    _require(set(extra) == _EXTRA_FIELDS, f"extra: fields {sorted(extra)}; expected exactly {sorted(_EXTRA_FIELDS)}")
    _require(extra["weight_layout"] == WEIGHT_LAYOUT, f"extra: weight_layout={extra['weight_layout']!r}; expected {WEIGHT_LAYOUT!r}")
    _require(isinstance(extra["quantization_config"], dict), "extra: quantization_config must be an object")
    try:
        quant_config = QuantConfig.from_dict(extra["quantization_config"])
    except (ConfigError, TypeError) as error:
        raise PackedFormatError(f"extra: quantization_config is invalid: {error}") from None
    modules = extra["modules"]
    _require(isinstance(modules, dict) and modules, "extra: modules must be a non-empty object")
    for name, record in modules.items():
        where = f"extra: module {name!r}"
        _require(isinstance(record, dict) and isinstance(record.get("kind"), str) and record["kind"] in _MODULE_FIELDS, f"{where}: kind must be one of {sorted(_MODULE_FIELDS)}")
        fields = _MODULE_FIELDS[record["kind"]]
        _require(set(record) == fields, f"{where}: fields {sorted(record)}; expected exactly {sorted(fields)}")
        for key in ("weight", "source"):
            if key in record:
                _require(isinstance(record[key], str), f"{where}: {key} must be a string")
        if "bias" in record:
            _require(record["bias"] is None or isinstance(record["bias"], str), f"{where}: bias must be a string or null")
        if "input" in record:
            _check_input(where, record["input"])
        if "embed_scale" in record:
            scale = record["embed_scale"]
            _require(isinstance(scale, (int, float)) and not isinstance(scale, bool) and 0 < scale < 1e6, f"{where}: embed_scale={scale!r}")
            _require(record["padding_idx"] is None or _is_int(record["padding_idx"]), f"{where}: padding_idx must be an int or null")
    attention = extra["attention"]
    if attention is not None:
        _require(
            isinstance(attention, dict) and set(attention) == {"bits", "quantize_values", "modules"},
            "extra: attention must be null or {'bits', 'quantize_values', 'modules'}",
        )
        _require(_is_int(attention["bits"]) and 2 <= attention["bits"] <= 8, f"extra: attention bits={attention['bits']!r}; allowed 2..8")
        _require(isinstance(attention["quantize_values"], bool), "extra: attention quantize_values must be a bool")
        _require(
            isinstance(attention["modules"], list) and all(isinstance(m, str) for m in attention["modules"]),
            "extra: attention modules must be a list of strings",
        )
    dequantized = extra["dequantize_at_load"]
    _require(
        isinstance(dequantized, list) and all(isinstance(n, str) for n in dequantized),
        "extra: dequantize_at_load must be a list of strings",
    )
    return quant_config


def _model_class(model_config: dict[str, Any], extra: dict[str, Any]) -> tuple[type[PreTrainedModel], Any]:
    """The Transformers class and config to rebuild: only the architectures quantgpt supports."""
    model_type = model_config.get("model_type")
    spec = ARCHITECTURES.get(model_type) if isinstance(model_type, str) else None
    _require(spec is not None, f"model_config: model_type={model_type!r}; supported are {sorted(ARCHITECTURES)}")
    name = extra["architecture"]
    _require(name in spec.model_classes, f"extra: architecture={name!r}; for {model_type} supported are {list(spec.model_classes)}")
    try:
        config = CONFIG_MAPPING[model_type].from_dict(dict(model_config))
    except Exception as error:  # a config dict the library rejects
        raise PackedFormatError(f"model_config does not build a {model_type} config: {str(error).splitlines()[0][:200]}") from None
    return getattr(transformers, name), config


def _check_layer_counts(model_config: dict[str, Any], tensors: int) -> None:
    """Refuse a config with more layers than the file has tensors before building it: every layer
    owns tensors, and a hostile count (n_layer = 10^9) would otherwise hang the meta build."""
    for key, value in model_config.items():
        if ("layers" in key and not key.startswith("max_")) or key == "n_layer":  # Qwen2's max_window_layers is no count
            _require(
                not _is_int(value) or 0 <= value <= tensors,
                f"model_config: {key}={value!r} is impossible for a file of {tensors} tensors",
            )


def _submodule(model: nn.Module, name: str) -> nn.Module:
    try:
        return model.get_submodule(name)
    except AttributeError:
        raise PackedFormatError(f"extra: module {name!r} does not exist in {type(model).__name__}") from None


def _set_module(model: nn.Module, name: str, module: nn.Module) -> None:
    _submodule(model, name)
    parent, _, child = name.rpartition(".")
    setattr(model.get_submodule(parent) if parent else model, child, module)


class _Entries:
    """The file's entries by name; each is taken once, and leftovers are an error."""

    def __init__(self, entries: list[Entry]) -> None:
        self._entries = {entry.name: entry for entry in entries}
        self._taken: set[str] = set()

    def take(self, name: str, kind: type, where: str) -> Entry:
        entry = self._entries.get(name)
        _require(entry is not None, f"{where}: tensor {name!r} is missing from the file")
        _require(isinstance(entry, kind), f"{where}: tensor {name!r} must be {'packed' if kind is PackedTensor else 'dense'}")
        _require(name not in self._taken, f"{where}: tensor {name!r} is used twice")
        self._taken.add(name)
        return entry

    def remaining(self) -> list[Entry]:
        return [entry for name, entry in self._entries.items() if name not in self._taken]


def _int8_weight(entry: PackedTensor, where: str, shape: tuple[int, ...]) -> Int8Weight:
    _require(entry.shape == shape, f"{where}: tensor {entry.name!r} has shape {entry.shape}; the model needs {shape}")
    return Int8Weight(entry.codes(), entry.scale, entry.scale_neg, bits=entry.bits)


def _expected_weight_shape(module: nn.Module, where: str) -> tuple[int, ...]:
    """(out, in) for Linear and Conv1D, (rows, dim) for an embedding, from the meta module."""
    weight = getattr(module, "weight", None)
    _require(isinstance(weight, torch.Tensor) and weight.dim() == 2, f"{where}: the model has no 2-D weight here")
    if isinstance(module, Conv1D):  # stores (in, out)
        return (weight.shape[1], weight.shape[0])
    return tuple(weight.shape)


def _bias(entries: _Entries, name: str | None, where: str, size: int, dtype: torch.dtype) -> torch.Tensor | None:
    if name is None:
        return None
    tensor = entries.take(name, DenseTensor, where).tensor
    _require(tuple(tensor.shape) == (size,), f"{where}: bias {name!r} has shape {tuple(tensor.shape)}; expected ({size},)")
    _require(tensor.is_floating_point(), f"{where}: bias {name!r} must be floating point")
    return tensor.to(dtype)


def _input_args(record: dict[str, Any] | None) -> dict[str, Any]:
    return {"input_bits": None, "input_symmetric": True} if record is None else {
        "input_bits": record["bits"],
        "input_symmetric": record["symmetric"],
    }


def _install_modules(model: nn.Module, modules: dict[str, dict[str, Any]], entries: _Entries, dtype: torch.dtype) -> None:
    """Replace each quantized module by its runtime layer; embeddings first, their tied copies after."""
    embeddings: dict[str, LowBitEmbedding] = {}
    order = sorted(modules, key=lambda n: modules[n]["kind"] not in ("embedding", "linear"))
    for name in order:
        record, where = modules[name], f"module {name!r}"
        kind = record["kind"]
        original = _submodule(model, name)
        allowed = _ORIGINAL_CLASSES[kind]
        _require(
            isinstance(original, allowed),
            f"extra: {where} is a {type(original).__name__}, which a {kind!r} record cannot replace",
        )
        if kind in ("linear", "embedding"):
            shape = _expected_weight_shape(original, where)
            weight = _int8_weight(entries.take(record["weight"], PackedTensor, where), where, shape)
            if kind == "embedding":
                embeddings[name] = LowBitEmbedding(weight, record["padding_idx"], float(record["embed_scale"]))
                _set_module(model, name, embeddings[name])
            else:
                bias = _bias(entries, record["bias"], where, shape[0], dtype)
                _set_module(model, name, LowBitLinear(weight, bias, **_input_args(record["input"])))
            continue
        source = embeddings.get(record["source"])
        _require(source is not None, f"extra: {where} is tied to {record['source']!r}, which is not a quantized embedding")
        if kind == "tied_embedding":
            _require(
                _expected_weight_shape(original, where) == tuple(source.int8_weight.shape),
                f"{where}: shape differs from its source {record['source']!r}",
            )
            _set_module(model, name, LowBitEmbedding(source.int8_weight, record["padding_idx"], float(record["embed_scale"])))
        else:
            _require(
                _expected_weight_shape(original, where) == tuple(source.int8_weight.shape),
                f"{where}: shape differs from its source {record['source']!r}",
            )
            bias = _bias(entries, record["bias"], where, source.num_embeddings, dtype)
            _set_module(model, name, LowBitLinear(source.int8_weight, bias, **_input_args(record["input"])))


def _install_attention(model: nn.Module, attention: dict[str, Any] | None, class_names: tuple[str, ...]) -> None:
    if attention is None:
        return
    register_attention()
    for name in attention["modules"]:
        module = _submodule(model, name)
        _require(type(module).__name__ in class_names, f"extra: attention module {name!r} is a {type(module).__name__}")
        module.attention_quantizers = inference_attention_quantizers(attention["bits"], attention["quantize_values"])
    model.set_attn_implementation(ATTENTION_IMPLEMENTATION)


def _rebuild_rotary_embeddings(model: nn.Module) -> None:
    """A rotary embedding's inverse frequencies are non-persistent buffers, computed from the config
    and never stored: build each such module again, off the meta device, from the model's config."""
    for name, module in list(model.named_modules()):
        computed = [b for b in module._non_persistent_buffers_set if getattr(module, b, None) is not None]
        if computed and all(getattr(module, b).is_meta for b in computed) and hasattr(module, "rope_type"):
            _set_module(model, name, type(module)(module.config))


def _fill_dense(model: nn.Module, entries: _Entries, dequantize: set[str], dtype: torch.dtype) -> None:
    """Load every tensor left on the meta device from the file; anything missing or left over fails."""
    state: dict[str, torch.Tensor] = {}
    for entry in entries.remaining():
        if isinstance(entry, PackedTensor):
            _require(entry.name in dequantize, f"tensor {entry.name!r} is packed but no module uses it")
            state[entry.name] = entry.dequantize(dtype)
        else:
            tensor = entry.tensor
            state[entry.name] = tensor.to(dtype) if tensor.is_floating_point() else tensor
    expected = {name: t for name, t in model.state_dict(keep_vars=True).items() if t.is_meta}
    missing = sorted(set(expected) - set(state))
    if missing:
        raise PackedFormatError(f"tensor {missing[0]!r} of {type(model).__name__} is missing from the file")
    unknown = sorted(set(state) - set(expected))
    if unknown:
        raise PackedFormatError(f"tensor {unknown[0]!r} is not a tensor of {type(model).__name__}")
    for name, tensor in state.items():
        _require(
            tuple(tensor.shape) == tuple(expected[name].shape),
            f"tensor {name!r} has shape {tuple(tensor.shape)}; {type(model).__name__} needs {tuple(expected[name].shape)}",
        )
    model.load_state_dict(state, strict=False, assign=True)
    leftover = [name for name, t in [*model.named_parameters(), *model.named_buffers()] if t.is_meta]
    _require(not leftover, f"{type(model).__name__}: {leftover[:3]} were not filled (tied to a tensor the file lacks)")


def build_packed_model(
    entries: list[Entry], model_config: dict[str, Any], extra: dict[str, Any], dtype: torch.dtype = torch.float32
) -> PreTrainedModel:
    """The runtime model from what `read_packed` returns (or `packed_entries` gives in memory)."""
    _check_extra(extra)
    model_class, config = _model_class(model_config, extra)
    spec = ARCHITECTURES[config.model_type]
    _check_layer_counts(model_config, len(entries))
    try:
        with torch.device("meta"):
            model = model_class._from_config(config, dtype=dtype)
    except Exception as error:  # e.g. a hidden size the head count does not divide
        raise PackedFormatError(f"model_config does not build {model_class.__name__}: {str(error).splitlines()[0][:200]}") from None
    store = _Entries(entries)
    _install_modules(model, extra["modules"], store, dtype)
    _install_attention(model, extra["attention"], spec.attention_classes)
    _rebuild_rotary_embeddings(model)
    _fill_dense(model, store, set(extra["dequantize_at_load"]), dtype)
    model.requires_grad_(False)
    model.eval()
    model.packed_extra = extra
    return model


def load_packed(
    directory: str | os.PathLike, dtype: torch.dtype = torch.float32, verify_checksum: bool = True
) -> PreTrainedModel:
    """The packed model in `directory` as a Transformers model computing with its low-bit codes.

    Raises `PackedFormatError` (a ValueError) for a damaged, truncated or hostile directory. The
    generation config stored beside it, if any, becomes `model.generation_config`.
    """
    directory = Path(directory)
    entries, model_config, extra = read_packed(directory, verify_checksum=verify_checksum)
    model = build_packed_model(entries, model_config, extra, dtype)
    if (directory / GENERATION_CONFIG).is_file():
        model.generation_config = GenerationConfig.from_pretrained(directory)
    return model


__all__ = ["build_packed_model", "load_packed"]
