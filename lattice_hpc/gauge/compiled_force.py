"""The Wilson gauge force of SU(3) in 4D from the compiled kernel ``force.cuh``.

:func:`lattice_hpc.gauge.gauge_force` uses it on NumPy fields of SU(3) in 4D when a C++ compiler
works (``$LATTICE_HPC_KERNEL=reference`` keeps the array-module reference); the tests compare the
two.  The kernel reads the halo-padded links directly (fresh to codimension 2).
"""

from __future__ import annotations

import ctypes
from pathlib import Path

import numpy as np

from ..compiled import compose, shared_library

SOURCE = Path(__file__).with_name("force.cuh")
REAL = {"double": ("double", ctypes.c_double), "single": ("float", ctypes.c_float)}


def library(precision: str) -> ctypes.CDLL:
    ctype, creal = REAL[precision]
    lib = shared_library(compose(SOURCE, f"typedef {ctype} real;"), f"gauge_force_{precision}")
    lib.gauge_force.argtypes = [ctypes.c_void_p] * 3 + [creal, ctypes.c_long]
    lib.gauge_force.restype = None
    return lib


def usable(U) -> bool:
    """Whether the compiled kernel applies to ``U`` (NumPy, SU(3), 4D)."""
    return U.backend.name == "numpy" and U.N == 3 and U.ndim == 4


def compiled_gauge_force(U, beta: float):
    """``F_mu(x) = -(beta/N) P_TA(U_mu(x) A_mu(x))``, shape ``(4, *local, 3, 3)`` (halo fresh to
    codimension 2)."""
    for mu in range(4):
        U.U(mu, {mu: 1, (mu + 1) % 4: -1})  # raises if the halo is not fresh to codimension 2
    lat = U.lattice
    links = np.ascontiguousarray(U.links)
    out = np.empty((4,) + lat.shape(0) + (3, 3), dtype=links.dtype)
    geom = np.array(list(lat.local_dims) + [U.depth], dtype=np.int32)
    library(U.backend.precision).gauge_force(out.ctypes.data, links.ctypes.data, geom.ctypes.data,
                                             beta / 3.0, lat.local_volume)
    return out
