"""The kernel source with its prelude: precision and the Dirac-matrix tables from :mod:`..gamma`.

``wilson.cuh`` is the one source of the fused kernels, compiled by g++ for the CPU and by NVRTC
for the GPU.  Its prelude defines ``real`` and the tables ``PERM``/``IPOW`` of the DeGrand-Rossi
matrices (``gamma_mu[a][PERM[mu][a]] = i^IPOW[mu][a]``), generated here from
:data:`lattice_hpc.fermions.gamma.GAMMA`, so the matrices are written down in one place only.
"""

from __future__ import annotations

import hashlib
from functools import lru_cache
from pathlib import Path

import numpy as np

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
    body = ", ".join("{" + ", ".join(map(str, r)) + "}" for r in rows)
    return f"TABLE int {name}[4][4] = {{{body}}};"


@lru_cache(maxsize=None)
def kernel_source(precision: str) -> str:
    """Full kernel source for ``precision`` (``"double"`` or ``"single"``)."""
    perm, ipow = gamma_tables()
    prelude = "\n".join([f"typedef {REAL[precision]} real;", _table("PERM", perm), _table("IPOW", ipow)])
    text = KERNEL_FILE.read_text()
    marker = "// @PRELUDE@"
    if marker not in text:
        raise RuntimeError(f"{KERNEL_FILE}: prelude marker missing")
    return text.replace(marker, prelude + "\n//", 1)


def source_hash(precision: str, extra: str = "") -> str:
    return hashlib.sha256((kernel_source(precision) + extra).encode()).hexdigest()[:16]
