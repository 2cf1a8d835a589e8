"""Case features as byte strings that sort as the numbers do, for the board's feature ranges.

Each value becomes 8 bytes whose bytewise order is the numeric order (the IEEE 754 bits, big
endian, with the sign bit set on positive numbers and every bit inverted on negative ones), so
"60 ≤ age ≤ 80" is `SUBSTR(feature_keys, 8·p + 1, 8) BETWEEN key(60) AND key(80)`: a comparison
of bytes that SQLite and PostgreSQL both do natively, with no function to decode a float.
Missing values (NaN) take the largest key, above +inf, and a range always has an upper key of
at most +inf: missing values never match. No Django here.
"""

from __future__ import annotations

import numpy as np

WIDTH = 8
_SIGN = np.uint64(1 << 63)
MISSING = np.uint64(0xFFFF_FFFF_FFFF_FFFF)


def _keys(values: np.ndarray) -> np.ndarray:
    """Big-endian uint64 keys, built in place in one copy of the values (a million cases at a
    time): negative numbers get every bit flipped, the others just the sign bit."""
    v = np.array(values, dtype=np.float64)
    missing = np.isnan(v)
    v += 0.0  # -0.0 sorts with 0.0
    flip = v.view(np.int64) >> 63  # all ones where negative (arithmetic shift), else zero
    flip |= np.int64(-(1 << 63))
    bits = v.view(np.uint64)
    bits ^= flip.view(np.uint64)
    bits[missing] = MISSING
    if np.little_endian:
        bits.byteswap(inplace=True)  # astype(">u8") would take 40 times as long
    return bits.view(">u8")


def encode_rows(matrix: np.ndarray) -> np.ndarray:
    """(n, features) floats to (n, 8 · features) bytes: one key per value, in column order."""
    matrix = np.atleast_2d(np.asarray(matrix, dtype=np.float64))
    return _keys(matrix).view(np.uint8).reshape(len(matrix), WIDTH * matrix.shape[1])


def encode_value(value: float) -> bytes:
    """The key of one number (a range's bound)."""
    return _keys(np.array([value])).tobytes()


LOWEST = encode_value(-np.inf)
HIGHEST = encode_value(np.inf)


def decode(keys: bytes, position: int) -> float | None:
    """The value at a feature position (None when missing or not stored)."""
    raw = bytes(keys)[WIDTH * position : WIDTH * (position + 1)]
    if len(raw) != WIDTH:
        return None
    key = np.frombuffer(raw, dtype=">u8").astype(np.uint64)
    if key[0] == MISSING:
        return None
    bits = np.where(key & _SIGN, key & ~_SIGN, ~key)
    return float(bits.view(np.float64)[0])
