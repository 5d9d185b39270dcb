"""Counter-based random numbers keyed by (seed, global site, purpose, draw).

Philox4x32-10 (Salmon, Moraes, Dror, Shaw, "Parallel random numbers: as easy as 1, 2, 3", SC11)
maps a 128-bit counter and a 64-bit key to 128 random bits.  Here

    key     = 64-bit hash of (seed, purpose)          (one independent stream per purpose)
    counter = (site mod 2^32, site div 2^32, draw mod 2^32, draw div 2^32)

with ``site`` the global lexicographic site index (x fastest).  A site's numbers therefore do not
depend on which rank holds it, nor on which other sites are drawn with it: a hot start, a set of
momenta or a heatbath sweep is the same field for every process grid.  Each counter gives two
53-bit uniform doubles in the open interval (0, 1).

``purpose`` is a tuple of strings and integers that names what the numbers are for, for example
``("heatbath", sweep, mu, parity, subgroup)``; it is hashed with BLAKE2b, so distinct purposes are
distinct keys.  Vectorised over sites with the array module of the site array (NumPy or CuPy).
"""

from __future__ import annotations

import hashlib

import numpy as np

from .backend import array_module

PHILOX_M0 = 0xD2511F53
PHILOX_M1 = 0xCD9E8D57
PHILOX_W0 = 0x9E3779B9
PHILOX_W1 = 0xBB67AE85
_MASK32 = 0xFFFFFFFF


def philox4x32(counter, key, rounds: int = 10, xp=np):
    """Philox4x32 with ``rounds`` rounds.

    Args:
        counter: four arrays (or ints) of 32-bit words, broadcastable against each other.
        key: two 32-bit words (ints or arrays).
    Returns:
        four ``uint32`` arrays.
    """
    c0, c1, c2, c3 = (xp.asarray(c, dtype=xp.uint64) & _MASK32 for c in counter)
    k0, k1 = (xp.asarray(k, dtype=xp.uint64) & _MASK32 for k in key)
    m0 = xp.uint64(PHILOX_M0)
    m1 = xp.uint64(PHILOX_M1)
    for r in range(rounds):
        if r:
            k0 = (k0 + xp.uint64(PHILOX_W0)) & _MASK32
            k1 = (k1 + xp.uint64(PHILOX_W1)) & _MASK32
        p0 = m0 * c0
        p1 = m1 * c2
        hi0, lo0 = p0 >> xp.uint64(32), p0 & _MASK32
        hi1, lo1 = p1 >> xp.uint64(32), p1 & _MASK32
        c0, c1, c2, c3 = hi1 ^ c1 ^ k0, lo1, hi0 ^ c3 ^ k1, lo0
    return tuple(c.astype(xp.uint32) for c in (c0, c1, c2, c3))


def purpose_key(seed: int, purpose) -> tuple[int, int]:
    """The 64-bit Philox key (two 32-bit words) for a seed and a purpose tuple."""
    if not isinstance(purpose, tuple):
        purpose = (purpose,)
    text = repr((int(seed),) + tuple(p if isinstance(p, str) else int(p) for p in purpose))
    h = int.from_bytes(hashlib.blake2b(text.encode(), digest_size=8).digest(), "little")
    return h & _MASK32, h >> 32


class CounterRNG:
    """Random numbers as a pure function of (seed, global site, purpose, draw).

    Args:
        seed: the job's seed (any non-negative integer).
    """

    def __init__(self, seed: int):
        self.seed = int(seed)

    def __repr__(self):
        return f"CounterRNG(seed={self.seed})"

    def bits(self, purpose, sites, draw: int):
        """Four ``uint32`` arrays (shape of ``sites``) for counter ``(site, draw)``."""
        xp = array_module(sites)
        s = sites.astype(xp.uint64)
        key = purpose_key(self.seed, purpose)
        d = int(draw)
        return philox4x32((s & _MASK32, s >> xp.uint64(32), d & _MASK32, d >> 32), key, xp=xp)

    def uniform(self, purpose, sites, n: int, draw: int = 0, dtype=np.float64):
        """``n`` uniform numbers in (0, 1) per site: shape ``(*sites.shape, n)``.

        Number ``k`` of a site comes from counter draw ``draw + k // 2`` (two doubles per counter).
        """
        xp = array_module(sites)
        out = []
        for k in range((n + 1) // 2):
            a, b, c, d = self.bits(purpose, sites, draw + k)
            out.append(_to_unit(a, b, xp))
            out.append(_to_unit(c, d, xp))
        return xp.stack(out[:n], axis=-1).astype(dtype, copy=False)

    def normal(self, purpose, sites, n: int, draw: int = 0, dtype=np.float64):
        """``n`` standard normal numbers per site (Box-Muller): shape ``(*sites.shape, n)``."""
        xp = array_module(sites)
        m = (n + 1) // 2
        u = self.uniform(purpose, sites, 2 * m, draw)
        r = xp.sqrt(-2.0 * xp.log(u[..., 0::2]))
        phi = 2.0 * np.pi * u[..., 1::2]
        z = xp.stack([r * xp.cos(phi), r * xp.sin(phi)], axis=-1).reshape(sites.shape + (2 * m,))
        return z[..., :n].astype(dtype, copy=False)


def _to_unit(hi, lo, xp):
    """Two uint32 words -> a double in (0, 1) with 53 random bits: (k + 1/2) / 2^53."""
    k = (hi.astype(xp.uint64) >> xp.uint64(5)) * xp.uint64(1 << 26) + (lo.astype(xp.uint64) >> xp.uint64(6))
    return (k.astype(xp.float64) + 0.5) * (1.0 / 9007199254740992.0)
