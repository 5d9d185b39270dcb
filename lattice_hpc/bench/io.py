"""``lattice-hpc bench io``: checkpoint write and read against raw sequential I/O of the same bytes.

For each lattice size, interleaved in the same run and in the same directory (``--dir``):

- **checkpoint write**: :func:`lattice_hpc.io.write_checkpoint` of a hot SU(3) field by all ranks
  (parallel checksum, collective HDF5 ``mpio`` hyperslab writes, close, fsync, atomic rename);
- **checkpoint read**: :func:`lattice_hpc.io.read_checkpoint` (collective read, checksum verified);
- **raw write**: rank 0 writes the same number of bytes (the field's size at the checkpoint
  precision) to one file with one sequential ``write`` and ``fsync``;
- **raw read**: rank 0 reads that file back sequentially.

Bandwidth = field bytes / seconds (median over repetitions; each repetition is bracketed by
barriers and takes the slowest rank).  ``write_ratio`` and ``read_ratio`` are checkpoint / raw.
Before each timed read, both files are dropped from the page cache (``fdatasync`` then
``posix_fadvise(DONTNEED)``, untimed), as fio does by default (``invalidate=1``), so that reads
measure the file system rather than a memory copy; the same reads from the page cache are
reported as ``*_cached`` (there the checkpoint's checksum verification and its scatter into the
halo-padded field, not I/O, set the pace).
"""

from __future__ import annotations

import os
import shutil
import tempfile

import numpy as np

from ..gauge import GaugeField
from ..geometry import Lattice, parse_dims
from ..groups import get_group
from ..io import Checkpoint, read_checkpoint, write_checkpoint
from ..rng import CounterRNG
from .timing import time_pairs


def _drop_cache(comm, path):
    """Collective: rank 0 evicts ``path`` from the page cache (no-op where unsupported)."""
    if comm.rank == 0 and hasattr(os, "posix_fadvise"):
        fd = os.open(path, os.O_RDONLY)
        try:
            os.fdatasync(fd)
            os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED)
        finally:
            os.close(fd)
    comm.barrier()


def run(args, comm) -> dict:
    base = comm.bcast(tempfile.mkdtemp(prefix="lattice_hpc_bench_io_", dir=args.dir)
                      if comm.rank == 0 else None)
    results = []
    try:
        for dims_text in args.dims:
            lat = Lattice(parse_dims(dims_text), args.grid, comm=comm)
            U = GaugeField.hot(lat, get_group("SU3"), CounterRNG(1))
            U.refresh()
            itemsize = 8 if args.precision == "single" else 16
            nbytes = lat.volume * lat.ndim * 9 * itemsize
            ck_path = os.path.join(base, "bench.h5")
            raw_path = os.path.join(base, "raw.bin")
            payload = np.random.default_rng(0).integers(0, 256, nbytes, dtype=np.uint8) \
                if comm.rank == 0 else None

            def ck_write():
                write_checkpoint(ck_path, Checkpoint(U, args.precision), overwrite=True)

            def ck_read():
                read_checkpoint(ck_path, lat)

            def raw_write():
                if comm.rank == 0:
                    with open(raw_path, "wb") as fh:
                        fh.write(memoryview(payload))
                        fh.flush()
                        os.fsync(fh.fileno())

            def raw_read():
                if comm.rank == 0:
                    with open(raw_path, "rb") as fh:
                        buf = np.empty(nbytes, dtype=np.uint8)
                        fh.readinto(memoryview(buf))

            def drop_ck():
                _drop_cache(comm, ck_path)

            def drop_raw():
                _drop_cache(comm, raw_path)

            ck_write()
            raw_write()
            t, reps = time_pairs({"checkpoint_write": ck_write, "raw_write": raw_write,
                                  "checkpoint_read": (drop_ck, ck_read),
                                  "raw_read": (drop_raw, raw_read),
                                  "checkpoint_read_cached": ck_read, "raw_read_cached": raw_read},
                                 comm, args.seconds, max_reps=50, min_reps=3)
            gb = nbytes / 1e9
            entry = {"dims": list(lat.dims), "grid": list(lat.grid.dims), "precision": args.precision,
                     "bytes": nbytes, "repeats": reps,
                     **{f"{k}_seconds": v for k, v in t.items()},
                     **{f"{k}_GBps": gb / v for k, v in t.items()}}
            entry["write_ratio"] = entry["checkpoint_write_GBps"] / entry["raw_write_GBps"]
            entry["read_ratio"] = entry["checkpoint_read_GBps"] / entry["raw_read_GBps"]
            entry["read_cached_ratio"] = entry["checkpoint_read_cached_GBps"] / entry["raw_read_cached_GBps"]
            results.append(entry)
    finally:
        comm.barrier()
        if comm.rank == 0:
            shutil.rmtree(base, ignore_errors=True)
    return {"benchmark": "io", "ranks": comm.size, "directory": os.path.abspath(args.dir),
            "results": results}
