"""The model files a user hands to a command, checked before anything loads them.

A model directory written by `save_pretrained` holds `config.json` and safetensors weights. Here
`config.json` must be a JSON object that Transformers builds a config from, with sizes that are
positive integers (a model with no layers or an empty vocabulary is refused, not built). Weights
must be safetensors: a pickle file such as `pytorch_model.bin` is never opened, since unpickling can
run any code; the user is told to convert it. Each safetensors header must parse and cover its
file exactly (a truncated file fails here), and every tensor the architecture also has must have
the architecture's shape. Every failure is one `InputFileError` line naming the file.
"""

from __future__ import annotations

import contextlib
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import torch
import transformers
from huggingface_hub.errors import StrictDataclassError
from safetensors import SafetensorError, safe_open
from transformers import PretrainedConfig
from transformers.models.auto.configuration_auto import CONFIG_MAPPING
from transformers.utils import logging as transformers_logging

from .errors import InputFileError, MissingInputError
from .schemas import check_quantizer_tensors, quant_config_from_saved
from .validators import is_int

CONFIG_FILE = "config.json"
SAFE_WEIGHTS = "model.safetensors"
SAFE_INDEX = "model.safetensors.index.json"
# Weight files of other formats: pickle (torch.save) and the TensorFlow / Flax ones, never read.
PICKLE_SUFFIXES = (".bin", ".pt", ".pth", ".ckpt", ".pkl", ".pickle")
OTHER_WEIGHTS = ("tf_model.h5", "flax_model.msgpack")
MAX_JSON_BYTES = 16 * 2**20  # a config.json is a few KiB; a larger file is not one
MAX_SIZE = 2**31 - 1
# Sizes (under their canonical names and GPT-2's) that must be integers >= 1 wherever a config has them.
POSITIVE_SIZES = (
    "vocab_size",
    "hidden_size",
    "num_hidden_layers",
    "num_attention_heads",
    "num_key_value_heads",
    "max_position_embeddings",
    "intermediate_size",
    "head_dim",
    "n_embd",
    "n_layer",
    "n_head",
    "n_positions",
    "n_ctx",
    "n_inner",
    "d_model",
    "encoder_layers",
    "decoder_layers",
    "encoder_attention_heads",
    "decoder_attention_heads",
    "encoder_ffn_dim",
    "decoder_ffn_dim",
    "ffn_dim",
    "word_embed_proj_dim",
)


def read_json_object(path: str | Path) -> dict[str, Any]:
    """The JSON object in the file `path`; a missing, binary, malformed or non-object file is refused."""
    path = Path(path)
    if not path.exists():
        raise MissingInputError(f"{path}: no such file")
    if not path.is_file():
        raise InputFileError(f"{path}: not a file")
    size = path.stat().st_size
    if size > MAX_JSON_BYTES:
        raise InputFileError(f"{path}: {size} bytes, too large for a JSON config (at most {MAX_JSON_BYTES})")
    try:
        text = path.read_bytes().decode("utf-8")
    except UnicodeDecodeError as error:
        raise InputFileError(f"{path}: not UTF-8 text (byte {error.start}); expected a JSON file") from None
    except OSError as error:  # unreadable (permissions), or gone since the check
        raise InputFileError(f"{path}: cannot read it ({error.strerror or error})") from None
    try:
        data = json.loads(text)
    except json.JSONDecodeError as error:
        raise InputFileError(f"{path}: line {error.lineno} column {error.colno}: not valid JSON ({error.msg})") from None
    except RecursionError:
        raise InputFileError(f"{path}: nested too deeply to be a JSON config") from None
    if not isinstance(data, dict):
        raise InputFileError(f"{path}: expected a JSON object, got {type(data).__name__}")
    return data


def _check_size_values(data: dict[str, Any], source: Path) -> None:
    for name in POSITIVE_SIZES:
        value = data.get(name)
        if value is None:
            continue
        if not is_int(value) or not 1 <= value <= MAX_SIZE:
            raise InputFileError(f"{source}: {name}={value!r} is not allowed: use an integer from 1 to {MAX_SIZE}")


def _check_divisible(config: PretrainedConfig, source: Path) -> None:
    """Attention splits the width into heads: the head count must divide it (when head_dim is not given)."""
    if getattr(config, "head_dim", None) is not None:
        return
    width = getattr(config, "hidden_size", None)
    for name in ("num_attention_heads", "encoder_attention_heads", "decoder_attention_heads"):
        heads = getattr(config, name, None)
        if isinstance(width, int) and isinstance(heads, int) and heads > 0 and width % heads:
            shown = config.attribute_map.get(name, name)
            raise InputFileError(
                f"{source}: {shown}={heads} does not divide the width "
                f"{config.attribute_map.get('hidden_size', 'hidden_size')}={width}"
            )


def model_config_from_dict(data: dict[str, Any], source: str | Path = CONFIG_FILE) -> PretrainedConfig:
    """The Transformers config of the `config.json` contents `data`, with every size checked."""
    source = Path(source)
    model_type = data.get("model_type")
    if not isinstance(model_type, str) or model_type not in CONFIG_MAPPING:
        raise InputFileError(
            f"{source}: model_type={model_type!r} is not a Transformers model type; "
            "pass the config.json written by save_pretrained"
        )
    _check_size_values(data, source)
    architectures = data.get("architectures")
    if architectures is not None and (
        not isinstance(architectures, list) or not all(isinstance(name, str) for name in architectures)
    ):
        raise InputFileError(f"{source}: architectures={architectures!r} is not allowed: use a list of class names")
    if "quantization_config" in data:
        quant_config_from_saved(data["quantization_config"], source)
    try:
        config = CONFIG_MAPPING[model_type].from_dict(dict(data))
    except (StrictDataclassError, TypeError, ValueError, AttributeError, LookupError, ArithmeticError) as error:
        detail = " ".join(str(error).split())[:300]
        raise InputFileError(f"{source}: not a valid {model_type} config ({detail})") from None
    # Derived sizes (a config fills in defaults and aliases) must be valid as well, and a size may
    # be null only where the config class itself leaves it unset by default (GPT-2's n_inner).
    _check_size_values({name: getattr(config, name, None) for name in POSITIVE_SIZES}, source)
    defaults = type(config)()
    for name in POSITIVE_SIZES:
        if hasattr(config, name) and getattr(config, name) is None and getattr(defaults, name, None) is not None:
            shown = config.attribute_map.get(name, name)
            raise InputFileError(f"{source}: {shown}=None is not allowed: use an integer from 1 to {MAX_SIZE}")
    _check_divisible(config, source)
    return config


def read_model_config(path: str | Path) -> PretrainedConfig:
    """The checked Transformers config of a JSON file (any name) or of a directory's `config.json`."""
    path = Path(path).expanduser()
    if path.is_dir():
        path = path / CONFIG_FILE
    return model_config_from_dict(read_json_object(path), path)


def _refuse_other_formats(directory: Path) -> None:
    found = sorted(
        p.name for p in directory.iterdir() if p.is_file() and (p.suffix in PICKLE_SUFFIXES or p.name in OTHER_WEIGHTS)
    )
    if found:
        raise InputFileError(
            f"{directory}: the weights are in {found[0]}, not safetensors; quantgpt never unpickles weight files "
            f"(loading a pickle can run code): convert it to {SAFE_WEIGHTS} with save_pretrained in a trusted session"
        )
    raise MissingInputError(f"{directory}: no {SAFE_WEIGHTS} or {SAFE_INDEX}; pass a directory written by save_pretrained")


def safetensors_files(directory: str | Path) -> list[Path]:
    """The safetensors files of a `save_pretrained` directory: one file, or the shards its index names."""
    directory = Path(directory)
    if (directory / SAFE_WEIGHTS).is_file():
        return [directory / SAFE_WEIGHTS]
    if not (directory / SAFE_INDEX).is_file():
        _refuse_other_formats(directory)
    index_file = directory / SAFE_INDEX
    weight_map = read_json_object(index_file).get("weight_map")
    if not isinstance(weight_map, dict) or not weight_map or not all(
        isinstance(key, str) and isinstance(value, str) for key, value in weight_map.items()
    ):
        raise InputFileError(f"{index_file}: weight_map must be a non-empty object of tensor names to shard files")
    shards = []
    for name in sorted(set(weight_map.values())):
        if Path(name).name != name or name in ("", ".", ".."):
            raise InputFileError(f"{index_file}: shard {name!r} is not a file name inside {directory}")
        if not (directory / name).is_file():
            raise MissingInputError(f"{index_file}: shard {name} is missing")
        shards.append(directory / name)
    return shards


def read_tensor_shapes(path: str | Path) -> dict[str, tuple[int, ...]]:
    """Name -> shape of every tensor in a safetensors file; the header must parse and cover the file."""
    path = Path(path)
    try:
        with safe_open(str(path), framework="pt", device="cpu") as handle:
            return {name: tuple(handle.get_slice(name).get_shape()) for name in handle.keys()}
    except (SafetensorError, OSError) as error:
        detail = " ".join(str(error).split())[:200]
        raise InputFileError(f"{path}: not a valid safetensors file, damaged or truncated ({detail})") from None


def expected_shapes(config: PretrainedConfig) -> dict[str, tuple[int, ...]]:
    """Name -> shape of every tensor of the architecture `config` names, built on the meta device
    (empty when config.json names no Transformers class: the caller's class is used then)."""
    names = getattr(config, "architectures", None) or []
    model_class = getattr(transformers, names[0], None) if names else None
    if not isinstance(model_class, type) or not issubclass(model_class, torch.nn.Module):
        return {}
    try:
        with torch.device("meta"):
            model = model_class(config)
    except (ValueError, TypeError, RuntimeError, AttributeError, ZeroDivisionError) as error:
        detail = " ".join(str(error).split())[:200]
        raise InputFileError(f"{CONFIG_FILE} describes a {names[0]} that cannot be built ({detail})") from None
    return {name: tuple(tensor.shape) for name, tensor in model.state_dict().items()}


def check_model_weights(directory: str | Path, config: PretrainedConfig) -> None:
    """Refuse weights that are not safetensors, damaged, or shaped unlike `config`'s architecture."""
    directory = Path(directory)
    shapes: dict[str, tuple[int, ...]] = {}
    files = safetensors_files(directory)
    for path in files:
        shapes.update(read_tensor_shapes(path))
    expected = expected_shapes(config)
    for name, shape in shapes.items():
        if name in expected and expected[name] != shape:
            raise InputFileError(
                f"{directory}: tensor {name} has shape {list(shape)} but config.json's "
                f"{type(config).__name__} needs {list(expected[name])}"
            )
    if getattr(config, "quantization_config", None) is not None:
        check_quantizer_tensors(config, shapes, directory / CONFIG_FILE)


@contextlib.contextmanager
def quiet_progress_bars() -> Iterator[None]:
    """Transformers' per-shard "Loading weights" / saving progress bars off while a model loads or
    saves: stderr is for errors."""
    bars = transformers_logging.is_progress_bar_enabled()
    transformers_logging.disable_progress_bar()
    try:
        yield
    finally:
        if bars:
            transformers_logging.enable_progress_bar()


def check_model_dir(path: str | Path, role: str = "model") -> PretrainedConfig:
    """The config of the `save_pretrained` directory `path`, after checking the files a load reads.

    `role` names the argument in messages (e.g. "--teacher")."""
    directory = Path(path).expanduser()
    if not directory.exists():
        raise MissingInputError(f"{role} {path}: no such directory")
    if not directory.is_dir():
        raise InputFileError(f"{role} {path}: not a directory; pass the directory written by save_pretrained")
    if not (directory / CONFIG_FILE).is_file():
        raise MissingInputError(f"{role} {path}: no {CONFIG_FILE}; pass a directory written by save_pretrained")
    config = read_model_config(directory / CONFIG_FILE)
    check_model_weights(directory, config)
    return config


__all__ = [
    "check_model_dir",
    "check_model_weights",
    "model_config_from_dict",
    "quiet_progress_bars",
    "read_json_object",
    "read_model_config",
    "safetensors_files",
]
