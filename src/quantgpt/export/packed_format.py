"""The packed low-bit model file: a directory with ``model.safetensors`` and ``quantgpt_packed.json``.

``model.safetensors`` holds the packed integer codes (see :mod:`quantgpt.export.packing`), their
float16 scales, and every full-precision tensor (LayerNorm, biases, position embedding) as stored by
the caller. ``quantgpt_packed.json`` says what each stored tensor means:

.. code-block:: json

    {"format": "quantgpt-packed", "format_version": 1,
     "model_config": {...}, "extra": {...},
     "safetensors_sha256": "<hex digest of model.safetensors>",
     "tensors": [
       {"name": "h.0.attn.c_attn.weight", "kind": "packed", "bits": 2, "shape": [768, 2304],
        "dtype": "uint8", "codes": "h.0.attn.c_attn.weight.codes",
        "scale": "h.0.attn.c_attn.weight.scale", "scale_neg": null},
       {"name": "ln_f.weight", "kind": "dense", "shape": [768], "dtype": "float16",
        "tensor": "ln_f.weight"}]}

A packed weight dequantizes to ``w = c * scale`` (Eq. 1 in docs/method.md with ``scale = alpha / k``), or, for
baselines with separate negative and positive clipping (PACT), ``w = c * where(c < 0, scale_neg,
scale)``. A scale is a scalar (one per matrix) or has one entry per row (the word embedding).

The reader trusts nothing: any damaged, truncated or hostile file raises :class:`PackedFormatError`
with one line naming the tensor or field at fault. Only safetensors and JSON are parsed; no pickle.
"""

from __future__ import annotations

import json
import math
import os
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from safetensors import safe_open
from safetensors.torch import save_file

from quantgpt.export.packing import (
    pack_codes,
    packed_numel,
    storage_dtype,
    unpack_codes,
)

from ..durable import sha256_of
from ..errors import QuantgptError

FORMAT_NAME = "quantgpt-packed"
FORMAT_VERSION = 1
WEIGHTS_FILE = "model.safetensors"
INDEX_FILE = "quantgpt_packed.json"
SCALE_DTYPE = torch.float16
# The index is a config and a list of a few hundred tensors; anything far larger is not ours.
MAX_INDEX_BYTES = 64 * 2**20
# GPT-2 large in fp32 is ~3 GiB; a packed file beyond this is refused before it is mapped.
DEFAULT_MAX_WEIGHTS_BYTES = 16 * 2**30

_DTYPE_NAMES: dict[str, torch.dtype] = {
    "float16": torch.float16,
    "bfloat16": torch.bfloat16,
    "float32": torch.float32,
    "float64": torch.float64,
    "int8": torch.int8,
    "uint8": torch.uint8,
    "int16": torch.int16,
    "int32": torch.int32,
    "int64": torch.int64,
    "bool": torch.bool,
}
_SAFETENSORS_DTYPES: dict[str, str] = {
    "F16": "float16",
    "BF16": "bfloat16",
    "F32": "float32",
    "F64": "float64",
    "I8": "int8",
    "U8": "uint8",
    "I16": "int16",
    "I32": "int32",
    "I64": "int64",
    "BOOL": "bool",
}
_TOP_KEYS = {"format", "format_version", "model_config", "extra", "safetensors_sha256", "tensors"}
_PACKED_KEYS = {"name", "kind", "bits", "shape", "dtype", "codes", "scale", "scale_neg"}
_DENSE_KEYS = {"name", "kind", "shape", "dtype", "tensor"}


class PackedFormatError(QuantgptError, ValueError):
    """A packed model file is damaged, truncated, hostile or of an unknown version."""


def _dtype_name(dtype: torch.dtype) -> str:
    for name, known in _DTYPE_NAMES.items():
        if known == dtype:
            return name
    raise ValueError(f"dtype {dtype} cannot be stored; allowed: {sorted(_DTYPE_NAMES)}")


def _check_scale(name: str, field: str, scale: torch.Tensor, rows: int) -> None:
    if not isinstance(scale, torch.Tensor) or not scale.dtype.is_floating_point:
        raise ValueError(f"{name}: {field} must be a floating-point tensor")
    if tuple(scale.shape) not in ((), (rows,)):
        raise ValueError(
            f"{name}: {field} has shape {tuple(scale.shape)}; allowed: () (one per matrix) "
            f"or ({rows},) (one per row)"
        )
    if not bool(torch.isfinite(scale).all()):
        raise ValueError(f"{name}: {field} holds NaN or inf")


@dataclass
class PackedTensor:
    """A quantized weight: packed codes (1-D, :func:`~quantgpt.export.packing.pack_codes` layout)
    and its scales. ``scale`` has shape () or (shape[0],); ``scale_neg``, when given, is used for
    negative codes and has the same shape as ``scale``."""

    name: str
    bits: int
    shape: tuple[int, ...]
    packed: torch.Tensor
    scale: torch.Tensor
    scale_neg: torch.Tensor | None = None

    def __post_init__(self) -> None:
        if not isinstance(self.name, str) or not self.name:
            raise ValueError(f"name={self.name!r} must be a non-empty string")
        if type(self.bits) is not int or not 2 <= self.bits <= 8:
            raise ValueError(f"{self.name}: bits={self.bits!r}; allowed: an int in 2..8")
        self.shape = tuple(self.shape)
        if not self.shape or any(type(d) is not int or d < 1 for d in self.shape):
            raise ValueError(f"{self.name}: shape={self.shape!r}; allowed: one or more positive ints")
        expected = storage_dtype(self.bits)
        if not isinstance(self.packed, torch.Tensor) or self.packed.dtype != expected:
            got = getattr(self.packed, "dtype", type(self.packed).__name__)
            raise ValueError(f"{self.name}: packed codes have dtype {got}; {self.bits} bits need {expected}")
        nbytes = packed_numel(math.prod(self.shape), self.bits)
        if tuple(self.packed.shape) != (nbytes,):
            raise ValueError(
                f"{self.name}: packed codes have shape {tuple(self.packed.shape)}; shape {self.shape} "
                f"at {self.bits} bits needs ({nbytes},)"
            )
        _check_scale(self.name, "scale", self.scale, self.shape[0])
        if self.scale_neg is not None:
            _check_scale(self.name, "scale_neg", self.scale_neg, self.shape[0])
            if self.scale_neg.shape != self.scale.shape:
                raise ValueError(
                    f"{self.name}: scale_neg shape {tuple(self.scale_neg.shape)} differs from "
                    f"scale shape {tuple(self.scale.shape)}"
                )

    @classmethod
    def from_codes(
        cls,
        name: str,
        codes: torch.Tensor,
        bits: int,
        scale: torch.Tensor | float,
        scale_neg: torch.Tensor | float | None = None,
    ) -> PackedTensor:
        """Pack integer ``codes`` (any shape, values in ``code_range(bits)``) with their scales.

        A scale with one element becomes a scalar; one with ``codes.shape[0]`` elements becomes a
        per-row scale. Raises ``ValueError`` for codes out of range or scales of another size.
        """

        def as_scale(value: torch.Tensor | float) -> torch.Tensor:
            tensor = torch.as_tensor(value, dtype=torch.float32).detach()
            return tensor.reshape(()) if tensor.numel() == 1 else tensor.reshape(-1)

        return cls(
            name=name,
            bits=bits,
            shape=tuple(codes.shape),
            packed=pack_codes(codes, bits),
            scale=as_scale(scale),
            scale_neg=None if scale_neg is None else as_scale(scale_neg),
        )

    def codes(self) -> torch.Tensor:
        """The integer codes as an int8 tensor of ``shape``."""
        return unpack_codes(self.packed, self.bits, self.shape)

    def dequantize(self, dtype: torch.dtype = torch.float32) -> torch.Tensor:
        """The weight ``c * scale`` (``c * scale_neg`` for negative codes when given), in ``dtype``."""
        codes = self.codes().to(dtype)
        view = (-1,) + (1,) * (len(self.shape) - 1)
        scale = self.scale.to(dtype).reshape(view) if self.scale.ndim else self.scale.to(dtype)
        if self.scale_neg is None:
            return codes * scale
        scale_neg = self.scale_neg.to(dtype).reshape(scale.shape)
        return codes * torch.where(codes < 0, scale_neg, scale)


@dataclass
class DenseTensor:
    """A tensor stored as is (LayerNorm weights, biases, position embedding, ...)."""

    name: str
    tensor: torch.Tensor

    def __post_init__(self) -> None:
        if not isinstance(self.name, str) or not self.name:
            raise ValueError(f"name={self.name!r} must be a non-empty string")
        if not isinstance(self.tensor, torch.Tensor):
            raise ValueError(f"{self.name}: tensor must be a torch.Tensor, got {type(self.tensor).__name__}")
        _dtype_name(self.tensor.dtype)


Entry = PackedTensor | DenseTensor


# ---------------------------------------------------------------------------------------- writing


def _storage_plan(entries: list[Entry]) -> tuple[dict[str, torch.Tensor], list[dict[str, Any]]]:
    """The safetensors dict and the index records of ``entries``, checking names are unique."""
    tensors: dict[str, torch.Tensor] = {}
    records: list[dict[str, Any]] = []
    names: set[str] = set()

    def store(key: str, tensor: torch.Tensor) -> str:
        if key in tensors:
            raise ValueError(f"storage name {key!r} is used twice; rename one of the tensors")
        # Contiguous private copies: safetensors refuses views and tensors sharing memory.
        tensors[key] = tensor.detach().to("cpu").contiguous().clone()
        return key

    def half_scale(entry: PackedTensor, field: str, scale: torch.Tensor) -> torch.Tensor:
        stored = scale.detach().to(SCALE_DTYPE)
        if not bool(torch.isfinite(stored).all()):
            raise ValueError(f"{entry.name}: {field} overflows float16")
        return stored

    for entry in entries:
        if not isinstance(entry, (PackedTensor, DenseTensor)):
            raise ValueError(f"entries must be PackedTensor or DenseTensor, got {type(entry).__name__}")
        entry.__post_init__()  # fields may have been changed since construction
        if entry.name in names:
            raise ValueError(f"tensor name {entry.name!r} appears twice")
        names.add(entry.name)
        if isinstance(entry, PackedTensor):
            records.append(
                {
                    "name": entry.name,
                    "kind": "packed",
                    "bits": entry.bits,
                    "shape": list(entry.shape),
                    "dtype": _dtype_name(entry.packed.dtype),
                    "codes": store(f"{entry.name}.codes", entry.packed),
                    "scale": store(f"{entry.name}.scale", half_scale(entry, "scale", entry.scale)),
                    "scale_neg": None
                    if entry.scale_neg is None
                    else store(f"{entry.name}.scale_neg", half_scale(entry, "scale_neg", entry.scale_neg)),
                }
            )
        else:
            records.append(
                {
                    "name": entry.name,
                    "kind": "dense",
                    "shape": list(entry.tensor.shape),
                    "dtype": _dtype_name(entry.tensor.dtype),
                    "tensor": store(entry.name, entry.tensor),
                }
            )
    return tensors, records


def _fsync(path: Path) -> None:
    with open(path, "rb") as handle:
        os.fsync(handle.fileno())


def write_packed(
    directory: str | os.PathLike,
    entries: list[Entry],
    model_config: dict[str, Any],
    extra: dict[str, Any] | None = None,
    *,
    overwrite: bool = False,
) -> Path:
    """Write ``entries`` as a packed model into ``directory``; returns the directory's path.

    ``model_config`` is the Transformers config as a dict (``config.to_dict()``); ``extra`` any
    JSON-serializable metadata (bit setting, method, ...). Both files are written to a temporary
    directory beside the target first. A new directory is then renamed into place in one step; into
    an existing directory (which may hold a tokenizer) the two files are moved one after the other,
    weights first, and the index's SHA-256 of the weights lets the reader reject a mismatched pair
    left by a crash. An existing packed model is replaced only with ``overwrite=True``.
    """
    target = Path(directory)
    extra = {} if extra is None else extra
    if not isinstance(model_config, dict) or not isinstance(extra, dict):
        raise ValueError("model_config and extra must be dicts")
    tensors, records = _storage_plan(list(entries))
    index: dict[str, Any] = {
        "format": FORMAT_NAME,
        "format_version": FORMAT_VERSION,
        "model_config": model_config,
        "extra": extra,
        "safetensors_sha256": "",
        "tensors": records,
    }
    json.dumps(index, allow_nan=False)  # fail before touching the disk if not serializable
    if target.exists() and not target.is_dir():
        raise FileExistsError(f"{target} exists and is not a directory")
    if target.is_dir() and not overwrite and any((target / f).exists() for f in (WEIGHTS_FILE, INDEX_FILE)):
        raise FileExistsError(f"{target} already holds a packed model; pass overwrite=True to replace it")

    target.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{target.name}.tmp-", dir=target.parent))
    try:
        save_file(tensors, str(staging / WEIGHTS_FILE), metadata={"format": FORMAT_NAME})
        _fsync(staging / WEIGHTS_FILE)
        index["safetensors_sha256"] = sha256_of(staging / WEIGHTS_FILE)
        with open(staging / INDEX_FILE, "w", encoding="utf-8") as handle:
            json.dump(index, handle, indent=1, allow_nan=False)
            handle.flush()
            os.fsync(handle.fileno())
        if not target.exists():
            os.rename(staging, target)
            return target
        os.replace(staging / WEIGHTS_FILE, target / WEIGHTS_FILE)
        os.replace(staging / INDEX_FILE, target / INDEX_FILE)
        return target
    finally:
        if staging.exists():
            shutil.rmtree(staging, ignore_errors=True)


# ---------------------------------------------------------------------------------------- reading


def _fail(message: str) -> PackedFormatError:
    return PackedFormatError(message)


def _reject_duplicate_keys(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    result: dict[str, Any] = {}
    for key, value in pairs:
        if key in result:
            raise _fail(f"{INDEX_FILE}: key {key!r} appears twice in one object")
        result[key] = value
    return result


def _reject_constant(name: str) -> None:
    raise _fail(f"{INDEX_FILE}: {name} is not valid JSON")


def _load_index(path: Path) -> dict[str, Any]:
    if not path.is_file():
        raise _fail(f"{path} is missing")
    size = path.stat().st_size
    if size > MAX_INDEX_BYTES:
        raise _fail(f"{INDEX_FILE} is {size} bytes; at most {MAX_INDEX_BYTES} are accepted")
    try:
        index = json.loads(
            path.read_bytes().decode("utf-8"),
            object_pairs_hook=_reject_duplicate_keys,
            parse_constant=_reject_constant,
        )
    except PackedFormatError:
        raise
    except (ValueError, RecursionError) as error:  # JSONDecodeError, UnicodeDecodeError, huge ints
        raise _fail(f"{INDEX_FILE} is not valid JSON: {str(error).splitlines()[0][:200]}") from None
    return index


def _is_int(value: Any) -> bool:
    return type(value) is int  # bool is an int subclass and must not pass


def _require(condition: bool, message: str) -> None:
    if not condition:
        raise _fail(message)


def _check_record(position: int, record: Any) -> None:
    where = f"{INDEX_FILE}: tensors[{position}]"
    _require(isinstance(record, dict), f"{where} must be an object")
    name = record.get("name")
    _require(isinstance(name, str) and name != "", f"{where}.name must be a non-empty string")
    where = f"{INDEX_FILE}: tensor {name!r}"
    kind = record.get("kind")
    _require(kind in ("packed", "dense"), f"{where}: kind={kind!r}; allowed: 'packed', 'dense'")
    keys = _PACKED_KEYS if kind == "packed" else _DENSE_KEYS
    _require(set(record) == keys, f"{where}: fields {sorted(record)}; expected exactly {sorted(keys)}")
    shape = record["shape"]
    _require(
        isinstance(shape, list) and all(_is_int(d) for d in shape),
        f"{where}: shape={shape!r} must be a list of ints",
    )
    dtype = record["dtype"]
    _require(
        isinstance(dtype, str) and dtype in _DTYPE_NAMES,
        f"{where}: dtype={dtype!r}; allowed: {sorted(_DTYPE_NAMES)}",
    )
    if kind == "dense":
        _require(all(d >= 0 for d in shape), f"{where}: shape={shape!r} has a negative size")
        _require(isinstance(record["tensor"], str), f"{where}: tensor must be a string")
        return
    bits = record["bits"]
    _require(_is_int(bits) and 2 <= bits <= 8, f"{where}: bits={bits!r}; allowed: an int in 2..8")
    _require(len(shape) >= 1 and all(d >= 1 for d in shape), f"{where}: shape={shape!r} must be positive ints")
    _require(
        dtype == _dtype_name(storage_dtype(bits)),
        f"{where}: dtype={dtype!r}; {bits} bits are stored as {_dtype_name(storage_dtype(bits))}",
    )
    _require(isinstance(record["codes"], str), f"{where}: codes must be a string")
    _require(isinstance(record["scale"], str), f"{where}: scale must be a string")
    _require(
        record["scale_neg"] is None or isinstance(record["scale_neg"], str),
        f"{where}: scale_neg must be a string or null",
    )


def _check_index(index: Any) -> None:
    _require(isinstance(index, dict), f"{INDEX_FILE}: top level must be an object")
    _require(set(index) == _TOP_KEYS, f"{INDEX_FILE}: fields {sorted(index)}; expected exactly {sorted(_TOP_KEYS)}")
    _require(index["format"] == FORMAT_NAME, f"{INDEX_FILE}: format={index['format']!r}; expected {FORMAT_NAME!r}")
    version = index["format_version"]
    _require(
        _is_int(version) and version == FORMAT_VERSION,
        f"{INDEX_FILE}: format_version={version!r}; this reader knows {FORMAT_VERSION}",
    )
    _require(isinstance(index["model_config"], dict), f"{INDEX_FILE}: model_config must be an object")
    _require(isinstance(index["extra"], dict), f"{INDEX_FILE}: extra must be an object")
    digest = index["safetensors_sha256"]
    _require(
        isinstance(digest, str) and len(digest) == 64 and all(c in "0123456789abcdef" for c in digest),
        f"{INDEX_FILE}: safetensors_sha256 must be 64 lowercase hex digits",
    )
    _require(isinstance(index["tensors"], list), f"{INDEX_FILE}: tensors must be a list")
    names: set[str] = set()
    for position, record in enumerate(index["tensors"]):
        _check_record(position, record)
        _require(record["name"] not in names, f"{INDEX_FILE}: tensor name {record['name']!r} appears twice")
        names.add(record["name"])


def _stored_names(record: dict[str, Any]) -> list[str]:
    if record["kind"] == "dense":
        return [record["tensor"]]
    return [record["codes"], record["scale"]] + ([record["scale_neg"]] if record["scale_neg"] else [])


def _expected_layout(record: dict[str, Any]) -> dict[str, tuple[str, tuple[int, ...] | None]]:
    """Storage name -> (dtype name, shape) that the index promises; shape None means scalar or per-row."""
    if record["kind"] == "dense":
        return {record["tensor"]: (record["dtype"], tuple(record["shape"]))}
    nbytes = packed_numel(math.prod(record["shape"]), record["bits"])
    layout: dict[str, tuple[str, tuple[int, ...] | None]] = {record["codes"]: (record["dtype"], (nbytes,))}
    for field in ("scale", "scale_neg"):
        if record[field] is not None:
            layout[record[field]] = (_dtype_name(SCALE_DTYPE), None)
    return layout


def _open_weights(path: Path, max_bytes: int) -> Any:
    if not path.is_file():
        raise _fail(f"{path} is missing")
    size = path.stat().st_size
    _require(size <= max_bytes, f"{WEIGHTS_FILE} is {size} bytes; at most {max_bytes} are accepted")
    try:
        return safe_open(str(path), framework="pt", device="cpu")
    except Exception as error:  # SafetensorError and friends: the header does not parse
        raise _fail(f"{WEIGHTS_FILE} is not a valid safetensors file: {str(error).splitlines()[0][:200]}") from None


def read_packed(
    directory: str | os.PathLike,
    *,
    verify_checksum: bool = True,
    max_weights_bytes: int = DEFAULT_MAX_WEIGHTS_BYTES,
) -> tuple[list[Entry], dict[str, Any], dict[str, Any]]:
    """Read a packed model written by :func:`write_packed`.

    Returns ``(entries, model_config, extra)``, entries in the order they were written. Every
    structural promise is checked before a tensor is trusted: the index's schema and version, the
    SHA-256 of the weights (unless ``verify_checksum=False``), each stored tensor present with the
    declared dtype and size and no tensor left unexplained, finite scales of shape () or (rows,),
    and codes inside their bit width's range after unpacking. Any failure raises
    :class:`PackedFormatError` naming the tensor or field.
    """
    root = Path(directory)
    index = _load_index(root / INDEX_FILE)
    _check_index(index)
    records: list[dict[str, Any]] = index["tensors"]

    weights_path = root / WEIGHTS_FILE
    handle = _open_weights(weights_path, max_weights_bytes)
    if verify_checksum:
        _require(
            sha256_of(weights_path) == index["safetensors_sha256"],
            f"{WEIGHTS_FILE}: SHA-256 differs from the index (damaged, or from another export)",
        )
    with handle:
        try:
            stored = set(handle.keys())
        except Exception as error:
            raise _fail(f"{WEIGHTS_FILE}: cannot list tensors: {error}") from None
        promised: dict[str, tuple[str, tuple[int, ...] | None]] = {}
        for record in records:
            for key, layout in _expected_layout(record).items():
                _require(key not in promised, f"{INDEX_FILE}: storage name {key!r} is used by two tensors")
                promised[key] = layout
        missing = sorted(set(promised) - stored)
        if missing:
            raise _fail(f"{WEIGHTS_FILE}: tensor {missing[0]!r} is missing")
        unknown = sorted(stored - set(promised))
        if unknown:
            raise _fail(f"{WEIGHTS_FILE}: tensor {unknown[0]!r} is not described by the index")

        loaded: dict[str, torch.Tensor] = {}
        for record in records:
            rows = record["shape"][0] if record["kind"] == "packed" else 0
            for key, (dtype, shape) in _expected_layout(record).items():
                where = f"{WEIGHTS_FILE}: tensor {key!r}"
                try:
                    view = handle.get_slice(key)
                    found_dtype = _SAFETENSORS_DTYPES.get(view.get_dtype(), view.get_dtype())
                    found_shape = tuple(view.get_shape())
                except Exception as error:
                    raise _fail(f"{where}: unreadable header entry: {error}") from None
                _require(found_dtype == dtype, f"{where}: dtype {found_dtype}; the index declares {dtype}")
                allowed = [shape] if shape is not None else [(), (rows,)]
                _require(found_shape in allowed, f"{where}: shape {found_shape}; expected one of {allowed}")
                try:
                    loaded[key] = handle.get_tensor(key)
                except Exception as error:
                    raise _fail(f"{where}: cannot be read: {error}") from None

    entries: list[Entry] = []
    for record in records:
        name = record["name"]
        try:
            if record["kind"] == "dense":
                entries.append(DenseTensor(name, loaded[record["tensor"]]))
                continue
            entry = PackedTensor(
                name=name,
                bits=record["bits"],
                shape=tuple(record["shape"]),
                packed=loaded[record["codes"]],
                scale=loaded[record["scale"]],
                scale_neg=None if record["scale_neg"] is None else loaded[record["scale_neg"]],
            )
            entry.codes()  # decodes and range-checks; a byte no code maps to fails here
        except ValueError as error:
            message = str(error)
            raise _fail(message if message.startswith(name) else f"{name}: {message}") from None
        entries.append(entry)
    return entries, index["model_config"], index["extra"]


__all__ = [
    "FORMAT_VERSION",
    "INDEX_FILE",
    "WEIGHTS_FILE",
    "DenseTensor",
    "Entry",
    "PackedFormatError",
    "PackedTensor",
    "read_packed",
    "write_packed",
]
