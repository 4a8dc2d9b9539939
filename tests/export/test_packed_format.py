"""The packed model directory: round trips, atomic writes, and a reader that rejects damaged files."""

import copy
import json
import shutil
import tempfile
from pathlib import Path

import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from safetensors.torch import load_file, save_file

from quantgpt.export.packed_format import (
    INDEX_FILE,
    WEIGHTS_FILE,
    DenseTensor,
    PackedFormatError,
    PackedTensor,
    read_packed,
    write_packed,
)
from quantgpt.export.packing import code_range

MODEL_CONFIG = {"model_type": "gpt2", "n_layer": 2, "n_embd": 8, "vocab_size": 11}
EXTRA = {"bits": "2-2-8", "method": "quantgpt"}


def random_codes(bits: int, shape: tuple[int, ...], seed: int) -> torch.Tensor:
    low, high = code_range(bits)
    generator = torch.Generator().manual_seed(seed)
    return torch.randint(low, high + 1, shape, generator=generator).to(torch.int8)


def sample_entries() -> list:
    generator = torch.Generator().manual_seed(7)
    return [
        PackedTensor.from_codes("wte.weight", random_codes(2, (11, 8), 0), 2, torch.linspace(0.1, 1.1, 11)),
        PackedTensor.from_codes("h.0.attn.c_attn.weight", random_codes(4, (8, 24), 1), 4, 0.03, scale_neg=0.05),
        PackedTensor.from_codes("h.0.mlp.c_fc.weight", random_codes(8, (8, 5), 2), 8, torch.tensor([0.002])),
        PackedTensor.from_codes("h.0.mlp.c_proj.weight", random_codes(3, (3, 3), 3), 3, 0.25),
        DenseTensor("ln_f.weight", torch.randn(8, generator=generator).half()),
        DenseTensor("wpe.weight", torch.randn(4, 8, generator=generator).half()),
        DenseTensor("lm_head.temperature", torch.tensor(1.5)),
    ]


def assert_well_formed(entries) -> None:
    """What a successful load promises: codes in range with the declared shape, finite scales."""
    for entry in entries:
        if isinstance(entry, PackedTensor):
            low, high = code_range(entry.bits)
            codes = entry.codes()
            assert codes.shape == entry.shape
            assert int(codes.min()) >= low and int(codes.max()) <= high
            assert bool(torch.isfinite(entry.dequantize()).all())
        else:
            assert isinstance(entry.tensor, torch.Tensor)


@pytest.fixture(scope="module")
def written(tmp_path_factory) -> Path:
    return write_packed(tmp_path_factory.mktemp("packed") / "model", sample_entries(), MODEL_CONFIG, EXTRA)


def copy_of(written: Path, tmp_path: Path) -> Path:
    target = tmp_path / "copy"
    shutil.copytree(written, target)
    return target


def rewrite_weights(directory: Path, change) -> None:
    """Apply ``change`` to the stored tensors dict and save it back (the checksum is left stale)."""
    tensors = load_file(directory / WEIGHTS_FILE)
    change(tensors)
    save_file(tensors, directory / WEIGHTS_FILE)


def rewrite_index(directory: Path, change) -> None:
    index = json.loads((directory / INDEX_FILE).read_text())
    change(index)
    (directory / INDEX_FILE).write_text(json.dumps(index))


def test_round_trip(written):
    entries, model_config, extra = read_packed(written)
    assert model_config == MODEL_CONFIG and extra == EXTRA
    originals = sample_entries()
    assert [e.name for e in entries] == [e.name for e in originals]
    for got, want in zip(entries, originals):
        assert type(got) is type(want)
        if isinstance(want, DenseTensor):
            assert got.tensor.dtype == want.tensor.dtype and torch.equal(got.tensor, want.tensor)
            continue
        assert (got.bits, got.shape) == (want.bits, want.shape)
        assert torch.equal(got.codes(), want.codes())
        assert got.scale.dtype == torch.float16 and torch.equal(got.scale, want.scale.half())
        assert (got.scale_neg is None) == (want.scale_neg is None)
    assert entries[0].scale.shape == (11,) and entries[1].scale.shape == ()


def test_files_and_byte_sizes(written):
    index = json.loads((written / INDEX_FILE).read_text())
    assert index["format_version"] == 1
    stored = load_file(written / WEIGHTS_FILE)
    # 88 ternary codes -> ceil(88/5) = 18 bytes; 192 nibbles -> 96; 40 int8 -> 40; 9 3-bit -> 5.
    assert stored["wte.weight.codes"].shape == (18,)
    assert stored["h.0.attn.c_attn.weight.codes"].shape == (96,)
    assert stored["h.0.mlp.c_fc.weight.codes"].dtype == torch.int8
    assert stored["h.0.mlp.c_fc.weight.codes"].shape == (40,)
    assert stored["h.0.mlp.c_proj.weight.codes"].shape == (5,)
    assert index["tensors"][1]["scale_neg"] == "h.0.attn.c_attn.weight.scale_neg"
    assert not [p for p in written.parent.iterdir() if p.name.startswith(".")]  # staging removed


def test_dequantize_by_hand():
    entry = PackedTensor.from_codes("w", torch.tensor([[-1, 0, 1], [1, -1, 0]]), 2, [0.5, 2.0], scale_neg=[0.25, 4.0])
    assert entry.dequantize().tolist() == [[-0.25, 0.0, 0.5], [2.0, -4.0, 0.0]]
    plain = PackedTensor.from_codes("w", torch.tensor([[-3, 7]]), 4, 0.5)
    assert plain.dequantize().tolist() == [[-1.5, 3.5]]


def test_existing_directory_needs_overwrite_and_keeps_other_files(tmp_path):
    target = tmp_path / "model"
    target.mkdir()
    (target / "tokenizer.json").write_text("{}")
    write_packed(target, sample_entries()[:2], MODEL_CONFIG, {})
    with pytest.raises(FileExistsError):
        write_packed(target, sample_entries(), MODEL_CONFIG, {})
    write_packed(target, sample_entries(), MODEL_CONFIG, {"run": 2}, overwrite=True)
    entries, _, extra = read_packed(target)
    assert len(entries) == 7 and extra == {"run": 2}
    assert (target / "tokenizer.json").exists()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["model"]


def test_writer_rejects_bad_entries(tmp_path):
    entries = sample_entries()
    with pytest.raises(ValueError, match="appears twice"):
        write_packed(tmp_path / "a", entries + [DenseTensor("ln_f.weight", torch.ones(1))], {}, {})
    with pytest.raises(ValueError, match="used twice"):
        write_packed(tmp_path / "b", entries + [DenseTensor("wte.weight.scale", torch.ones(1))], {}, {})
    with pytest.raises(ValueError, match="overflows float16"):
        write_packed(tmp_path / "c", [PackedTensor.from_codes("w", torch.ones(2, 2, dtype=torch.int8), 2, 1e6)], {}, {})
    with pytest.raises(ValueError, match="NaN"):
        PackedTensor.from_codes("w", torch.ones(2, 2, dtype=torch.int8), 2, float("nan"))
    with pytest.raises(ValueError, match="one per row"):
        PackedTensor.from_codes("w", torch.ones(2, 2, dtype=torch.int8), 2, [1.0, 2.0, 3.0])
    assert not list(tmp_path.iterdir())  # nothing half-written


def test_checksum_catches_a_flipped_byte(written, tmp_path):
    target = copy_of(written, tmp_path)
    raw = bytearray((target / WEIGHTS_FILE).read_bytes())
    raw[-1] ^= 0x01  # the last byte of the last dense tensor: still a valid file
    (target / WEIGHTS_FILE).write_bytes(bytes(raw))
    with pytest.raises(PackedFormatError, match="SHA-256"):
        read_packed(target)
    read_packed(target, verify_checksum=False)


HOSTILE_WEIGHTS = {
    "ternary byte 243": (lambda t: t["wte.weight.codes"].__setitem__(0, 243), "wte.weight.*243"),
    "3-bit nibble 15": (lambda t: t["h.0.mlp.c_proj.weight.codes"].__setitem__(0, 0xFF), "c_proj.*must lie in"),
    "NaN scale": (lambda t: t["h.0.attn.c_attn.weight.scale"].fill_(float("nan")), "c_attn.*NaN"),
    "inf scale_neg": (lambda t: t["h.0.attn.c_attn.weight.scale_neg"].fill_(float("inf")), "c_attn.*inf"),
    "extra tensor": (lambda t: t.__setitem__("evil", torch.zeros(1)), "'evil' is not described"),
    "missing tensor": (lambda t: t.pop("ln_f.weight"), "'ln_f.weight' is missing"),
    "wrong dtype": (lambda t: t.__setitem__("ln_f.weight", t["ln_f.weight"].float()), "ln_f.weight.*dtype"),
    "short codes": (
        lambda t: t.__setitem__("wte.weight.codes", t["wte.weight.codes"][:-1].clone()),
        "wte.weight.codes.*shape",
    ),
    "row scale of wrong length": (
        lambda t: t.__setitem__("wte.weight.scale", torch.ones(3).half()),
        "wte.weight.scale.*shape",
    ),
    "packed codes as int8": (
        lambda t: t.__setitem__("wte.weight.codes", t["wte.weight.codes"].to(torch.int8)),
        "wte.weight.codes.*dtype",
    ),
}


@pytest.mark.parametrize("case", sorted(HOSTILE_WEIGHTS))
def test_reader_rejects_hostile_weights(written, tmp_path, case):
    change, message = HOSTILE_WEIGHTS[case]
    target = copy_of(written, tmp_path)
    rewrite_weights(target, change)
    with pytest.raises(PackedFormatError, match=message):
        read_packed(target, verify_checksum=False)


def _set(path, value):
    def change(index):
        node = index
        for key in path[:-1]:
            node = node[key]
        node[path[-1]] = value

    return change


HOSTILE_INDEX = {
    "unknown version": (_set(["format_version"], 2), "format_version=2"),
    "bool version": (_set(["format_version"], True), "format_version=True"),
    "bits 9": (_set(["tensors", 0, "bits"], 9), "'wte.weight'.*bits=9"),
    "bits as string": (_set(["tensors", 0, "bits"], "2"), "bits='2'"),
    "bits changed to 4": (_set(["tensors", 0, "bits"], 4), "wte.weight.codes.*shape"),
    "bits changed to 8": (_set(["tensors", 0, "bits"], 8), "'wte.weight'.*dtype"),
    "shape mismatch": (_set(["tensors", 0, "shape"], [11, 9]), "wte.weight.codes.*shape"),
    "zero dim": (_set(["tensors", 1, "shape"], [0, 24]), "positive"),
    "float dim": (_set(["tensors", 1, "shape"], [8.0, 24]), "list of ints"),
    "unknown kind": (_set(["tensors", 4, "kind"], "sparse"), "kind='sparse'"),
    "unknown dtype": (_set(["tensors", 4, "dtype"], "float8"), "dtype='float8'"),
    "dense dtype lie": (_set(["tensors", 4, "dtype"], "float32"), "ln_f.weight.*dtype"),
    "missing key": (lambda index: index["tensors"][2].pop("scale"), "c_fc.*fields"),
    "extra key": (_set(["tensors", 2, "note"], 1), "c_fc.*fields"),
    "duplicate name": (_set(["tensors", 5, "name"], "ln_f.weight"), "appears twice"),
    "shared storage": (_set(["tensors", 5, "tensor"], "ln_f.weight"), "used by two"),
    "config not a dict": (_set(["model_config"], [1, 2]), "model_config"),
    "tensors not a list": (_set(["tensors"], {"a": 1}), "tensors must be a list"),
    "bad checksum field": (_set(["safetensors_sha256"], "xyz"), "sha256"),
}


@pytest.mark.parametrize("case", sorted(HOSTILE_INDEX))
def test_reader_rejects_hostile_index(written, tmp_path, case):
    change, message = HOSTILE_INDEX[case]
    target = copy_of(written, tmp_path)
    rewrite_index(target, change)
    with pytest.raises(PackedFormatError, match=message):
        read_packed(target)


@pytest.mark.parametrize(
    "text",
    [b'{"format": "quantgpt-packed", "format": "x"}', b'{"a": NaN}', b"[" * 100_000, b"\xff\xfe", b"", b"1" * 5000],
)
def test_reader_rejects_malformed_json(written, tmp_path, text):
    target = copy_of(written, tmp_path)
    (target / INDEX_FILE).write_bytes(text)
    with pytest.raises(PackedFormatError, match=INDEX_FILE):
        read_packed(target)


def test_missing_files_raise_format_error(written, tmp_path):
    for name in (INDEX_FILE, WEIGHTS_FILE):
        target = copy_of(written, tmp_path)
        (target / name).unlink()
        with pytest.raises(PackedFormatError, match="missing"):
            read_packed(target)
        shutil.rmtree(target)


# ------------------------------------------------------------------------------------- fuzzing


def load_outcome(directory: Path, **options) -> str:
    """'ok' for a well-formed load, 'rejected' for PackedFormatError; anything else propagates."""
    try:
        entries, model_config, extra = read_packed(directory, **options)
    except PackedFormatError as error:
        assert "\n" not in str(error)
        return "rejected"
    assert isinstance(model_config, dict) and isinstance(extra, dict)
    assert_well_formed(entries)
    return "ok"


FUZZ = settings(max_examples=80, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])


@FUZZ
@given(data=st.data())
def test_fuzz_weight_bytes(written, data):
    raw = bytearray((written / WEIGHTS_FILE).read_bytes())
    if data.draw(st.booleans(), label="truncate"):
        raw = raw[: data.draw(st.integers(0, len(raw) - 1), label="length")]
    else:
        for _ in range(data.draw(st.integers(1, 8), label="flips")):
            raw[data.draw(st.integers(0, len(raw) - 1))] = data.draw(st.integers(0, 255))
    with tempfile.TemporaryDirectory() as scratch:
        target = Path(scratch) / "m"
        shutil.copytree(written, target)
        (target / WEIGHTS_FILE).write_bytes(bytes(raw))
        # Without the checksum, the structural checks alone must hold the line.
        load_outcome(target, verify_checksum=False)
        assert load_outcome(target) == "rejected" or bytes(raw) == (written / WEIGHTS_FILE).read_bytes()


JSON_VALUES = st.recursive(
    st.none() | st.booleans() | st.integers(-(2**70), 2**70) | st.floats(allow_nan=False) | st.text(max_size=8),
    lambda children: st.lists(children, max_size=3) | st.dictionaries(st.text(max_size=6), children, max_size=3),
    max_leaves=6,
)


def _containers(node, path=()):
    yield path, node
    if isinstance(node, dict):
        for key, child in node.items():
            yield from _containers(child, path + (key,))
    elif isinstance(node, list):
        for position, child in enumerate(node):
            yield from _containers(child, path + (position,))


@FUZZ
@given(data=st.data())
def test_fuzz_index_mutations(written, data):
    index = json.loads((written / INDEX_FILE).read_text())
    mutated = copy.deepcopy(index)
    for _ in range(data.draw(st.integers(1, 3), label="mutations")):
        containers = [(p, n) for p, n in _containers(mutated) if isinstance(n, (dict, list)) and n]
        path, node = data.draw(st.sampled_from(containers), label="container")
        key = data.draw(st.sampled_from(list(node.keys()) if isinstance(node, dict) else list(range(len(node)))))
        action = data.draw(st.sampled_from(["replace", "delete", "add", "int"]), label="action")
        if action == "replace":
            node[key] = data.draw(JSON_VALUES)
        elif action == "delete":
            del node[key]
        elif action == "add" and isinstance(node, dict):
            node[data.draw(st.text(max_size=6))] = data.draw(JSON_VALUES)
        else:
            node[key] = data.draw(st.integers(-3, 70000))
    with tempfile.TemporaryDirectory() as scratch:
        target = Path(scratch) / "m"
        shutil.copytree(written, target)
        (target / INDEX_FILE).write_text(json.dumps(mutated))
        load_outcome(target)


@FUZZ
@given(data=st.data())
def test_fuzz_index_text(written, data):
    raw = bytearray((written / INDEX_FILE).read_bytes())
    if data.draw(st.booleans(), label="truncate"):
        raw = raw[: data.draw(st.integers(0, len(raw) - 1))]
    else:
        for _ in range(data.draw(st.integers(1, 4), label="flips")):
            raw[data.draw(st.integers(0, len(raw) - 1))] = data.draw(st.integers(0, 255))
    with tempfile.TemporaryDirectory() as scratch:
        target = Path(scratch) / "m"
        shutil.copytree(written, target)
        (target / INDEX_FILE).write_bytes(bytes(raw))
        load_outcome(target)
