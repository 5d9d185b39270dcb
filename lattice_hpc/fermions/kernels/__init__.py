"""Hopping kernels of the Wilson(-clover) operator, kept in step (the contract is in :mod:`.base`).

- :mod:`.reference` -- on the array module (NumPy or CuPy): the definition, readable, slow;
- :mod:`.cpu`       -- ``wilson.cuh`` compiled with g++ for the CPU (ctypes);
- :mod:`.cuda`      -- the same ``wilson.cuh`` compiled with NVRTC for the GPU (CuPy);
- :mod:`.source`    -- the source with its prelude (precision, gamma tables from :mod:`..gamma`).

``kernel="auto"`` (or ``$LATTICE_HPC_KERNEL``) picks ``cuda`` on CuPy, ``compiled`` on NumPy, and
falls back to ``reference`` with a warning when no C++ compiler works.  The fused kernels are
written for 4D SU(3); other fields (the 2D Schwinger model) always use the reference, which runs
on either array module.
"""

from __future__ import annotations

from ... import switches
from ...errors import BackendError
from ...log import get_logger
from .base import Hopping, apply_blocks
from .reference import ReferenceHopping

KERNELS = ("auto", "reference", "compiled", "cuda")


def make_hopping(op, kernel: str = "auto") -> Hopping:
    """The hopping implementation ``kernel`` for operator ``op``."""
    if kernel not in KERNELS:
        raise BackendError(f"unknown kernel {kernel!r}: use one of {', '.join(KERNELS)}")
    if not getattr(op, "fused", True):  # the switch chooses among the 4D SU(3) kernels only
        if kernel in ("auto", "reference"):
            return ReferenceHopping(op)
        raise BackendError(f"the {kernel} kernels are written for 4D SU(3) fields; this operator "
                           f"({op.lattice.ndim}D, {op.color} colour(s)) runs on kernel='reference'")
    if kernel == "auto":
        kernel = switches.get("LATTICE_HPC_KERNEL")
    if kernel not in KERNELS:
        raise BackendError(f"unknown kernel {kernel!r}: use one of {', '.join(KERNELS)}")
    if kernel == "reference":
        return ReferenceHopping(op)
    if kernel == "cuda" or (kernel == "auto" and op.backend.name == "cupy"):
        from .cuda import CudaHopping

        return CudaHopping(op)
    from .cpu import CompiledHopping

    if kernel == "compiled":
        return CompiledHopping(op)
    try:
        return CompiledHopping(op)
    except BackendError as exc:
        get_logger(op.lattice.comm).warning("compiled CPU kernels unavailable, using the reference: %s", exc)
        return ReferenceHopping(op)


__all__ = ["Hopping", "ReferenceHopping", "make_hopping", "apply_blocks", "KERNELS"]
