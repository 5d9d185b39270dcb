"""Build kernel sources into shared libraries for the CPU, cached, safe under many ranks.

A library is compiled once per (source text, compiler, flags, CPU) into a cache directory
(``$LATTICE_HPC_CACHE``, default ``~/.cache/lattice_hpc``) with ``-O3 -march=native -fopenmp``:
written under a temporary name and renamed, so ranks that compile at the same time never see a
half-written file.  ``$CXX`` chooses the compiler (default ``g++``).  Threads per rank:
``$OMP_NUM_THREADS`` (default 1: one MPI rank per core).
"""

from __future__ import annotations

import ctypes
import hashlib
import os
import platform
import shutil
import subprocess
import tempfile
from functools import lru_cache
from pathlib import Path

from .. import switches
from ..errors import BackendError

COMMON = Path(__file__).with_name("common.cuh")
MARKER = "// @PRELUDE@"
FLAGS = ["-O3", "-march=native", "-fopenmp", "-fPIC", "-shared", "-std=gnu++14", "-x", "c++"]


def compose(kernel_file: Path, prelude: str) -> str:
    """The full source: ``common.cuh`` with ``prelude`` in place of its marker, then the kernel."""
    common = COMMON.read_text()
    if MARKER not in common:
        raise RuntimeError(f"{COMMON}: prelude marker missing")
    return common.replace(MARKER, prelude, 1) + "\n" + Path(kernel_file).read_text()


def _cpu_id() -> str:
    try:
        text = Path("/proc/cpuinfo").read_text()
        lines = [ln for ln in text.splitlines() if ln.startswith(("model name", "flags"))][:2]
        return platform.machine() + "|".join(lines)
    except OSError:
        return platform.machine() + platform.processor()


def cache_dir() -> Path:
    return Path(switches.get("LATTICE_HPC_CACHE") or Path.home() / ".cache" / "lattice_hpc")


def shared_library(source: str, name: str) -> ctypes.CDLL:
    """The CPU library built from ``source`` (compiled on first use; ``name`` labels the file)."""
    cxx = os.environ.get("CXX", "g++")
    return _library(source, name, cxx)


@lru_cache(maxsize=None)
def _library(source: str, name: str, cxx: str) -> ctypes.CDLL:
    if shutil.which(cxx) is None:
        raise BackendError(f"compiled CPU kernels need a C++ compiler: {cxx!r} not found "
                           "(install g++, set CXX, or use kernel='reference')")
    version = subprocess.run([cxx, "--version"], capture_output=True, text=True).stdout
    key = hashlib.sha256("|".join([source, cxx, version, " ".join(FLAGS), _cpu_id()]).encode())
    target = cache_dir() / f"{name}_{key.hexdigest()[:16]}.so"
    if not target.exists():
        target.parent.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryDirectory(dir=target.parent) as tmp:
            src = Path(tmp) / f"{name}.cpp"
            src.write_text(source)
            out = Path(tmp) / target.name
            proc = subprocess.run([cxx, *FLAGS, "-o", str(out), str(src)], capture_output=True,
                                  text=True)
            if proc.returncode:
                raise BackendError(f"compiling the CPU kernels with {cxx} failed:\n{proc.stderr[-4000:]}")
            os.replace(out, target)
    lib = ctypes.CDLL(str(target))
    lib.set_threads.argtypes = [ctypes.c_int]
    lib.set_threads(int(os.environ.get("OMP_NUM_THREADS", "1") or 1))
    return lib
