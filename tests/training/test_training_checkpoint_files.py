"""A checkpoint is safetensors and JSON only, restores every piece of training state exactly, and a
damaged file is a one-line error naming it (never a silent change of results, never an unpickle)."""

from __future__ import annotations

import json
import math
import random
from pathlib import Path

import numpy as np
import pytest
import torch
from bad_input_helpers import forbid_unpickling, plant_pickles, truncate
from safetensors.torch import load_file, save_file
from torch import nn

from quantgpt.errors import InputFileError
from quantgpt.training.checkpoints import TRAINER_STATE, CheckpointManager
from quantgpt.training.config import TrainingConfig
from quantgpt.training.loop import make_accelerator
from quantgpt.training.metrics import MetricsLog
from quantgpt.training.optim import build_scheduler


class TiedModel(nn.Module):
    """An embedding tied to the output layer (as GPT-2's LM head) and a buffer (as a memory bank)."""

    def __init__(self) -> None:
        super().__init__()
        self.embed = nn.Embedding(11, 4)
        self.hidden = nn.Linear(4, 4)
        self.head = nn.Linear(4, 11, bias=False)
        self.head.weight = self.embed.weight
        self.register_buffer("bank", torch.zeros(3, 4))

    def forward(self, ids: torch.Tensor) -> torch.Tensor:
        return self.head(torch.tanh(self.hidden(self.embed(ids))))


class Training:
    """Model, optimizer, scheduler and a manager over `run_dir`, as the loop builds them."""

    def __init__(self, run_dir: Path, keep: int = 2) -> None:
        torch.manual_seed(0)
        self.model = TiedModel()
        config = TrainingConfig(output_dir=str(run_dir), learning_rate=1e-2, warmup_steps=1)
        self.optimizer = torch.optim.AdamW(
            [{"params": list(self.model.parameters()), "lr": 1e-2, "name": "backbone"}], betas=(0.9, 0.99)
        )
        self.scheduler = build_scheduler(self.optimizer, config, total_steps=10)
        self.manager = CheckpointManager(
            run_dir, keep, make_accelerator(config), module=self.model, optimizer=self.optimizer, scheduler=self.scheduler
        )

    def step(self) -> None:
        ids = torch.randint(0, 11, (2, 5))
        loss = nn.functional.cross_entropy(self.model(ids).flatten(0, 1), ids.flatten())
        loss.backward()
        self.optimizer.step()
        self.scheduler.step()
        self.optimizer.zero_grad()
        self.model.bank.add_(torch.rand(3, 4))


def random_draws() -> tuple:
    return torch.rand(3).tolist(), random.random(), float(np.random.rand())


def saved_checkpoint(tmp_path: Path) -> tuple[Training, Path]:
    training = Training(tmp_path / "run")
    training.step()
    training.step()
    return training, training.manager.save(2, {"step": 2, "best_metric": 1.5})


def test_checkpoint_round_trips_every_piece_of_state_exactly(tmp_path):
    training, path = saved_checkpoint(tmp_path)
    model_state = {k: v.clone() for k, v in training.model.state_dict().items()}
    optimizer_state = training.optimizer.state_dict()
    scheduler_state = training.scheduler.state_dict()
    draws = random_draws()

    restored = Training(tmp_path / "other")  # fresh weights, state and RNG
    random.seed(7)
    np.random.seed(7)
    assert restored.manager.load(path) == {"step": 2, "best_metric": 1.5}
    assert random_draws() == draws
    for key, value in model_state.items():
        assert torch.equal(restored.model.state_dict()[key], value), key
    assert restored.model.head.weight is restored.model.embed.weight  # still tied
    got = restored.optimizer.state_dict()
    assert got["param_groups"] == optimizer_state["param_groups"]
    assert isinstance(got["param_groups"][0]["betas"], tuple)
    for index, entries in optimizer_state["state"].items():
        for name, value in entries.items():
            assert torch.equal(got["state"][index][name], value), (index, name)
    assert restored.scheduler.state_dict() == scheduler_state

    generator = torch.get_rng_state()  # both runs share this process's generator
    training.step()
    torch.set_rng_state(generator)
    restored.step()  # the same next step: same batch, same update
    for key, value in training.model.state_dict().items():
        assert torch.equal(restored.model.state_dict()[key], value), key


def test_checkpoint_holds_only_safetensors_and_json(tmp_path):
    _, path = saved_checkpoint(tmp_path)
    names = sorted(p.name for p in path.iterdir())
    assert names == [
        "model.safetensors", "optimizer.json", "optimizer.safetensors", "rng-0.json", "rng-0.safetensors",
        "scheduler.json", TRAINER_STATE,
    ]
    assert load_file(path / "rng-0.safetensors")["torch"].dtype == torch.uint8
    for name in names:
        if name.endswith(".json"):
            json.loads((path / name).read_text(), parse_constant=pytest.fail)  # strict JSON, no NaN


def test_load_never_unpickles(tmp_path, monkeypatch):
    _, path = saved_checkpoint(tmp_path)
    marker = tmp_path / "unpickled"
    plant_pickles(path, marker)
    training = Training(tmp_path / "other")
    forbid_unpickling(monkeypatch)
    assert training.manager.load(path)["step"] == 2
    assert not marker.exists()


def rewrite_tensor(name: str, value: torch.Tensor):
    def damage(path: Path) -> None:
        tensors = load_file(path)
        tensors[name] = value
        save_file(tensors, path)

    return damage


def garbage(path: Path) -> None:
    path.write_text('{"step": 2, "trunc')


def edit_json(change):
    def damage(path: Path) -> None:
        path.write_text(json.dumps(change(json.loads(path.read_text()))))

    return damage


DAMAGES = {
    "truncated model": ("model.safetensors", truncate),
    "truncated optimizer tensors": ("optimizer.safetensors", truncate),
    "model tensor of another shape": ("model.safetensors", rewrite_tensor("hidden.bias", torch.zeros(5))),
    "model tensor of another dtype": ("model.safetensors", rewrite_tensor("hidden.bias", torch.zeros(4, dtype=torch.float64))),
    "optimizer moment of another shape": ("optimizer.safetensors", rewrite_tensor("1.exp_avg", torch.zeros(2, 2))),
    "garbage optimizer json": ("optimizer.json", garbage),
    "optimizer with another group size": ("optimizer.json", edit_json(lambda d: {**d, "param_groups": [{**d["param_groups"][0], "params": [0]}]})),
    "garbage scheduler json": ("scheduler.json", garbage),
    "garbage trainer state": (TRAINER_STATE, garbage),
    "trainer state of another step": (TRAINER_STATE, edit_json(lambda d: {**d, "step": 5})),
    "rng state of the wrong dtype": ("rng-0.safetensors", rewrite_tensor("torch", torch.zeros(5056, dtype=torch.int64))),
    "rng state of the wrong size": ("rng-0.safetensors", rewrite_tensor("torch", torch.zeros(100, dtype=torch.uint8))),
    "python rng state of the wrong size": ("rng-0.json", edit_json(lambda d: {**d, "python": [3, [1, 2, 3], None]})),
    "garbage numpy rng state": ("rng-0.json", edit_json(lambda d: {**d, "numpy": ["MT19937", [1], 0, 0, 0.0]})),
    "missing rng state": ("rng-0.json", Path.unlink),
}


@pytest.mark.parametrize("damage", sorted(DAMAGES))
def test_damaged_checkpoint_file_is_an_error_naming_it(tmp_path, damage):
    _, path = saved_checkpoint(tmp_path)
    name, spoil = DAMAGES[damage]
    spoil(path / name)
    restored = Training(tmp_path / "other")
    with pytest.raises(InputFileError) as error:
        restored.manager.load(path)
    message = str(error.value)
    assert str(path / name) in message and "\n" not in message
    assert "step-2" in message.split(":", 1)[1]  # says which checkpoint to delete


def test_manager_keeps_the_last_k_complete_checkpoints(tmp_path):
    training = Training(tmp_path, keep=2)
    for step in (3, 6, 9, 12):
        training.manager.save(step, {"step": step})
    (tmp_path / "checkpoints" / ".tmp-step-15").mkdir()  # a save killed half-way is never picked
    (tmp_path / "checkpoints" / "step-99").mkdir()  # nor a directory without its trainer state
    assert [step for step, _ in training.manager.checkpoints()] == [9, 12]
    latest = training.manager.latest()
    assert latest.name == "step-12"
    assert training.manager.load(latest) == {"step": 12}


def test_metrics_log_writes_null_for_non_finite_values_and_survives_a_cut_last_line(tmp_path):
    log = MetricsLog(tmp_path, enabled=True)
    log.write({"kind": "train", "step": 1, "loss": torch.tensor(float("nan")), "grad_norm": math.inf})
    log.write({"kind": "train", "step": 2, "loss": 1.5})
    assert json.loads(log.path.read_text().splitlines()[0]) == {"kind": "train", "step": 1, "loss": None, "grad_norm": None}
    with open(log.path, "a") as handle:
        handle.write('{"kind": "train", "st')  # killed while writing a line
    log.truncate_after(1)
    assert [json.loads(line)["step"] for line in log.path.read_text().splitlines()] == [1]
    log.path.write_text('{"step": 1}\nnot json\n{"step": 2}\n')
    with pytest.raises(InputFileError, match="line 2 is not JSON"):
        log.truncate_after(2)


def test_every_metrics_reader_drops_a_cut_last_line_only(tmp_path):
    from quantgpt.report.runs import read_run
    from quantgpt.training.metrics import read_metrics

    (tmp_path / "run_config.json").write_text(json.dumps({"quantization": {"method": "lsq", "bits": "2-2-8"}}))
    log = MetricsLog(tmp_path, enabled=True)
    log.write({"kind": "train", "step": 1, "loss": 2.0})
    log.write({"kind": "eval", "step": 1, "split": "validation", "ppl": 9.0})
    with open(log.path, "ab") as handle:
        handle.write('{"kind": "train", "note": "caf\u00e9'.encode()[:-1])  # killed mid-line, mid-character
    assert [r["kind"] for r in read_metrics(tmp_path)] == ["train", "eval"]
    assert [r["kind"] for r in read_run(tmp_path).metrics] == ["train", "eval"]
    log.path.write_text('{"step": 1}\n[1]\n{"step": 2}\n')
    with pytest.raises(InputFileError, match="line 2 is not JSON"):
        read_metrics(tmp_path)
    assert read_metrics(tmp_path / "missing") == []
