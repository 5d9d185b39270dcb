"""Checksums of gauge-configuration files, computed in parallel (each rank its block).

All three are independent of the decomposition: per-site or per-word terms combined with an
associative, commutative operation (XOR or a wrap-around sum), reduced over ranks.

- **SciDAC** (QIO/LIME, used by ILDG files and by our checkpoints): per site,
  ``c = crc32(bytes of the site as stored)``; ``suma ^= rotl32(c, r % 29)``,
  ``sumb ^= rotl32(c, r % 31)`` with ``r`` the global lexicographic site index (x fastest).
- **NERSC**: the 32-bit wrap-around sum of the data section read as unsigned 32-bit words in host
  byte order (for ``4D_SU3_GAUGE`` only the two stored rows).
- **MILC** (``io_lat4.c``): every 32-bit word ``w`` of the site data, with ``k`` its global word
  index (``k = r * words_per_site + j``), contributes ``sum29 ^= rotl32(w, k % 29)`` and
  ``sum31 ^= rotl32(w, k % 31)``; words are taken in host byte order.

The functions here are local (no communication); :func:`reduce_xor` and :func:`reduce_sum32`
combine the partial results over a communicator (collective).
"""

from __future__ import annotations

import zlib

import numpy as np


def rotl32(x: np.ndarray, n: np.ndarray) -> np.ndarray:
    """Rotate 32-bit words left by ``n`` (0 <= n < 32), element-wise."""
    x = x.astype(np.uint64)
    n = np.asarray(n, dtype=np.uint64)
    return (((x << n) | (x >> ((32 - n) % 32))) & 0xFFFFFFFF).astype(np.uint32)


def crc32_per_site(raw: np.ndarray) -> np.ndarray:
    """``zlib.crc32`` of each site's bytes; ``raw`` is ``uint8`` of shape ``(..., site_bytes)``."""
    raw = np.ascontiguousarray(raw)
    nb = raw.shape[-1]
    flat = raw.reshape(-1, nb)
    mv = memoryview(flat).cast("B")
    out = np.fromiter((zlib.crc32(mv[i * nb:(i + 1) * nb]) for i in range(flat.shape[0])),
                      dtype=np.uint32, count=flat.shape[0])
    return out.reshape(raw.shape[:-1])


def scidac_partial(raw: np.ndarray, index: np.ndarray) -> np.ndarray:
    """Local SciDAC sums ``[suma, sumb]`` (uint32) of the sites ``raw`` at global indices ``index``."""
    c = crc32_per_site(raw).ravel()
    r = np.asarray(index, dtype=np.int64).ravel()
    a = np.bitwise_xor.reduce(rotl32(c, r % 29)) if c.size else np.uint32(0)
    b = np.bitwise_xor.reduce(rotl32(c, r % 31)) if c.size else np.uint32(0)
    return np.array([a, b], dtype=np.uint32)


def nersc_partial(words: np.ndarray) -> int:
    """Local NERSC sum: ``sum(words) mod 2**32`` for host-order ``uint32`` words."""
    return int(np.sum(words, dtype=np.uint64) & 0xFFFFFFFF)


def milc_partial(words: np.ndarray, index: np.ndarray) -> np.ndarray:
    """Local MILC sums ``[sum29, sum31]``; ``words`` is ``uint32`` ``(..., words_per_site)`` (host order)."""
    nw = words.shape[-1]
    w = words.reshape(-1, nw)
    k = np.asarray(index, dtype=np.int64).reshape(-1, 1) * nw + np.arange(nw, dtype=np.int64)
    if w.size == 0:
        return np.zeros(2, dtype=np.uint32)
    return np.array([np.bitwise_xor.reduce(rotl32(w, k % 29), axis=None),
                     np.bitwise_xor.reduce(rotl32(w, k % 31), axis=None)], dtype=np.uint32)


def reduce_xor(comm, partial: np.ndarray) -> tuple[int, ...]:
    """Collective: XOR of the partial sums over ranks."""
    return tuple(int(v) for v in comm.allreduce(np.asarray(partial, dtype=np.uint32), op="bxor"))


def reduce_sum32(comm, partial: int) -> int:
    """Collective: 32-bit wrap-around sum of the partial sums over ranks."""
    return int(comm.allreduce(np.array([partial], dtype=np.uint64))[0] & 0xFFFFFFFF)


# -- the checkpoint checksum -------------------------------------------------------------------
_PHI = np.uint64(0x9E3779B97F4A7C15)
_C2 = np.uint64(0xC2B2AE3D27D4EB4F)


def _splitmix64(x: np.ndarray) -> np.ndarray:
    z = x.astype(np.uint64) + _PHI
    z = (z ^ (z >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)
    z = (z ^ (z >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)
    return z ^ (z >> np.uint64(31))


def record_keys(index: np.ndarray) -> np.ndarray:
    """The odd keys ``(K_i, K'_i)`` of records with global numbers ``index`` (stacked on axis 0)."""
    i = np.asarray(index, dtype=np.uint64)
    return np.stack([_splitmix64(i) | np.uint64(1), _splitmix64(i ^ _C2) | np.uint64(1)])


def lattice_checksum_partial(words: np.ndarray, keys: np.ndarray) -> np.ndarray:
    """Local part of the checkpoint checksum (two 64-bit sums) of records given as ``uint64`` words.

    ``words`` has shape ``(..., n)``: the ``n`` little-endian 64-bit words of each record as stored
    (a record is one link ``U_mu(x)``; a complex64 number is one word, a complex128 two); it may
    be a strided view.  ``keys`` = :func:`record_keys` of the records' global numbers (shape
    ``(2, *words.shape[:-1])``).  With ``M_j = (2j+1) phi`` and odd record keys ``K_i = splitmix64(i) | 1``,
    ``K'_i = splitmix64(i ^ c) | 1``::

        h_i = sum_j M_j w_ij ,   S_1 = sum_i K_i h_i ,   S_2 = sum_i K'_i h_i      (mod 2^64)

    Any change of a single word changes ``h_i`` (an odd multiplier is invertible modulo 2^64) and
    with it both sums; moving records around changes them with probability ~ 1 - 2^-64.  The sums
    are linear, so the partial sums of the ranks add up (mod 2^64) to the same result for every
    decomposition; ``h`` is one matrix-vector product over the data, at memory speed, unlike a
    per-site CRC (SciDAC), which costs more than the I/O itself in Python.
    """
    n = words.shape[-1]
    j = np.arange(n, dtype=np.uint64) * np.uint64(2) + np.uint64(1)
    with np.errstate(over="ignore"):
        h = words @ (j * _PHI)
        return np.array([np.sum(h * keys[0], dtype=np.uint64), np.sum(h * keys[1], dtype=np.uint64)],
                        dtype=np.uint64)


def reduce_sum64(comm, partial: np.ndarray) -> tuple[int, ...]:
    """Collective: element-wise sum modulo ``2^64`` of ``uint64`` partial sums over ranks."""
    return tuple(int(v) for v in comm.allreduce(np.asarray(partial, dtype=np.uint64), op="sum"))
