"""The kernel source with its prelude: precision and the Dirac-matrix tables from :mod:`..gamma`.

``wilson.cuh`` is the one source of the fused kernels, compiled by g++ for the CPU and by NVRTC
for the GPU, appended to :mod:`lattice_hpc.compiled`'s common part.  Its prelude defines ``real`` and the tables ``perm_of``/``ipow_of`` of the DeGrand-Rossi
matrices (``gamma_mu[a][perm_of(mu, a)] = i^ipow_of(mu, a)``), generated here from
:data:`lattice_hpc.fermions.gamma.GAMMA`, so the matrices are written down in one place only.
"""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path

import numpy as np

from ...compiled import compose
from ..gamma import GAMMA

KERNEL_FILE = Path(__file__).with_name("wilson.cuh")
REAL = {"double": "double", "single": "float"}


def gamma_tables() -> tuple[list[list[int]], list[list[int]]]:
    """``PERM[mu][a]`` and ``IPOW[mu][a]`` with ``GAMMA[mu][a, PERM] = i**IPOW`` (one entry per row)."""
    perm, ipow = [], []
    for g in GAMMA:
        p, k = [], []
        for a in range(4):
            (cols,) = np.nonzero(np.abs(g[a]) > 1e-12)
            if len(cols) != 1:
                raise ValueError("kernel tables need one non-zero per row of every gamma_mu")
            z = g[a, cols[0]]
            powers = [q for q in range(4) if abs(1j ** q - z) < 1e-12]
            if not powers:
                raise ValueError("kernel tables need gamma entries that are powers of i")
            p.append(int(cols[0]))
            k.append(powers[0])
        perm.append(p)
        ipow.append(k)
    return perm, ipow


def _table(name, rows) -> str:
    """``rows[mu][a]`` (each 0..3) packed 2 bits an entry into one literal, and its accessor.

    A packed literal rather than an array: once the loops over ``mu`` and ``a`` are unrolled every
    lookup is a compile-time constant on both compilers, so the spinor arrays that it indexes stay
    in registers (a ``__constant__`` array would force them into local memory on the GPU).
    """
    bits = sum(int(v) << (2 * (4 * mu + a)) for mu, r in enumerate(rows) for a, v in enumerate(r))
    return (f"#define {name}_BITS 0x{bits:08x}u\n"
            f"DEV int {name.lower()}_of(int mu, int a) {{ return ({name}_BITS >> (2 * (4 * mu + a))) & 3; }}")


RECONS = (18, 12)


@lru_cache(maxsize=None)
def kernel_source(precision: str, recon: int = 18) -> str:
    """Full kernel source for ``precision`` (``"double"`` or ``"single"``) and link storage
    ``recon`` (18 reals, or 12: two rows, the third rebuilt in the kernel)."""
    if recon not in RECONS:
        raise ValueError(f"recon must be one of {RECONS}, got {recon}")
    perm, ipow = gamma_tables()
    prelude = "\n".join([f"typedef {REAL[precision]} real;", f"#define RECON {recon}",
                          _table("PERM", perm), _table("IPOW", ipow)])
    return compose(KERNEL_FILE, prelude)
