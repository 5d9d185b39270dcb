"""``lattice-hpc bench dslash``: the Wilson hopping term against the copy bandwidth of the device.

For each lattice size and precision: the hopping term ``H psi`` (with its half-spinor face exchange
when the grid is split) and, interleaved with it in the same run, a copy of a large buffer
(``--copy-mib``, default 256 MiB per rank, four times a 64 MiB last-level cache: the STREAM rule)
on the same device.  Figures (CONVENTIONS.md):

- ``GFLOPs``: 1320 flops per site of the global lattice;
- ``GBps``: QUDA's byte model, per site 8 links (18 reals), 8 neighbour spinors (24 reals) and one
  output spinor (24 reals) at the storage precision: 2880 bytes in double, 1440 in single;
- ``copy_GBps``: bytes read + written by the copy; ``ratio = GBps / copy_GBps``.
- ``wait_seconds``, ``comm_fraction``: the face-exchange wait per hop that the bulk did not hide
  (mean over ranks), and its share of the time in the hop (both over the same calls).

The byte model counts every neighbour spinor as a memory read: a kernel whose neighbours hit in
cache can exceed ``ratio = 1``.  With ``--local`` the dimensions are per rank (weak scaling) and,
on several ranks, rank 0 also times the same local lattice alone while the other ranks wait:
``per_rank_ratio`` is the per-rank throughput of the full job over that single-rank figure,
measured in the same run.

On several ranks, every rank also times its local lattice as a single-rank operator (periodic on
the rank, no communication) with all ranks running at once: ``concurrent_GFLOPs`` per rank, the
node's compute throughput when all its cores work (which a single rank alone exceeds where the
cores share caches, memory or a clock budget), and rank 0 alone (``single_rank_GFLOPs``).  The
shortfall of ``per_rank_ratio`` then splits into ``node_sharing = concurrent / alone`` (nothing
the code's communication can change) and ``comm_efficiency = per_rank / concurrent`` (the face
exchange and the face work).  ``copy_sharing`` is the same ratio for the copy (per rank with all
ranks copying, over rank 0 copying alone): the weak-scaling efficiency of the memory itself, the
bound of a bandwidth-bound kernel; ``per_rank_ratio_over_copy_sharing`` is the hop's efficiency
against it.  All of these are timed interleaved, round by round, each hop after an untimed
cache flush.
"""

from __future__ import annotations

import math

from ..backend import Backend
from ..comm import compute_dims, self_comm
from ..fermions import WilsonDirac, random_spinor
from ..gauge import GaugeField
from ..geometry import Lattice, parse_dims
from ..groups import get_group
from ..rng import CounterRNG
from .timing import time_pairs

FLOPS_PER_SITE = 1320
REALS_PER_SITE = 8 * 18 + 8 * 24 + 24


def operator(lat, backend, kernel, kappa=0.12, csw=0.0, seed=1):
    """A Wilson(-clover) operator on a hot field and a random source (shared with bench cg)."""
    U = GaugeField.hot(lat, get_group("SU3"), CounterRNG(seed), backend)
    U.refresh()
    D = WilsonDirac(U, kappa, csw, kernel=kernel)
    psi = random_spinor(lat, CounterRNG(seed + 1), ("bench",), backend)
    return D, psi


def copy_reference(backend, mib: float):
    """A function copying ``mib`` MiB on the backend's device, and the bytes it moves."""
    xp = backend.xp
    n = int(mib * 2 ** 20) // 8
    src = xp.ones(n, dtype=xp.float64)
    dst = xp.empty_like(src)

    def copy():
        xp.copyto(dst, src)
        if backend.name == "cupy":  # pragma: no cover - GPU only
            xp.cuda.get_current_stream().synchronize()

    return copy, 2 * src.nbytes


def synced(backend, fn):
    if backend.name != "cupy":
        return fn

    def call():  # pragma: no cover - GPU only
        fn()
        backend.xp.cuda.get_current_stream().synchronize()

    return call


def local_grid(nprocs: int, ndim: int) -> tuple[int, ...]:
    """Weak-scaling grid: the balanced factorisation, largest factors on the slowest directions."""
    return tuple(reversed(compute_dims(nprocs, ndim)))


def run(args, comm) -> dict:
    results = []
    for precision in args.precision:
        backend = Backend(args.backend, precision)
        copy, copy_bytes = copy_reference(backend, args.copy_mib)
        for dims_text in args.dims:
            dims = parse_dims(dims_text)
            if args.local:
                grid = parse_dims(args.grid) if args.grid != "auto" else local_grid(comm.size, len(dims))
                dims = tuple(d * g for d, g in zip(dims, grid))
            else:
                grid = args.grid
            lat = Lattice(dims, grid, comm=comm)
            D, psi = operator(lat, backend, args.kernel, csw=args.csw)
            fns, mine = _timed(lat, D, psi, backend, args, comm, copy)
            t, reps = time_pairs(fns, comm, args.seconds)
            itemsize = backend.real(0).itemsize
            entry = {"dims": list(lat.dims), "local_dims": list(lat.local_dims),
                     "grid": list(lat.grid.dims), "precision": precision, "kernel": D.hopping.name,
                     "hop_seconds": t["hop"], "GFLOPs": FLOPS_PER_SITE * lat.volume / t["hop"] / 1e9,
                     "GBps": REALS_PER_SITE * itemsize * lat.volume / t["hop"] / 1e9,
                     "copy_GBps": copy_bytes * comm.size / t["copy"] / 1e9, "repeats": reps}
            entry["ratio"] = entry["GBps"] / entry["copy_GBps"]
            # exposed face-exchange wait per hop (rank mean; the part the bulk did not hide)
            calls = max(1, mine["calls"])
            wait = comm.allreduce(mine["wait_seconds"] / calls, op="sum") / comm.size
            busy = comm.allreduce(mine["seconds"] / calls, op="sum") / comm.size
            entry["wait_seconds"] = wait
            entry["comm_fraction"] = wait / busy if busy > 0 else 0.0
            entry["per_rank_GFLOPs"] = entry["GFLOPs"] / comm.size
            if comm.size > 1:
                local = FLOPS_PER_SITE * math.prod(lat.local_dims) / 1e9
                conc, alone = local / t["concurrent"], local / t["alone"]
                entry["concurrent_GFLOPs"] = conc
                entry["comm_efficiency"] = entry["per_rank_GFLOPs"] / conc
                entry["single_rank_GFLOPs"] = alone
                entry["node_sharing"] = conc / alone
                # the node's memory: copy bandwidth per rank with all copying, over rank 0 alone
                entry["copy_sharing"] = t["copy_alone"] / t["copy"]
                if args.local:
                    entry["per_rank_ratio"] = entry["per_rank_GFLOPs"] / alone
                    entry["per_rank_ratio_over_copy_sharing"] = (entry["per_rank_ratio"]
                                                                 / entry["copy_sharing"])
            results.append(entry)
    return {"benchmark": "dslash", "ranks": comm.size, "backend": args.backend, "csw": args.csw,
            "flops_per_site": FLOPS_PER_SITE, "bytes_per_site_double": REALS_PER_SITE * 8,
            "copy_MiB_per_rank": args.copy_mib, "results": results}


def _timed(lat, D, psi, backend, args, comm, copy):
    """The functions :func:`time_pairs` interleaves, round by round, so that the machine's drifts
    hit all alike: the hop of the job, the copy, and on several ranks the local lattice as a
    single-rank operator (no communication) on all ranks at once (``concurrent``) and on rank 0
    alone while the others wait (``alone``).  Every hop starts from a cache flushed by an untimed
    copy of a quarter of ``--copy-mib`` (the streaming regime of large lattices, for each alike).
    Returns ``(fns, mine)``: ``mine`` collects the Dirac profile of the job's hops only."""
    from ..fermions.kernels import base

    flush, _ = copy_reference(backend, max(1.0, args.copy_mib / 4))
    mine = {"seconds": 0.0, "wait_seconds": 0.0, "calls": 0}

    def hop():
        before = dict(base.PROFILE)
        D.hop(psi)
        if backend.name == "cupy":  # pragma: no cover - GPU only
            backend.xp.cuda.get_current_stream().synchronize()
        for k in mine:
            mine[k] += base.PROFILE[k] - before[k]

    fns = {"hop": (flush, hop), "copy": copy}
    if comm.size > 1:
        lat1 = Lattice(lat.local_dims, (1,) * lat.ndim, comm=self_comm())
        D1, psi1 = operator(lat1, backend, args.kernel, csw=args.csw)
        one = synced(backend, lambda: D1.hop(psi1))
        fns["concurrent"] = (flush, one)
        fns["alone"] = (flush, one if comm.rank == 0 else (lambda: None))
        fns["copy_alone"] = copy if comm.rank == 0 else (lambda: None)
    return fns, mine


