"""``lattice-hpc bench halo``: halo-exchange bandwidth against raw ``MPI_Sendrecv``.

For each lattice size, a field (links ``[ndim, N, N]`` per site by default) is exchanged over the
*partitioned* directions (those with grid extent > 1; halos of the others are on-rank copies, not
communication), and, in the same run and interleaved with it, the same messages (same partners,
same byte counts) are sent as contiguous buffers with ``MPI_Sendrecv``.  Reported per rank: bytes
sent per exchange, median times, bandwidths in GB/s, and ``ratio = raw time / halo time``.  The
full exchange over all directions (with the on-rank copies) is timed too, for information.
"""

from __future__ import annotations

import numpy as np

from ..backend import Backend
from ..geometry import Lattice, parse_dims
from .timing import time_pairs

FIELDS = {"links": ((3, 3), 1), "spinor": ((4, 3), 0), "scalar": ((), 0)}


def run(args, comm) -> dict:
    backend = Backend(args.backend, "double")
    xp = backend.xp
    results = []
    for dims_text in args.dims:
        dims = parse_dims(dims_text)
        lat = Lattice(dims, args.grid, comm=comm)
        site, nlead = FIELDS[args.field]
        lead = (lat.ndim,) if nlead else ()
        part = [mu for mu, g in enumerate(lat.grid.dims) if g > 1]
        halo = lat.halo(args.depth, args.codim, part or None)
        full = lat.halo(args.depth, args.codim)
        field = xp.asarray(np.random.default_rng(lat.comm.rank).standard_normal(
            lead + lat.shape(args.depth) + site)).astype(backend.complex)
        itemsize = field.dtype.itemsize * int(np.prod(site, dtype=np.int64)) * int(np.prod(lead, dtype=np.int64))
        msgs = halo.messages()
        sizes = [halo.message_sites(o) * itemsize for o, _ in msgs]
        send = [np.ones(n, np.uint8) for n in sizes]
        recv = [np.empty(n, np.uint8) for n in sizes]
        grid = lat.grid

        def raw():
            for (o, dest), sb, rb in zip(msgs, send, recv):
                grid.sendrecv(sb, dest, rb, grid.rank_at(tuple(-v for v in o)))

        fns = {"halo": lambda: halo.exchange(field, lead=len(lead)), "raw_sendrecv": raw,
               "full_exchange": lambda: full.exchange(field, lead=len(lead))}
        t, reps = time_pairs(fns, lat.comm, args.seconds)
        nbytes = sum(sizes)
        entry = {
            "dims": list(dims), "grid": list(lat.grid.dims), "local_dims": list(lat.local_dims),
            "field": args.field, "depth": args.depth, "codim": halo.codim, "strategy": halo.strategy,
            "partitioned_directions": part, "messages": len(msgs), "bytes_sent_per_rank": nbytes,
            "halo_seconds": t["halo"], "raw_sendrecv_seconds": t["raw_sendrecv"],
            "full_exchange_seconds": t["full_exchange"], "repeats": reps,
        }
        if nbytes:
            entry["halo_GBps"] = nbytes / t["halo"] / 1e9
            entry["raw_sendrecv_GBps"] = nbytes / t["raw_sendrecv"] / 1e9
            entry["ratio"] = t["raw_sendrecv"] / t["halo"]
        results.append(entry)
    out = {"benchmark": "halo", "ranks": comm.size, "backend": args.backend, "results": results}
    ratios = [r["ratio"] for r in results if "ratio" in r]
    if ratios:
        out["min_ratio"] = min(ratios)
    else:
        out["note"] = "one rank: no partitioned direction, nothing crosses ranks"
    return out
