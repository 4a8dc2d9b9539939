"""Bad input through the real command line: one clean line, status 2, and nothing on disk touched.

Each case builds its inputs (tiny models saved once per module, damaged copies per case), runs
`quantgpt.cli.main` (one through the installed `quantgpt` executable) and asserts: exit status
2, exactly one stderr line, starting `quantgpt: error:`, no traceback, every input file's SHA-256
unchanged and no new file or folder anywhere (no run directory, no partial export, no temporary
sibling). Outcomes are tallied: `python tests/test_bad_inputs.py` prints tried / clean / traceback /
silent / noisy for all cases (and pytest -s prints the same at the end of the module).
"""

from __future__ import annotations

import errno
import json
import os
import subprocess
import sys
from collections import Counter
from pathlib import Path
from typing import Callable

import pytest
import tiny_models
import torch
from bad_input_helpers import plant_pickles, snapshot, truncate
from safetensors.torch import load_file, save_file
from transformers import GPT2Config, GPT2LMHeadModel
from transformers.utils import logging as transformers_logging

from quantgpt import QuantConfig, quantize_model
from quantgpt.cli import main
from quantgpt.export import export_packed
from quantgpt.export.packed_format import INDEX_FILE, WEIGHTS_FILE

transformers_logging.set_verbosity_error()

REPO = Path(__file__).resolve().parents[1]
QUANTGPT = Path(sys.executable).with_name("quantgpt")
SHARED = (REPO / ".." / "shared" / "data").resolve()
TOKENIZER = SHARED / "gpt2-tokenizer"
POSITIONS = 64
OUTCOMES: Counter = Counter()


# ------------------------------------------------------------------------------------------ models


def tiny_config(vocab: int) -> GPT2Config:
    return tiny_models.tiny_config("tiny", n_positions=POSITIONS, vocab_size=vocab, bos_token_id=0, eos_token_id=0)


@pytest.fixture(scope="module")
def base(tmp_path_factory, gpt2_tokenizer) -> Path:
    """teacher/ (full precision), run/best (quantized 2-2-8, a training run's layout), packed/."""
    root = tmp_path_factory.mktemp("inputs")
    torch.manual_seed(0)
    teacher = GPT2LMHeadModel(tiny_config(len(gpt2_tokenizer))).eval()
    teacher.save_pretrained(root / "teacher")
    gpt2_tokenizer.save_pretrained(root / "teacher")
    student = quantize_model(GPT2LMHeadModel(tiny_config(len(gpt2_tokenizer))).eval(), QuantConfig(bits="2-2-8"))
    student.save_pretrained(root / "run" / "best")
    gpt2_tokenizer.save_pretrained(root / "run" / "best")
    (root / "run" / "run_config.json").write_text("{}")
    export_packed(root / "run", root / "packed")
    (root / "cfgs").mkdir()
    (root / "cfgs" / "small.json").write_text((root / "teacher" / "config.json").read_text())
    return root


def copy_model(source: Path, target: Path) -> Path:
    target.mkdir(parents=True)
    for path in source.iterdir():
        if path.is_file():
            (target / path.name).write_bytes(path.read_bytes())
    return target


def edit_config(directory: Path, **changes) -> Path:
    config = json.loads((directory / "config.json").read_text())
    config.update(changes)
    (directory / "config.json").write_text(json.dumps(config))
    return directory


def edit_quantization(directory: Path, drop: str | None = None, **changes) -> Path:
    config = json.loads((directory / "config.json").read_text())
    config["quantization_config"].update(changes)
    config["quantization_config"].pop(drop, None)
    (directory / "config.json").write_text(json.dumps(config))
    return directory


def pickle_only(directory: Path, marker: Path) -> Path:
    """`directory` with its safetensors weights replaced by a hostile pytorch_model.bin."""
    (directory / "model.safetensors").unlink()
    plant_pickles(directory, marker, ("pytorch_model.bin",))
    return directory


def wrong_shape(directory: Path) -> Path:
    state = load_file(directory / "model.safetensors")
    state["transformer.wpe.weight"] = torch.zeros(POSITIONS, 33)
    save_file(state, directory / "model.safetensors", metadata={"format": "pt"})
    return directory


def flip_byte(path: Path) -> Path:
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 0xFF
    path.write_bytes(bytes(data))
    return path


# ------------------------------------------------------------------------------------------ cases

# A case gets (base, tmp) and returns the argv, after making any damaged input under tmp.
Case = Callable[[Path, Path], list]


def _teacher(edit: Callable[[Path], object]) -> Callable[[Path, Path], Path]:
    def make(base: Path, tmp: Path) -> Path:
        directory = copy_model(base / "teacher", tmp / "model")
        edit(directory)
        return directory

    return make


def _quantized(edit: Callable[[Path], object]) -> Callable[[Path, Path], Path]:
    def make(base: Path, tmp: Path) -> Path:
        directory = copy_model(base / "run" / "best", tmp / "model")
        edit(directory)
        return directory

    return make


def _packed(edit: Callable[[Path], object]) -> Callable[[Path, Path], Path]:
    def make(base: Path, tmp: Path) -> Path:
        directory = copy_model(base / "packed", tmp / "packed")
        edit(directory)
        return directory

    return make


def _write(path_in_tmp: str, content: bytes | str) -> Callable[[Path, Path], Path]:
    def make(base: Path, tmp: Path) -> Path:
        path = tmp / path_in_tmp
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(content.encode() if isinstance(content, str) else content)
        return path

    return make


DAMAGED_MODELS = {
    "garbage config.json": lambda d: (d / "config.json").write_text("this is { not json"),
    "binary config.json": lambda d: (d / "config.json").write_bytes(bytes(range(256)) * 4),
    "empty config.json": lambda d: (d / "config.json").write_bytes(b""),
    "config.json a list": lambda d: (d / "config.json").write_text("[1, 2, 3]"),
    "n_embd -64": lambda d: edit_config(d, n_embd=-64),
    "vocab_size 0": lambda d: edit_config(d, vocab_size=0),
    "n_layer 0": lambda d: edit_config(d, n_layer=0),
    "n_head does not divide n_embd": lambda d: edit_config(d, n_head=3),
    "n_embd a string": lambda d: edit_config(d, n_embd="wide"),
    "unknown model_type": lambda d: edit_config(d, model_type="gpt5"),
    "truncated model.safetensors": lambda d: truncate(d / "model.safetensors"),
    "empty model.safetensors": lambda d: (d / "model.safetensors").write_bytes(b""),
    "wrong-shaped tensor": wrong_shape,
}
SIZE_CASES = ("garbage config.json", "binary config.json", "config.json a list", "n_embd -64", "vocab_size 0",
              "n_layer 0", "n_head does not divide n_embd", "n_embd a string", "unknown model_type")
TEACHER_CASES = ("garbage config.json", "binary config.json", "n_embd -64", "vocab_size 0", "n_layer 0",
                 "truncated model.safetensors", "empty model.safetensors", "wrong-shaped tensor")
EVALUATE_CASES = ("binary config.json", "empty config.json", "n_layer 0", "truncated model.safetensors",
                  "empty model.safetensors", "wrong-shaped tensor")


def quantize_argv(teacher: Path, tmp: Path, *extra) -> list:
    return ["quantize", "--teacher", str(teacher), "--data-dir", str(SHARED), "--train-split", "testbed-train",
            "--eval-split", "testbed-select", "--tokenizer", str(TOKENIZER), "--output-dir", str(tmp / "run-out"), *extra]


def evaluate_argv(model: Path) -> list:
    return ["evaluate", str(model), "--data-dir", str(SHARED), "--split", "testbed-select", "--max-eval-examples", "1"]


def generate_argv(packed: Path, *extra) -> list:
    return ["generate", str(packed), *extra]


CASES: dict[str, Case] = {}
for name in SIZE_CASES:
    CASES[f"size: {name}"] = (lambda n: lambda b, t: [
        "size", "--model-config", str(_teacher(DAMAGED_MODELS[n])(b, t)), "--bits", "2-2-8"])(name)
CASES["size: a missing config file"] = lambda b, t: ["size", "--model-config", str(t / "nope.json"), "--bits", "2-2-8"]
CASES["size: --bits 9-2-8"] = lambda b, t: ["size", "--model-config", "gpt2", "--bits", "9-2-8"]
CASES["size: --bits word"] = lambda b, t: ["size", "--model-config", "gpt2", "--bits", "two"]
CASES["size: --accounting bogus"] = lambda b, t: ["size", "--model-config", "gpt2", "--bits", "2-2-8", "--accounting", "x"]
CASES["size: an unsupported model_type"] = lambda b, t: [
    "size", "--model-config", str(_write("cfg.json", '{"model_type": "bert", "architectures": ["BertModel"]}')(b, t)),
    "--bits", "2-2-8"]

for name in TEACHER_CASES:
    CASES[f"quantize --teacher: {name}"] = (lambda n: lambda b, t: quantize_argv(_teacher(DAMAGED_MODELS[n])(b, t), t))(name)
CASES["quantize --teacher: a lone pickle pytorch_model.bin"] = lambda b, t: quantize_argv(
    _teacher(lambda d: pickle_only(d, t / "UNPICKLED"))(b, t), t)
CASES["quantize --teacher: a quantized model"] = lambda b, t: quantize_argv(b / "run" / "best", t)
CASES["quantize --teacher: a missing directory"] = lambda b, t: quantize_argv(t / "missing", t)
CASES["quantize: --method bogus (argparse)"] = lambda b, t: quantize_argv(b / "teacher", t, "--method", "bogus")
CASES["quantize: --bits 2-2"] = lambda b, t: quantize_argv(b / "teacher", t, "--bits", "2-2")
CASES["quantize: --output-dir under a file"] = lambda b, t: quantize_argv(
    b / "teacher", t, "--output-dir", str(_write("file", "x")(b, t) / "run"))
CASES["quantize: no --teacher (argparse)"] = lambda b, t: ["quantize", "--output-dir", str(t / "run-out")]

for name in EVALUATE_CASES:
    CASES[f"evaluate: {name}"] = (lambda n: lambda b, t: evaluate_argv(_quantized(DAMAGED_MODELS[n])(b, t)))(name)
# A saved quantization_config must be complete and agree with the weights: a missing field is
# never filled with its default (a 4-4-8 model without `bits` would load as 2-2-8).
DAMAGED_QUANTIZATION = {
    "quantization_config without bits": lambda d: edit_quantization(d, drop="bits"),
    "quantization_config without method": lambda d: edit_quantization(d, drop="method"),
    "quantization_config without quant_method": lambda d: edit_quantization(d, drop="quant_method"),
    "quantization_config a list": lambda d: edit_config(d, quantization_config=["quantgpt"]),
    "quantization_config null": lambda d: edit_config(d, quantization_config=None),
    "quantization_config bits 9-2-8": lambda d: edit_quantization(d, bits="9-2-8"),
    "quantization_config of another library": lambda d: edit_quantization(d, quant_method="bitsandbytes"),
    "quantization_config method pact over QuantGPT's scales": lambda d: edit_quantization(d, method="pact"),
    "quantization_config method rtn over QuantGPT's scales": lambda d: edit_quantization(d, method="rtn"),
}
for name in DAMAGED_QUANTIZATION:
    CASES[f"evaluate: {name}"] = (lambda n: lambda b, t: evaluate_argv(_quantized(DAMAGED_QUANTIZATION[n])(b, t)))(name)
for name in ("quantization_config without bits", "quantization_config method pact over QuantGPT's scales"):
    CASES[f"export: {name}"] = (lambda n: lambda b, t: [
        "export", str(_quantized(DAMAGED_QUANTIZATION[n])(b, t)), str(t / "out")])(name)
CASES["size: quantization_config without bits"] = lambda b, t: [  # size reads config.json only, the weights never
    "size", "--model-config", str(_quantized(DAMAGED_QUANTIZATION["quantization_config without bits"])(b, t)), "--bits", "2-2-8"]
CASES["evaluate: a lone pickle pytorch_model.bin"] = lambda b, t: evaluate_argv(
    _teacher(lambda d: pickle_only(d, t / "UNPICKLED"))(b, t))
CASES["evaluate: a missing directory"] = lambda b, t: evaluate_argv(t / "missing")

LONG_PROMPT = "the tower is tall " * 40  # about 160 tokens, beyond the 64 positions
CASES["generate: empty prompt"] = lambda b, t: generate_argv(b / "packed", "--prompt", "")
CASES["generate: prompt longer than the positions"] = lambda b, t: generate_argv(b / "packed", "--prompt", LONG_PROMPT)
CASES["generate: non-UTF-8 prompt"] = lambda b, t: generate_argv(b / "packed", "--prompt", "caf\udce9")
CASES["generate: --max-new-tokens beyond the positions"] = lambda b, t: generate_argv(
    b / "packed", "--prompt", "The tower", "--max-new-tokens", "100000")
CASES["generate: --max-new-tokens 0"] = lambda b, t: generate_argv(b / "packed", "--prompt", "x", "--max-new-tokens", "0")
CASES["generate: --num-beams 0"] = lambda b, t: generate_argv(b / "packed", "--prompt", "x", "--num-beams", "0")
CASES["generate: --threads -2"] = lambda b, t: generate_argv(b / "packed", "--prompt", "x", "--threads", "-2")
CASES["generate: --threads 0"] = lambda b, t: generate_argv(b / "packed", "--prompt", "x", "--threads", "0")
CASES["generate: --top-p 2"] = lambda b, t: generate_argv(b / "packed", "--prompt", "x", "--do-sample", "--top-p", "2")
CASES["generate: --temperature 0"] = lambda b, t: generate_argv(b / "packed", "--prompt", "x", "--do-sample", "--temperature", "0")
CASES["generate: --top-k without --do-sample"] = lambda b, t: generate_argv(b / "packed", "--prompt", "x", "--top-k", "5")
CASES["generate: --max-new-tokens word (argparse)"] = lambda b, t: generate_argv(b / "packed", "--prompt", "x", "--max-new-tokens", "many")
CASES["generate: packed weights with a flipped byte"] = lambda b, t: generate_argv(
    _packed(lambda d: flip_byte(d / WEIGHTS_FILE))(b, t), "--prompt", "x")
CASES["generate: truncated packed weights"] = lambda b, t: generate_argv(
    _packed(lambda d: truncate(d / WEIGHTS_FILE))(b, t), "--prompt", "x")
CASES["generate: packed index not JSON"] = lambda b, t: generate_argv(
    _packed(lambda d: (d / INDEX_FILE).write_text("{\"format\": "))(b, t), "--prompt", "x")
CASES["generate: packed index missing"] = lambda b, t: generate_argv(
    _packed(lambda d: (d / INDEX_FILE).unlink())(b, t), "--prompt", "x")
CASES["generate: a save_pretrained directory, not a packed one"] = lambda b, t: generate_argv(b / "teacher", "--prompt", "x")
CASES["generate: a damaged tokenizer.json"] = lambda b, t: generate_argv(
    _packed(lambda d: (d / "tokenizer.json").write_text("{]"))(b, t), "--prompt", "x")

CASES["export: --overwrite onto a full-precision teacher"] = lambda b, t: ["export", str(b / "run"), str(b / "teacher"), "--overwrite"]
CASES["export: --overwrite onto RUN/best"] = lambda b, t: ["export", str(b / "run"), str(b / "run" / "best"), "--overwrite"]
CASES["export: --overwrite onto the run itself"] = lambda b, t: ["export", str(b / "run"), str(b / "run"), "--overwrite"]
CASES["export: --overwrite onto a folder holding the input"] = lambda b, t: ["export", str(b / "run" / "best"), str(b / "run"), "--overwrite"]
CASES["export: onto an existing packed model without --overwrite"] = lambda b, t: ["export", str(b / "run"), str(b / "packed")]
CASES["export: onto an existing file"] = lambda b, t: ["export", str(b / "run"), str(_write("notes.txt", "keep me")(b, t))]
CASES["export: --overwrite onto a non-empty plain folder"] = lambda b, t: [
    "export", str(b / "run"), str(_write("folder/notes.txt", "keep me")(b, t).parent), "--overwrite"]
CASES["export: under a path that is a file"] = lambda b, t: ["export", str(b / "run"), str(_write("file", "x")(b, t) / "out")]
CASES["export: a run whose best/ is truncated"] = lambda b, t: ["export", str(_quantized(
    lambda d: truncate(d / "model.safetensors"))(b, t)), str(t / "out")]
CASES["export: a model with a lone pickle"] = lambda b, t: ["export", str(_quantized(
    lambda d: pickle_only(d, t / "UNPICKLED"))(b, t)), str(t / "out")]
CASES["export: a full-precision model"] = lambda b, t: ["export", str(b / "teacher"), str(t / "out")]

YAML_FILES = {
    "malformed YAML": "teacher: [unclosed\nbits: 2-2-8\n",
    "YAML with a python tag": "teacher: !!python/object/apply:builtins.open ['{tmp}/UNPICKLED', 'w']\n",
    "YAML a list": "- teacher\n- bits\n",
    "YAML an unknown key": "teacher: x\nlearning_rate: 0.1\n",
    "YAML binary": "\x00\xff\xfe\x01",
    "YAML a list for an integer flag": "batch_size: [1, 2]\n",
    "YAML a word for a number": "lr: fast\n",
    "YAML a bad choice": "method: bogus\n",
}
for name, text in YAML_FILES.items():
    CASES[f"quantize --config: {name}"] = (lambda x: lambda b, t: [
        "quantize", "--config", str(_write("flags.yaml", x.replace("{tmp}", str(t)).encode("latin-1"))(b, t))])(text)
CASES["quantize --config: a missing file"] = lambda b, t: ["quantize", "--config", str(t / "none.yaml")]
CASES["quantize --config: no file named"] = lambda b, t: ["quantize", "--config"]
def run_argv(tmp: Path, *extra) -> list:
    return ["run", "--recipe", "tiny", "--out", str(tmp / "results"), "--cache", str(tmp / "cache"), "--no-progress", *extra]


# Wrong statistics: a method named twice trained its seed twice and counted two seeds.
CASES["run: --methods quantgpt quantgpt"] = lambda b, t: run_argv(t, "--methods", "quantgpt", "quantgpt")
CASES["run: --bits 2-2-8 2-2-8"] = lambda b, t: run_argv(t, "--bits", "2-2-8", "2-2-8")
CASES["run: --bits with no value"] = lambda b, t: run_argv(t, "--bits")
CASES["run: --test-sets ptb ptb"] = lambda b, t: run_argv(t, "--test-sets", "ptb", "ptb")
# Messages that must say what is wrong with the path given (not a neighbouring complaint).
CASES["generate: a missing .gguf file"] = lambda b, t: generate_argv(t / "none.gguf", "--prompt", "x")
CASES["generate: a directory named .gguf"] = lambda b, t: generate_argv(_write("d.gguf/notes.txt", "x")(b, t).parent, "--prompt", "x")
CASES["generate: a missing packed directory"] = lambda b, t: generate_argv(t / "nothing", "--prompt", "x")
CASES["quantize: --train-file a directory"] = lambda b, t: quantize_argv(
    b / "teacher", t, "--dataset", "text", "--train-file", str(_write("texts/a.txt", "x")(b, t).parent),
    "--eval-file", str(t / "texts" / "a.txt"))
CASES["quantize: --dataset a folder with no data files"] = lambda b, t: quantize_argv(
    b / "teacher", t, "--dataset", str(_write("mydata/task.toml", "x = 1")(b, t).parent))
CASES["quantize --config: a key given twice"] = lambda b, t: [
    "quantize", "--config", str(_write("flags.yaml", "method: pact\nmethod: lsq\n")(b, t))]
CASES["evaluate: --lm-eval with an empty task name"] = lambda b, t: [*evaluate_argv(b / "run" / "best"), "--lm-eval", ""]
CASES["run: --out under a file"] = lambda b, t: run_argv(t, "--out", str(_write("file", "x")(b, t) / "results"))
CASES["run: --runs under a file"] = lambda b, t: run_argv(t, "--runs", str(_write("file", "x")(b, t) / "runs"))
MESSAGES = {
    "generate: a missing .gguf file": "none.gguf: no such file",
    "generate: a directory named .gguf": "d.gguf: a directory, not a GGUF file",
    "generate: a missing packed directory": "nothing: no such packed model directory",
    "quantize: --train-file a directory": "texts: a directory, not a file",
    "quantize: --dataset a folder with no data files": "mydata: the folder holds no data files",
    "quantize --config: a key given twice": "key 'method' appears twice",
    "evaluate: --lm-eval with an empty task name": "--lm-eval: an empty task name",
    "run: --out under a file": "--out ",
    "run: --runs under a file": "--runs ",
    "evaluate: quantization_config without bits": "model/config.json: quantization_config.bits is missing",
    "evaluate: quantization_config without method": "model/config.json: quantization_config.method is missing",
    "evaluate: quantization_config method pact over QuantGPT's scales": "model/config.json: quantization_config.method='pact'",
    "export: quantization_config without bits": "model/config.json: quantization_config.bits is missing",
    "run: --methods quantgpt quantgpt": "quantgpt is named twice",
}
CASES["no command (argparse)"] = lambda b, t: []
CASES["unknown command (argparse)"] = lambda b, t: ["compress"]

# Through the installed executable: real argv bytes (not UTF-8), the real exit status. One only:
# each start imports torch and Transformers (seconds).
SUBPROCESS_CASES = ("generate: non-UTF-8 prompt",)


# ------------------------------------------------------------------------------------------ running


def classify(status: int, err: str) -> str:
    if "Traceback" in err:
        return "traceback"
    if status == 0:
        return "silent"
    lines = err.strip().splitlines()
    if status == 2 and len(lines) == 1 and lines[0].startswith("quantgpt: error: "):
        return "clean"
    return "noisy"


def run_subprocess(argv: list) -> tuple[int, str]:
    arguments = [os.fsencode(a) for a in argv]  # "caf\udce9" becomes the non-UTF-8 bytes b"caf\xe9"
    env = {**os.environ, "PYTHONWARNINGS": "default"}
    result = subprocess.run([str(QUANTGPT), *arguments], capture_output=True, env=env, timeout=120)
    return result.returncode, result.stderr.decode("utf-8", "replace")


@pytest.mark.parametrize("name", list(CASES))
def test_bad_input_is_one_clean_line(name, base, tmp_path, capfd):
    argv = CASES[name](base, tmp_path)
    before = snapshot(base, tmp_path)
    capfd.readouterr()
    if name in SUBPROCESS_CASES:
        status, err = run_subprocess(argv)
    else:
        status = main(argv)
        err = capfd.readouterr().err
    outcome = classify(status, err)
    OUTCOMES[outcome] += 1
    assert outcome == "clean", f"{name}: status {status}, stderr:\n{err}"
    assert MESSAGES.get(name, "") in err, f"{name}: the line does not say {MESSAGES[name]!r}: {err}"
    assert snapshot(base, tmp_path) == before, f"{name}: files changed or were left behind"
    assert not (tmp_path / "UNPICKLED").exists(), f"{name}: a pickle was unpickled"


@pytest.fixture(scope="module", autouse=True)
def _report_outcomes():
    yield
    if OUTCOMES:
        print(f"\nbad inputs: tried {sum(OUTCOMES.values())}, " + ", ".join(f"{k} {OUTCOMES[k]}" for k in
              ("clean", "traceback", "silent", "noisy")))


def test_there_are_at_least_40_cases():
    assert len(CASES) >= 40


# ------------------------------------------------------------------------------------------ what still works


def test_size_reads_any_json_file(base, capsys):
    assert main(["size", "--model-config", str(base / "cfgs" / "small.json"), "--bits", "2-2-8", "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["ratio"] > 1


def test_an_unreadable_config_json_is_one_clean_line(base, tmp_path, monkeypatch, capfd):
    model = copy_model(base / "teacher", tmp_path / "teacher")
    real_read = Path.read_bytes

    def refuse_config(path):
        if path.name == "config.json":
            raise PermissionError(errno.EACCES, "Permission denied", str(path))
        return real_read(path)

    monkeypatch.setattr(Path, "read_bytes", refuse_config)
    capfd.readouterr()
    status = main(["size", "--model-config", str(model), "--bits", "2-2-8"])
    err = capfd.readouterr().err
    assert classify(status, err) == "clean", err
    assert "config.json: cannot read it (Permission denied)" in err


def test_export_overwrite_replaces_a_packed_model(base, tmp_path, capsys):
    out = copy_model(base / "packed", tmp_path / "packed")
    (out / INDEX_FILE).write_text((out / INDEX_FILE).read_text(encoding="utf-8") + " ", encoding="utf-8")
    assert main(["export", str(base / "run"), str(out), "--overwrite", "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["directory"] == str(out)
    assert (out / INDEX_FILE).read_bytes() == (base / "packed" / INDEX_FILE).read_bytes()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["packed"]  # no temporary sibling left


def test_export_overwrite_refuses_a_packed_model_holding_the_users_files(base, tmp_path, capsys):
    out = copy_model(base / "packed", tmp_path / "packed")
    (out / "notes.txt").write_text("mine")
    before = snapshot(tmp_path)
    assert main(["export", str(base / "run"), str(out), "--overwrite"]) == 2
    err = capsys.readouterr().err
    assert classify(2, err) == "clean" and "--overwrite only replaces a packed model" in err, err
    assert snapshot(tmp_path) == before  # notes.txt and the export intact


@pytest.mark.parametrize("existing", [False, True])
def test_a_full_disk_leaves_no_half_written_export(base, tmp_path, monkeypatch, capfd, existing):
    import quantgpt.export.exporter as exporter

    real_write = exporter.write_packed

    def write_then_fail(directory, *args, **kwargs):
        real_write(directory, *args, **kwargs)
        raise OSError(errno.ENOSPC, "No space left on device")

    out = tmp_path / "packed"
    if existing:
        copy_model(base / "packed", out)
    before = snapshot(tmp_path)
    monkeypatch.setattr(exporter, "write_packed", write_then_fail)
    capfd.readouterr()
    argv = ["export", str(base / "run"), str(out)] + (["--overwrite"] if existing else [])
    assert main(argv) == 2
    err = capfd.readouterr().err
    assert err.startswith("quantgpt: error:") and "No space left on device" in err and len(err.splitlines()) == 1
    assert snapshot(tmp_path) == before  # the old export intact, or nothing at all


if __name__ == "__main__":
    sys.exit(pytest.main([__file__, "-q", "-s", "-p", "no:cacheprovider"]))
