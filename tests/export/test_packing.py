"""Bit packing of weight codes: exact byte layouts, sizes and round trips (quantgpt.export.packing)."""

import math

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from quantgpt.export.packing import (
    code_range,
    pack_codes,
    pack_int4,
    pack_ternary,
    packed_numel,
    storage_dtype,
    unpack_codes,
    unpack_int4,
    unpack_ternary,
)

AWKWARD_SIZES = [0, 1, 4, 5, 6, 11, 1000]


def random_codes(bits: int, numel: int, seed: int = 0) -> torch.Tensor:
    low, high = code_range(bits)
    generator = torch.Generator().manual_seed(seed * 97 + bits)
    return torch.randint(low, high + 1, (numel,), generator=generator, dtype=torch.int64).to(torch.int8)


def test_code_range_by_bits():
    assert code_range(2) == (-1, 1)
    assert code_range(3) == (-4, 3)
    assert code_range(4) == (-8, 7)
    assert code_range(8) == (-128, 127)
    for bad in (1, 9, 2.0, True):
        with pytest.raises(ValueError, match="bits"):
            code_range(bad)


@pytest.mark.parametrize("bits", range(2, 9))
@pytest.mark.parametrize("numel", AWKWARD_SIZES)
def test_round_trip_every_bit_width_and_awkward_size(bits, numel):
    codes = random_codes(bits, numel, seed=numel)
    packed = pack_codes(codes, bits)
    assert packed.dtype == storage_dtype(bits)
    assert packed.shape == (packed_numel(numel, bits),)
    assert torch.equal(unpack_codes(packed, bits, (numel,)), codes)


@pytest.mark.parametrize("numel", AWKWARD_SIZES)
def test_byte_counts(numel):
    assert pack_codes(random_codes(2, numel), 2).numel() == math.ceil(numel / 5)
    assert pack_codes(random_codes(3, numel), 3).numel() == math.ceil(numel / 2)
    assert pack_codes(random_codes(4, numel), 4).numel() == math.ceil(numel / 2)
    assert pack_codes(random_codes(8, numel), 8).numel() == numel


def test_ternary_bytes_computed_by_hand():
    # digits c+1 = [2, 1, 0, 2, 1]; byte = 2 + 1*3 + 0*9 + 2*27 + 1*81 = 140
    assert pack_ternary(torch.tensor([1, 0, -1, 1, 0])).tolist() == [140]
    assert pack_ternary(torch.tensor([-1] * 5)).tolist() == [0]
    assert pack_ternary(torch.tensor([1] * 5)).tolist() == [242]
    # Second group is a lone 0 (digit 1), padded with digit 0: byte 1.
    assert pack_ternary(torch.tensor([0, 0, 0, 0, 0, 0])).tolist() == [121, 1]
    assert unpack_ternary(torch.tensor([140], dtype=torch.uint8), 5).tolist() == [1, 0, -1, 1, 0]
    assert unpack_ternary(torch.tensor([140], dtype=torch.uint8), 2).tolist() == [1, 0]


def test_nibble_bytes_computed_by_hand():
    # nibbles c+8: -7 -> 1 (low), 7 -> 15 (high) gives 0xF1; lone 3 -> 11 with a zero high nibble.
    assert pack_int4(torch.tensor([-7, 7, 3])).tolist() == [0xF1, 11]
    assert pack_int4(torch.tensor([-8, 0])).tolist() == [0x80]
    assert unpack_int4(torch.tensor([0xF1, 11], dtype=torch.uint8), 3).tolist() == [-7, 7, 3]


def test_unpack_restores_shape():
    codes = random_codes(4, 24).reshape(2, 3, 4)
    assert torch.equal(unpack_codes(pack_codes(codes, 4), 4, (2, 3, 4)), codes)


def test_pack_accepts_wider_integer_dtypes():
    codes = torch.tensor([[-1, 0], [1, 1]], dtype=torch.int64)
    assert torch.equal(unpack_codes(pack_codes(codes, 2), 2, (2, 2)), codes.to(torch.int8))


@pytest.mark.parametrize(
    ("bits", "codes"),
    [(2, [0, 2]), (2, [-2]), (3, [4]), (3, [-5]), (4, [8]), (5, [16]), (8, [-129]), (8, [128])],
)
def test_pack_rejects_codes_out_of_range(bits, codes):
    with pytest.raises(ValueError, match="must lie in"):
        pack_codes(torch.tensor(codes, dtype=torch.int32), bits)


def test_pack_rejects_float_codes():
    with pytest.raises(ValueError, match="integer"):
        pack_codes(torch.tensor([0.0, 1.0]), 4)


def test_unpack_rejects_invalid_ternary_byte():
    with pytest.raises(ValueError, match="243"):
        unpack_ternary(torch.tensor([0, 243], dtype=torch.uint8), 10)


@pytest.mark.parametrize(
    ("bits", "packed"),
    [(3, torch.tensor([0xF8], dtype=torch.uint8)), (5, torch.tensor([16, 0], dtype=torch.int8))],
)
def test_unpack_rejects_codes_outside_narrow_range(bits, packed):
    # 3 bits: nibble 15 decodes to 7 > 3; 5 bits: 16 > 15.
    with pytest.raises(ValueError, match="must lie in"):
        unpack_codes(packed, bits, (2,))


@pytest.mark.parametrize("bits", [2, 4, 8])
def test_unpack_rejects_wrong_length_or_dtype(bits):
    packed = pack_codes(random_codes(bits, 11), bits)
    with pytest.raises(ValueError, match="bytes"):
        unpack_codes(packed[:-1], bits, (11,))
    with pytest.raises(ValueError, match="bytes"):
        unpack_codes(torch.cat([packed, packed[:1]]), bits, (11,))
    wrong = torch.int8 if packed.dtype == torch.uint8 else torch.uint8
    with pytest.raises(ValueError, match="dtype"):
        unpack_codes(packed.to(wrong), bits, (11,))


@st.composite
def codes_and_bits(draw):
    bits = draw(st.integers(2, 8))
    low, high = code_range(bits)
    values = draw(st.lists(st.integers(low, high), max_size=64))
    return bits, values


@settings(max_examples=100, deadline=None)
@given(codes_and_bits())
def test_round_trip_property(case):
    bits, values = case
    codes = torch.tensor(values, dtype=torch.int8)
    packed = pack_codes(codes, bits)
    assert packed.numel() == packed_numel(len(values), bits)
    assert unpack_codes(packed, bits, (len(values),)).tolist() == values


@settings(max_examples=100, deadline=None)
@given(st.integers(2, 8), st.binary(max_size=40))
def test_unpacking_any_bytes_gives_codes_in_range_or_value_error(bits, raw):
    dtype = storage_dtype(bits)
    packed = torch.frombuffer(bytearray(raw), dtype=torch.uint8).to(dtype) if raw else torch.zeros(0, dtype=dtype)
    numel = {2: 5, 3: 2, 4: 2}.get(bits, 1) * len(raw)
    low, high = code_range(bits)
    try:
        codes = unpack_codes(packed, bits, (numel,))
    except ValueError:
        return
    assert codes.numel() == numel
    assert all(low <= c <= high for c in codes.tolist())
