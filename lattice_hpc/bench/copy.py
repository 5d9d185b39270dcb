"""``lattice-hpc bench copy``: the copy bandwidth of every rank's device, all ranks at once.

The reference figure of the bandwidth-bound kernels (the STREAM rule: a buffer of ``--mib`` MiB
per rank, default 256, four times a 64 MiB last-level cache) and a calibration point of the
performance model (:mod:`lattice_hpc.batch.model`): ranks that share a node's memory share its
bandwidth, so ``copy_GBps`` (all ranks together) over ranks is what one rank gets in a full node.
"""

from __future__ import annotations

from ..backend import Backend
from .dslash import copy_reference, synced
from .timing import time_pairs


def run(args, comm) -> dict:
    backend = Backend(args.backend, "double")
    copy, nbytes = copy_reference(backend, args.mib)
    t, reps = time_pairs({"copy": synced(backend, copy)}, comm, args.seconds)
    total = nbytes * comm.size / t["copy"] / 1e9
    return {"benchmark": "copy", "ranks": comm.size, "backend": args.backend,
            "MiB_per_rank": args.mib, "copy_seconds": t["copy"], "copy_GBps": total,
            "per_rank_GBps": total / comm.size, "repeats": reps}
