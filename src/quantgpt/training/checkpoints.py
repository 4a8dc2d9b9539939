"""Checkpoints that survive a kill at any moment and never execute what they read.

A directory `checkpoints/step-N/` exists only complete: it is written as `checkpoints/.tmp-step-N/`,
fsynced, then renamed in one `os.replace`. Every piece of training state is safetensors or JSON,
so resuming from a checkpoint someone else wrote cannot run code (Accelerate's `save_state` /
`load_state` pickle the scheduler and RNG states and unpickle them with `weights_only=False`):

    model.safetensors        the training module: student, quantizer parameters, distiller
                             projections and memory banks (a tied LM head is stored once)
    optimizer.safetensors    AdamW's per-parameter tensors, keyed "<parameter index>.<name>"
    optimizer.json           the parameter groups (hyperparameters) and non-tensor state
    scheduler.json           the learning-rate schedule's state_dict
    grad_scaler.json         fp16 loss scaling, when used
    rng-<rank>.safetensors   torch's CPU (and CUDA) generator states of process <rank>
    rng-<rank>.json          Python's `random` and numpy's states of process <rank>
    trainer_state.json       the loop's state: step, best metric, ...

`load` reads and checks every file against the model and optimizer being resumed before it
changes anything; a missing, truncated or mismatched file is an `InputFileError` naming it. The
best model (`best/`, a `save_pretrained` directory with the tokenizer) is replaced the same way.
"""

from __future__ import annotations

import json
import os
import random
import re
import shutil
from pathlib import Path
from typing import Any

import numpy as np
import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file, save_model
from torch import Tensor, nn

from ..durable import replace_directory
from ..errors import InputFileError
from ..jsonio import dumps_json
from ..validators import is_number

CHECKPOINTS_DIR = "checkpoints"
BEST_DIR = "best"
TRAINER_STATE = "trainer_state.json"
MODEL_FILE = "model.safetensors"
OPTIMIZER_TENSORS = "optimizer.safetensors"
OPTIMIZER_STRUCTURE = "optimizer.json"
SCHEDULER_FILE = "scheduler.json"
GRAD_SCALER_FILE = "grad_scaler.json"
_STEP_DIR = re.compile(r"^step-(\d+)$")
_UINT32 = 2**32


def write_json(path: Path, data: Any) -> None:
    with open(path, "w") as handle:
        handle.write(dumps_json(data, indent=2, sort_keys=True) + "\n")


def write_json_atomic(path: Path, data: Any) -> None:
    """Write JSON to `path` through a temporary file and a rename."""
    tmp = path.with_name(f".{path.name}.tmp")
    with open(tmp, "w") as handle:
        handle.write(dumps_json(data, indent=2, sort_keys=True) + "\n")
        handle.flush()
        os.fsync(handle.fileno())
    os.replace(tmp, path)


def rng_files(rank: int) -> tuple[str, str]:
    return f"rng-{rank}.safetensors", f"rng-{rank}.json"


class CheckpointReader:
    """Reads the files of one checkpoint; every problem is an InputFileError naming the file."""

    def __init__(self, path: Path) -> None:
        self.path = path

    def damaged(self, name: str, problem: str) -> InputFileError:
        return InputFileError(
            f"{self.path / name}: {problem}; the checkpoint is damaged: delete {self.path} to resume from the "
            "checkpoint before it, or start a new --output-dir"
        )

    def json(self, name: str) -> Any:
        try:
            return json.loads((self.path / name).read_text())
        except FileNotFoundError:
            raise self.damaged(name, "missing") from None
        except (UnicodeDecodeError, json.JSONDecodeError) as error:
            raise self.damaged(name, f"not valid JSON ({error})") from None

    def tensors(self, name: str) -> dict[str, Tensor]:
        file = self.path / name
        if not file.is_file():
            raise self.damaged(name, "missing")
        try:
            return load_file(file)
        except (SafetensorError, OSError, ValueError) as error:
            raise self.damaged(name, f"not a readable safetensors file ({str(error).splitlines()[0]})") from None


def _same_tensor_spec(name: str, got: Tensor, want: Tensor) -> str | None:
    if got.shape != want.shape or got.dtype != want.dtype:
        return f"{name} is {got.dtype} {tuple(got.shape)}, the model being resumed has {want.dtype} {tuple(want.shape)}"
    return None


def _check_module_state(reader: CheckpointReader, tensors: dict[str, Tensor], module: nn.Module) -> None:
    expected = module.state_dict()
    unexpected = sorted(set(tensors) - set(expected))
    if unexpected:
        raise reader.damaged(MODEL_FILE, f"holds tensors the model being resumed does not have ({', '.join(unexpected[:3])})")
    stored = {expected[key].data_ptr() for key in tensors}
    # A tied tensor (GPT-2's LM head is the word embedding) is stored once, under one of its names.
    missing = sorted(
        key for key in set(expected) - set(tensors) if expected[key].data_ptr() not in stored or not expected[key].numel()
    )
    if missing:
        raise reader.damaged(MODEL_FILE, f"lacks tensors of the model being resumed ({', '.join(missing[:3])})")
    for key, value in tensors.items():
        problem = _same_tensor_spec(key, value, expected[key])
        if problem:
            raise reader.damaged(MODEL_FILE, problem)


def _flatten_optimizer(optimizer: torch.optim.Optimizer) -> tuple[dict[str, Tensor], dict[str, Any]]:
    """The optimizer's state_dict as tensors (for safetensors) and the rest (for JSON)."""
    state_dict = optimizer.state_dict()
    tensors: dict[str, Tensor] = {}
    plain_state: dict[str, dict[str, Any]] = {}
    for index, entries in state_dict["state"].items():
        plain_state[str(index)] = {}
        for name, value in entries.items():
            if isinstance(value, Tensor):
                tensors[f"{index}.{name}"] = value.detach().cpu().contiguous()
            else:
                plain_state[str(index)][name] = value
    return tensors, {"param_groups": state_dict["param_groups"], "state": plain_state}


def _optimizer_state_dict(
    reader: CheckpointReader, tensors: dict[str, Tensor], structure: Any, optimizer: torch.optim.Optimizer
) -> dict[str, Any]:
    """Rebuild and check a state_dict for `optimizer` from what `_flatten_optimizer` wrote."""
    current = optimizer.state_dict()
    groups = structure.get("param_groups") if isinstance(structure, dict) else None
    plain = structure.get("state") if isinstance(structure, dict) else None
    if not isinstance(groups, list) or not isinstance(plain, dict) or not all(isinstance(g, dict) for g in groups):
        raise reader.damaged(OPTIMIZER_STRUCTURE, "expected an object with 'param_groups' and 'state'")
    sizes = [len(g.get("params") or []) for g in groups]
    want_sizes = [len(g["params"]) for g in current["param_groups"]]
    if sizes != want_sizes:
        raise reader.damaged(OPTIMIZER_STRUCTURE, f"parameter groups of sizes {sizes}, the run being resumed has {want_sizes}")
    parameters = {
        index: parameter
        for saved, group in zip(current["param_groups"], optimizer.param_groups)
        for index, parameter in zip(saved["params"], group["params"])
    }
    param_groups = []
    for saved, now in zip(groups, current["param_groups"]):
        if saved["params"] != now["params"]:
            raise reader.damaged(OPTIMIZER_STRUCTURE, "parameter indices differ from the run being resumed")
        # JSON has no tuples: give back the ones the optimizer uses (AdamW's betas).
        param_groups.append(
            {key: tuple(value) if isinstance(now.get(key), tuple) and isinstance(value, list) else value for key, value in saved.items()}
        )
    state: dict[int, dict[str, Any]] = {}
    for index, entries in plain.items():
        if not index.isdigit() or int(index) not in parameters or not isinstance(entries, dict):
            raise reader.damaged(OPTIMIZER_STRUCTURE, f"state of an unknown parameter {index!r}")
        state[int(index)] = dict(entries)
    for key, value in tensors.items():
        index, _, name = key.partition(".")
        if not index.isdigit() or int(index) not in state:
            raise reader.damaged(OPTIMIZER_TENSORS, f"tensor {key!r} of an unknown parameter")
        parameter = parameters[int(index)]
        if value.ndim and (value.shape != parameter.shape or value.dtype != parameter.dtype):
            raise reader.damaged(
                OPTIMIZER_TENSORS,
                f"{key} is {value.dtype} {tuple(value.shape)}, its parameter {parameter.dtype} {tuple(parameter.shape)}",
            )
        state[int(index)][name] = value
    return {"state": state, "param_groups": param_groups}


def _check_plain_state(reader: CheckpointReader, name: str, saved: Any, current: dict[str, Any]) -> None:
    """`saved` must have the keys of `current` (a state_dict of plain values), each of the same kind."""
    if not isinstance(saved, dict) or set(saved) != set(current):
        raise reader.damaged(name, f"expected an object with the keys {sorted(current)}")
    for key, value in current.items():
        number = is_number(value)
        if number and not is_number(saved[key]):
            raise reader.damaged(name, f"{key} is {saved[key]!r}, expected a number")
        if not number and value is not None and not isinstance(saved[key], type(value)):
            raise reader.damaged(name, f"{key} is {saved[key]!r}, expected a {type(value).__name__}")


def _generator_states() -> tuple[dict[str, Tensor], dict[str, Any]]:
    tensors = {"torch": torch.get_rng_state()}
    if torch.cuda.is_available():
        for device, state in enumerate(torch.cuda.get_rng_state_all()):
            tensors[f"cuda.{device}"] = state
    name, keys, position, has_gauss, cached = np.random.get_state()
    plain = {"python": random.getstate(), "numpy": [name, keys.tolist(), position, has_gauss, cached]}
    return tensors, plain


def _is_words(values: Any, length: int) -> bool:
    return isinstance(values, list) and len(values) == length and all(isinstance(v, int) and 0 <= v < _UINT32 for v in values)


def _check_generator_states(reader: CheckpointReader, rank: int, tensors: dict[str, Tensor], plain: Any) -> None:
    tensor_file, json_file = rng_files(rank)
    want = torch.get_rng_state()
    states = {"torch": want}
    if torch.cuda.is_available():
        states.update({f"cuda.{device}": torch.cuda.get_rng_state(device) for device in range(torch.cuda.device_count())})
    if "torch" not in tensors:
        raise reader.damaged(tensor_file, "no 'torch' generator state")
    for key, value in tensors.items():
        if key in states and (value.dtype != torch.uint8 or value.shape != states[key].shape):
            raise reader.damaged(
                tensor_file, f"the {key} generator state is {value.dtype} {tuple(value.shape)}, expected uint8 {tuple(states[key].shape)}"
            )
    python = plain.get("python") if isinstance(plain, dict) else None
    if not (isinstance(python, list) and len(python) == 3 and isinstance(python[0], int) and _is_words(python[1], 625)
            and (python[2] is None or isinstance(python[2], float)) and python[1][-1] <= 624):
        raise reader.damaged(json_file, "'python' is not a state of Python's random module")
    numpy = plain.get("numpy")
    if not (isinstance(numpy, list) and len(numpy) == 5 and numpy[0] == "MT19937" and _is_words(numpy[1], 624)
            and isinstance(numpy[2], int) and 0 <= numpy[2] <= 624
            and isinstance(numpy[3], int) and isinstance(numpy[4], (int, float))):
        raise reader.damaged(json_file, "'numpy' is not a state of numpy's global generator")


def _set_generator_states(tensors: dict[str, Tensor], plain: dict[str, Any]) -> None:
    torch.set_rng_state(tensors["torch"])
    if torch.cuda.is_available():
        for device in range(torch.cuda.device_count()):
            if f"cuda.{device}" in tensors:
                torch.cuda.set_rng_state(tensors[f"cuda.{device}"], device)
    version, words, gauss = plain["python"]
    random.setstate((version, tuple(words), gauss))
    name, keys, position, has_gauss, cached = plain["numpy"]
    np.random.set_state((name, np.array(keys, dtype=np.uint32), position, has_gauss, float(cached)))


class CheckpointManager:
    """Saves, finds, loads and prunes `run_dir/checkpoints/step-N/`.

    `module`, `optimizer` and `scheduler` are what the loop trains (as `accelerator.prepare`
    returned them). `save` and `load` are collective: every process calls them (each saves and
    restores its own generator states); the other files are written by the main process.
    """

    def __init__(self, run_dir: Path, keep: int, accelerator: Any, *, module: nn.Module, optimizer: Any, scheduler: Any) -> None:
        self.root = Path(run_dir) / CHECKPOINTS_DIR
        self.keep = keep
        self.accelerator = accelerator
        self.module = module
        self.optimizer = getattr(optimizer, "optimizer", optimizer)  # Accelerate's wrapper holds the torch optimizer
        self.scheduler = scheduler

    def checkpoints(self) -> list[tuple[int, Path]]:
        """Complete checkpoints, oldest first."""
        if not self.root.is_dir():
            return []
        found = []
        for path in self.root.iterdir():
            match = _STEP_DIR.match(path.name)
            if match and path.is_dir() and (path / TRAINER_STATE).is_file():
                found.append((int(match.group(1)), path))
        return sorted(found)

    def latest(self) -> Path | None:
        found = self.checkpoints()
        return found[-1][1] if found else None

    @property
    def _scaler(self) -> Any:
        return getattr(self.accelerator, "scaler", None)

    def save(self, step: int, trainer_state: dict[str, Any]) -> Path:
        accelerator = self.accelerator
        final = self.root / f"step-{step}"
        tmp = self.root / f".tmp-step-{step}"
        if accelerator.is_main_process:
            if tmp.exists():  # left by a crash during an earlier save
                shutil.rmtree(tmp)
            tmp.mkdir(parents=True)
        accelerator.wait_for_everyone()
        tensor_file, json_file = rng_files(accelerator.process_index)
        rng_tensors, rng_plain = _generator_states()
        save_file(rng_tensors, tmp / tensor_file, metadata={"format": "pt"})
        write_json(tmp / json_file, rng_plain)
        if accelerator.is_main_process:
            save_model(accelerator.unwrap_model(self.module), str(tmp / MODEL_FILE), metadata={"format": "pt"})
            optimizer_tensors, optimizer_structure = _flatten_optimizer(self.optimizer)
            save_file(optimizer_tensors, tmp / OPTIMIZER_TENSORS, metadata={"format": "pt"})
            write_json(tmp / OPTIMIZER_STRUCTURE, optimizer_structure)
            write_json(tmp / SCHEDULER_FILE, self.scheduler.state_dict())
            if self._scaler is not None:
                write_json(tmp / GRAD_SCALER_FILE, self._scaler.state_dict())
        accelerator.wait_for_everyone()
        if accelerator.is_main_process:
            write_json(tmp / TRAINER_STATE, trainer_state)
            replace_directory(tmp, final)
            self._prune()
        accelerator.wait_for_everyone()
        return final

    def load(self, path: Path) -> dict[str, Any]:
        """Restore everything `save` wrote; returns the trainer state. Every file is read and
        checked before anything is restored."""
        reader = CheckpointReader(Path(path))
        trainer_state = reader.json(TRAINER_STATE)
        match = _STEP_DIR.match(reader.path.name)
        if not isinstance(trainer_state, dict) or not isinstance(trainer_state.get("step"), int):
            raise reader.damaged(TRAINER_STATE, "expected an object with an integer 'step'")
        if match and trainer_state["step"] != int(match.group(1)):
            raise reader.damaged(TRAINER_STATE, f"step {trainer_state['step']} in the checkpoint of step {match.group(1)}")

        module = self.accelerator.unwrap_model(self.module)
        model_tensors = reader.tensors(MODEL_FILE)
        _check_module_state(reader, model_tensors, module)
        optimizer_state = _optimizer_state_dict(
            reader, reader.tensors(OPTIMIZER_TENSORS), reader.json(OPTIMIZER_STRUCTURE), self.optimizer
        )
        scheduler_state = reader.json(SCHEDULER_FILE)
        _check_plain_state(reader, SCHEDULER_FILE, scheduler_state, self.scheduler.state_dict())
        scaler_state = None
        if self._scaler is not None:
            scaler_state = reader.json(GRAD_SCALER_FILE)
            _check_plain_state(reader, GRAD_SCALER_FILE, scaler_state, self._scaler.state_dict())
        rank = self.accelerator.process_index
        tensor_file, json_file = rng_files(rank)
        rng_tensors, rng_plain = reader.tensors(tensor_file), reader.json(json_file)
        _check_generator_states(reader, rank, rng_tensors, rng_plain)

        module.load_state_dict(model_tensors, strict=False)  # checked above; tied tensors are stored once
        try:
            self.optimizer.load_state_dict(optimizer_state)
        except (KeyError, TypeError, ValueError, RuntimeError) as error:
            raise reader.damaged(OPTIMIZER_STRUCTURE, f"does not fit the optimizer ({error})") from None
        self.scheduler.load_state_dict(scheduler_state)
        if scaler_state is not None:
            self._scaler.load_state_dict(scaler_state)
        try:
            _set_generator_states(rng_tensors, rng_plain)
        except (TypeError, ValueError, OverflowError, RuntimeError) as error:
            raise reader.damaged(json_file, f"a generator state was refused ({error})") from None
        return trainer_state

    def _prune(self) -> None:
        for _, path in self.checkpoints()[: -self.keep]:
            shutil.rmtree(path)
        for path in self.root.glob(".tmp-step-*"):
            shutil.rmtree(path, ignore_errors=True)
