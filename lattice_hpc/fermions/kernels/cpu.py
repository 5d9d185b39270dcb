"""The fused kernels of ``wilson.cuh`` compiled for the CPU with the C++ compiler, through ctypes.

The source is compiled once per (source, precision, compiler, flags, CPU) into a cache directory
(``$LATTICE_HPC_CACHE``, default ``~/.cache/lattice_hpc``) with ``-O3 -march=native -fopenmp``: a
shared library written under a temporary name and renamed, so ranks that compile at the same time
never see a half-written file.  ``$CXX`` chooses the compiler (default ``g++``).  Threads per rank:
``$OMP_NUM_THREADS`` (default 1: one MPI rank per core).
"""

from __future__ import annotations

import ctypes
import os
import platform
import shutil
import subprocess
import tempfile
from functools import lru_cache
from pathlib import Path

import numpy as np

from ...errors import BackendError
from .base import Hopping, PackedBlocks
from .source import kernel_source, source_hash

FLAGS = ["-O3", "-march=native", "-fopenmp", "-fPIC", "-shared", "-std=gnu++14", "-x", "c++"]
_P, _I, _L = ctypes.c_void_p, ctypes.c_int, ctypes.c_long


def _cpu_id() -> str:
    try:
        text = Path("/proc/cpuinfo").read_text()
        lines = [ln for ln in text.splitlines() if ln.startswith(("model name", "flags"))][:2]
        return platform.machine() + "|".join(lines)
    except OSError:
        return platform.machine() + platform.processor()


def cache_dir() -> Path:
    return Path(os.environ.get("LATTICE_HPC_CACHE", Path.home() / ".cache" / "lattice_hpc"))


@lru_cache(maxsize=None)
def library(precision: str, recon: int = 18) -> ctypes.CDLL:
    """The compiled kernels for ``precision`` and link storage ``recon`` (compiled on first use)."""
    cxx = os.environ.get("CXX", "g++")
    if shutil.which(cxx) is None:
        raise BackendError(f"compiled CPU kernels need a C++ compiler: {cxx!r} not found "
                           "(install g++, set CXX, or use kernel='reference')")
    version = subprocess.run([cxx, "--version"], capture_output=True, text=True).stdout
    key = source_hash(precision, recon, "|".join([cxx, version, " ".join(FLAGS), _cpu_id()]))
    target = cache_dir() / f"wilson_{precision}_r{recon}_{key}.so"
    if not target.exists():
        target.parent.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryDirectory(dir=target.parent) as tmp:
            src = Path(tmp) / "wilson.cpp"
            src.write_text(kernel_source(precision, recon))
            out = Path(tmp) / target.name
            proc = subprocess.run([cxx, *FLAGS, "-o", str(out), str(src)], capture_output=True,
                                  text=True)
            if proc.returncode:
                raise BackendError(f"compiling the CPU kernels with {cxx} failed:\n{proc.stderr[-4000:]}")
            os.replace(out, target)
    lib = ctypes.CDLL(str(target))
    real = ctypes.c_double if precision == "double" else ctypes.c_float
    lib.dslash_bulk.argtypes = [_P] * 8 + [_I, _I, real, real, _I, _I, _L]
    lib.pack_face.argtypes = [_P] * 4 + [_I, _I, _I, _I, _L]
    lib.face_add.argtypes = [_P] * 6 + [_I, _I, _I, _I, real, _I, _L]
    lib.set_threads.argtypes = [_I]
    lib.set_threads(int(os.environ.get("OMP_NUM_THREADS", "1") or 1))
    for f in (lib.dslash_bulk, lib.pack_face, lib.face_add):
        f.restype = None
    return lib


def _ptr(a) -> int | None:
    return None if a is None else a.ctypes.data


class CompiledHopping(Hopping):
    """The fused kernels on host arrays (NumPy), one call per bulk / face / pack."""

    name = "compiled"

    def __init__(self, op):
        super().__init__(op)
        if op.backend.name != "numpy":
            raise BackendError("the compiled CPU kernels take NumPy arrays: use kernel='cuda' on CuPy")
        self.lib = library(op.backend.precision, op.recon)
        self.real = op.backend.real
        lat = self.lattice
        self.gauge = kernel_links(op, np)
        self.geom, self.bc = geometry_arrays(op, np)
        self.V = lat.local_volume
        self.packed = PackedBlocks(op, np)

    def _check(self, a):
        if a.dtype != self.op.dtype or not a.flags.c_contiguous:
            raise TypeError(f"kernel input must be C-contiguous {self.op.dtype}, got {a.dtype}")
        return a

    def pack(self, psi, mu, side, parity, dagger):
        n = self.V // self.lattice.local_dims[mu]
        buf = np.empty((n, 2, 3), dtype=self.op.dtype)
        self.lib.pack_face(buf.ctypes.data, self._check(psi).ctypes.data, self.gauge.ctypes.data,
                           self.geom.ctypes.data, mu, side, -1 if parity is None else parity,
                           int(dagger), n)
        return buf

    def bulk(self, psi, chi, alpha, B, beta, C, dagger, parity):
        B, C = self.packed(B), self.packed(C)
        out = np.empty_like(psi)
        n = self.V if parity is None else self.V // 2
        self.lib.dslash_bulk(out.ctypes.data, self._check(psi).ctypes.data,
                             self._check(chi).ctypes.data, self.gauge.ctypes.data, _ptr(B), _ptr(C),
                             self.geom.ctypes.data, self.bc.ctypes.data,
                             -1 if parity is None else parity, int(dagger), alpha, beta,
                             int(B is not None), int(C is not None), n)
        return out

    def face_add(self, out, buf, mu, side, C, beta, dagger, parity):
        n = self.V // self.lattice.local_dims[mu]
        buf = np.ascontiguousarray(buf)
        C = self.packed(C)
        self.lib.face_add(out.ctypes.data, buf.ctypes.data, self.gauge.ctypes.data, _ptr(C),
                          self.geom.ctypes.data, self.bc.ctypes.data, mu, side,
                          -1 if parity is None else parity, int(dagger), beta,
                          int(C is not None), n)

    def apply_blocks(self, blocks, psi, parity=None):
        # alpha B chi with beta = 0 would still run the hops: the block product stays in NumPy
        from .reference import apply_blocks

        out = apply_blocks(blocks, psi)
        if parity is not None:
            out *= (self.lattice.parity == parity)[..., None, None]
        return out


def kernel_links(op, xp):
    """The links as the kernels read them: ``(4, *local, 3, 3)``, or ``(4, *local, 2, 3)`` (the
    first two rows) for ``recon=12``."""
    rows = 3 if op.recon == 18 else 2
    return xp.ascontiguousarray(xp.stack([u[..., :rows, :] for u in op.links]))


def geometry_arrays(op, xp):
    """``geom`` (int32: local dims, partitioned / upper / lower boundary masks, origin parity) and
    ``bc`` (real: re, im of each direction's boundary phase) as the kernels read them."""
    lat = op.lattice
    part = sum(1 << mu for mu in range(lat.ndim) if lat.grid.dims[mu] > 1)
    upper = sum(1 << mu for mu in range(lat.ndim) if op.upper_boundary[mu])
    lower = sum(1 << mu for mu in range(lat.ndim) if op.lower_boundary[mu])
    geom = np.array(list(lat.local_dims) + [part, upper, lower, sum(lat.origin) % 2], dtype=np.int32)
    bc = np.array([[complex(b).real, complex(b).imag] for b in op.bc], dtype=op.backend.real).ravel()
    return xp.asarray(geom), xp.asarray(bc)
