"""``lattice-hpc bench plaquette``: the plaquette kernel against a copy of the same links.

Figures: GFLOP/s with ``3 * 198`` flops per plane and site (three 3x3 complex products), and an
effective bandwidth with the minimal traffic model (every link read once per measurement,
``ndim N^2`` complex numbers per site), next to the copy bandwidth of the links array (read +
write) measured in the same run; ``ratio`` is effective / copy bandwidth.
"""

from __future__ import annotations

from ..backend import Backend
from ..gauge import GaugeField, plaquette
from ..geometry import Lattice, parse_dims
from ..groups import get_group
from ..rng import CounterRNG
from .timing import time_pairs


def run(args, comm) -> dict:
    backend = Backend(args.backend, args.precision)
    xp = backend.xp
    results = []
    for dims_text in args.dims:
        lat = Lattice(parse_dims(dims_text), args.grid, comm=comm)
        group = get_group(args.group)
        U = GaugeField.hot(lat, group, CounterRNG(1), backend)
        U.refresh(codim=1)
        src = U.links
        dst = xp.empty_like(src)

        def copy():
            xp.copyto(dst, src)
            if backend.name == "cupy":  # pragma: no cover
                xp.cuda.get_current_stream().synchronize()

        t, reps = time_pairs({"plaquette": lambda: plaquette(U), "copy": copy}, lat.comm, args.seconds)
        N = group.N
        nplanes = lat.ndim * (lat.ndim - 1) // 2
        flops = lat.volume * nplanes * 3 * (8 * N ** 3 - 2 * N ** 2)
        bytes_min = lat.volume * lat.ndim * N * N * src.dtype.itemsize
        copy_bytes = 2 * src.nbytes * comm.size
        entry = {"dims": list(lat.dims), "grid": list(lat.grid.dims), "group": group.name,
                 "precision": args.precision, "plaquette_seconds": t["plaquette"],
                 "GFLOPs": flops / t["plaquette"] / 1e9,
                 "effective_GBps": bytes_min / t["plaquette"] / 1e9,
                 "copy_GBps": copy_bytes / t["copy"] / 1e9, "repeats": reps}
        entry["ratio"] = entry["effective_GBps"] / entry["copy_GBps"]
        results.append(entry)
    return {"benchmark": "plaquette", "ranks": comm.size, "backend": args.backend, "results": results}
