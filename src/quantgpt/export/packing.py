"""Bit packing of integer weight codes, the storage layer of the packed model format.

A quantized weight is stored as integer codes ``c`` (docs/method.md#weight-quantizer: ``w_q = c * alpha / k`` with
``c`` in ``[-k, k]``, ``k = 2^(b-1) - 1``) plus floating-point scales kept elsewhere. This module
only turns code tensors into bytes and back; it knows nothing about scales, names or files.

Layouts (all little-endian within a byte, codes taken in flattened row-major order):

* 2 bits (ternary, docs/method.md#size-accounting): five trits per byte in base 3. Code ``c`` becomes digit
  ``c + 1`` in {0, 1, 2}; the byte of the group ``c_0..c_4`` is ``sum_i (c_i + 1) * 3^i``, at most
  242, so 1.6 bits a weight. A short last group is padded with digit 0.
* 3 and 4 bits: two codes per byte in nibbles, offset binary: nibble ``c + 8`` in 0..15, the first
  code in the low nibble. Offset 8 is the zero point of PyTorch's uint4 CPU kernels, so a nibble
  can be handed to them unchanged. A lone last code is padded with nibble 0.
* 5 to 8 bits: one int8 per code, no packing (a byte is the natural unit; 5-7 bit packing would
  save little and no CPU kernel reads it).

Every function is vectorized over the whole tensor: no Python loop touches single elements.
"""

from __future__ import annotations

import math

import torch

TRITS_PER_BYTE = 5
TERNARY_MAX_BYTE = 3**TRITS_PER_BYTE - 1  # 242; bytes 243..255 encode nothing
NIBBLE_OFFSET = 8
_TRIT_POWERS = torch.tensor([3**i for i in range(TRITS_PER_BYTE)], dtype=torch.int16)
# Row b holds the five codes byte b encodes: decoding is one gather, ~7x faster than div/mod.
_TRIT_TABLE = (
    torch.div(torch.arange(TERNARY_MAX_BYTE + 1, dtype=torch.int16).unsqueeze(1), _TRIT_POWERS, rounding_mode="floor") % 3 - 1
).to(torch.int8)


def _check_bits(bits: int) -> None:
    if type(bits) is not int or not 2 <= bits <= 8:
        raise ValueError(f"bits={bits!r} is not supported; allowed: an int in 2..8")


def code_range(bits: int) -> tuple[int, int]:
    """Smallest and largest code allowed at ``bits`` bits.

    2 bits is ternary, {-1, 0, 1} (docs/method.md#weight-quantizer). From 3 bits on, the full signed range
    ``[-2^(b-1), 2^(b-1) - 1]`` is allowed: the symmetric grid ``[-k, k]`` of Eq. 1 uses all but
    the lowest value, and baselines such as LSQ may use that one too.
    """
    _check_bits(bits)
    if bits == 2:
        return -1, 1
    return -(2 ** (bits - 1)), 2 ** (bits - 1) - 1


def storage_dtype(bits: int) -> torch.dtype:
    """The dtype of the packed tensor for ``bits``: uint8 when packed, int8 for 5-8 bits."""
    _check_bits(bits)
    return torch.uint8 if bits <= 4 else torch.int8


def packed_numel(numel: int, bits: int) -> int:
    """Number of elements (= bytes) of the packed tensor holding ``numel`` codes of ``bits`` bits."""
    _check_bits(bits)
    if numel < 0:
        raise ValueError(f"numel={numel} must be >= 0")
    if bits == 2:
        return math.ceil(numel / TRITS_PER_BYTE)
    if bits <= 4:
        return math.ceil(numel / 2)
    return numel


def _check_codes(codes: torch.Tensor, low: int, high: int, what: str) -> None:
    if codes.dtype.is_floating_point or codes.dtype.is_complex or codes.dtype == torch.bool:
        raise ValueError(f"{what} codes must be an integer tensor, got dtype {codes.dtype}")
    if codes.numel() and (int(codes.min()) < low or int(codes.max()) > high):
        raise ValueError(
            f"{what} codes must lie in [{low}, {high}], got values in "
            f"[{int(codes.min())}, {int(codes.max())}]"
        )


def _check_packed(packed: torch.Tensor, numel: int, expected_bytes: int, dtype: torch.dtype) -> None:
    if packed.dtype != dtype:
        raise ValueError(f"packed tensor must have dtype {dtype}, got {packed.dtype}")
    if packed.numel() != expected_bytes:
        raise ValueError(
            f"packed tensor holds {packed.numel()} bytes, {numel} codes need exactly {expected_bytes}"
        )


_DECODE_CHUNK = 2**20  # bytes decoded at a time: temporaries stay a few MiB for any matrix


def _decode_with_table(table: torch.Tensor, values: torch.Tensor, numel: int) -> torch.Tensor:
    """Row ``values[i]`` of ``table`` for each byte, flattened, the first ``numel`` codes (int8).

    Decoded in chunks into one preallocated output, so loading a large embedding does not leave
    the allocator holding index temporaries several times the size of the codes.
    """
    rows = torch.empty(values.numel(), table.shape[1], dtype=torch.int8)
    for start in range(0, values.numel(), _DECODE_CHUNK):
        chunk = values[start : start + _DECODE_CHUNK].to(torch.int32)
        torch.index_select(table, 0, chunk, out=rows[start : start + _DECODE_CHUNK])
    return rows.reshape(-1)[:numel]


def pack_ternary(codes: torch.Tensor) -> torch.Tensor:
    """Pack ternary codes {-1, 0, 1} five to a byte; returns a 1-D uint8 tensor of ceil(n/5) bytes."""
    _check_codes(codes, -1, 1, "ternary")
    digits = codes.reshape(-1).to(torch.int16) + 1
    padding = (-digits.numel()) % TRITS_PER_BYTE
    digits = torch.nn.functional.pad(digits, (0, padding), value=0)
    groups = digits.reshape(-1, TRITS_PER_BYTE)
    return (groups * _TRIT_POWERS).sum(dim=1).to(torch.uint8)


def unpack_ternary(packed: torch.Tensor, numel: int) -> torch.Tensor:
    """Inverse of :func:`pack_ternary`: the first ``numel`` codes as a 1-D int8 tensor.

    Raises ``ValueError`` when the byte count is not ceil(numel/5) or a byte is above 242 (no
    five trits encode it), so a damaged buffer never decodes to out-of-range codes.
    """
    _check_packed(packed, numel, packed_numel(numel, 2), torch.uint8)
    values = packed.reshape(-1)
    if values.numel() and int(values.max()) > TERNARY_MAX_BYTE:
        raise ValueError(
            f"ternary byte {int(values.max())} is invalid: five trits encode at most {TERNARY_MAX_BYTE}"
        )
    return _decode_with_table(_TRIT_TABLE, values, numel)


# Row b holds the two codes byte b encodes (low nibble first): one gather, few temporaries.
_NIBBLE_TABLE = (
    torch.stack((torch.arange(256) & 0x0F, torch.arange(256) >> 4), dim=1) - NIBBLE_OFFSET
).to(torch.int8)


def pack_int4(codes: torch.Tensor) -> torch.Tensor:
    """Pack codes in [-8, 7] two to a byte (nibble ``c + 8``, first code low); ceil(n/2) uint8 bytes."""
    _check_codes(codes, -8, 7, "4-bit")
    nibbles = (codes.reshape(-1).to(torch.int16) + NIBBLE_OFFSET).to(torch.uint8)
    nibbles = torch.nn.functional.pad(nibbles, (0, nibbles.numel() % 2), value=0)
    pairs = nibbles.reshape(-1, 2)
    return pairs[:, 0] | (pairs[:, 1] << 4)


def unpack_int4(packed: torch.Tensor, numel: int) -> torch.Tensor:
    """Inverse of :func:`pack_int4`: the first ``numel`` codes in [-8, 7] as a 1-D int8 tensor."""
    _check_packed(packed, numel, packed_numel(numel, 4), torch.uint8)
    return _decode_with_table(_NIBBLE_TABLE, packed.reshape(-1), numel)


def pack_codes(codes: torch.Tensor, bits: int) -> torch.Tensor:
    """Pack integer ``codes`` of any shape at ``bits`` bits into a 1-D tensor.

    2 bits: ternary, uint8, ceil(n/5) bytes; 3-4 bits: nibbles, uint8, ceil(n/2) bytes; 5-8 bits:
    int8, n bytes. Codes outside :func:`code_range` raise ``ValueError``.
    """
    low, high = code_range(bits)
    _check_codes(codes, low, high, f"{bits}-bit")
    if bits == 2:
        return pack_ternary(codes)
    if bits <= 4:
        return pack_int4(codes)
    return codes.reshape(-1).to(torch.int8).clone()


def unpack_codes(packed: torch.Tensor, bits: int, shape: tuple[int, ...] | torch.Size) -> torch.Tensor:
    """Inverse of :func:`pack_codes`: an int8 tensor of ``shape``.

    Raises ``ValueError`` when the packed tensor has the wrong dtype or length for ``shape`` and
    ``bits``, or decodes to a code outside :func:`code_range` (a damaged or hostile buffer).
    """
    low, high = code_range(bits)
    shape = tuple(shape)
    numel = math.prod(shape)
    if bits == 2:
        codes = unpack_ternary(packed, numel)
    elif bits <= 4:
        codes = unpack_int4(packed, numel)
    else:
        _check_packed(packed, numel, numel, torch.int8)
        codes = packed.reshape(-1).clone()
    if bits in (3, 5, 6, 7):
        # Nibbles and int8 can hold values the narrower code range cannot.
        _check_codes(codes, low, high, f"unpacked {bits}-bit")
    return codes.reshape(shape)
