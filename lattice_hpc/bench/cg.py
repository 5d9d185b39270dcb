"""``lattice-hpc bench cg``: a Krylov solve against the bare operator it applies, in the same run.

For each lattice size and precision: solve ``D x = b`` (hot gauge field, random source) with the
chosen solver, even/odd preconditioned unless ``--full``, and time the bare operator (``D`` or the
Schur complement ``D_hat``) interleaved with nothing else, in the same run.  Figures:

- ``seconds``, ``iterations``, ``operator_applications`` and ``true_residual`` of the solve;
- ``GFLOPs``: hopping-term flops of all operator applications (1320 per site for ``D``; ``D_hat``
  costs two half-lattice hops, the same) over the solve time;
- ``operator_GFLOPs``: the same figure for the bare operator alone;
- ``ratio = GFLOPs / operator_GFLOPs``: the fraction of the operator's throughput that the solver
  sustains (the rest is linear algebra, reductions and their latency);
- ``wait_seconds``, ``comm_fraction``: the face-exchange wait of the solve that the bulk did not
  hide (mean over ranks), and its share of the solve time.

Single-precision solves stop at ``max(tol, 1e-5)``; ``mixed`` (double precision with single-
precision inner solves) runs in the double-precision pass only.  Mixed precision counts its single-precision applications at the single-precision operator's time.
"""

from __future__ import annotations

from ..backend import Backend
from ..fermions import SchurOperator, solve_evenodd
from ..geometry import Lattice, parse_dims
from ..solvers import bicgstab, cgne, mixed_precision
from ..fermions.kernels.base import reset_profile
from .dslash import FLOPS_PER_SITE, operator, synced
from .timing import time_pairs

SINGLE_TOL = 1e-5  # the tolerance of single-precision solves: 1e-10 is out of their reach
SOLVERS = {"cgne": cgne, "bicgstab": bicgstab, "mixed": mixed_precision}


def run(args, comm) -> dict:
    results = []
    for precision in args.precision:
        backend = Backend(args.backend, precision)
        for dims_text in args.dims:
            lat = Lattice(parse_dims(dims_text), args.grid, comm=comm)
            D, b = operator(lat, backend, args.kernel, args.kappa, args.csw)
            for name in args.solver:
                if name == "mixed" and precision != "double":
                    continue  # mixed precision is a double-precision solve with single inner solves
                results.append(_one(lat, D, b, name, args, comm, precision))
    return {"benchmark": "cg", "ranks": comm.size, "backend": args.backend, "kappa": args.kappa,
            "csw": args.csw, "evenodd": not args.full, "tol": args.tol, "results": results}


def _one(lat, D, b, name, args, comm, precision) -> dict:
    solver = SOLVERS[name]
    low = D.converted("single") if name == "mixed" else None
    wrap = (lambda op: op) if args.full else SchurOperator
    ops = {"op": wrap(D)}
    if low is not None:
        ops["op_low"] = wrap(low)
    tol = args.tol if precision == "double" else max(args.tol, SINGLE_TOL)
    kw = {"tol": tol, "maxiter": args.maxiter}
    reset_profile()
    if args.full:
        res = solver(D, b, **kw) if low is None else solver(D, low, b, **kw)
    else:
        res = solve_evenodd(D, b, solver, low, **kw)
    seconds = comm.allreduce(res.seconds, op="max")
    wait = comm.allreduce(reset_profile()["wait_seconds"], op="sum") / comm.size
    xs = {k: op.zeros() + b for k, op in ops.items()}
    if "op_low" in xs:
        xs["op_low"] = xs["op_low"].astype(low.dtype)
    t, _ = time_pairs({k: synced(D.backend, lambda k=k, op=op: op.apply(xs[k])) for k, op in ops.items()},
                      comm, args.seconds)
    flops = FLOPS_PER_SITE * lat.volume
    entry = {"dims": list(lat.dims), "grid": list(lat.grid.dims), "precision": precision,
             "solver": name, "kernel": D.hopping.name, "tol": tol, "seconds": seconds,
             "iterations": res.iterations, "restarts": res.restarts,
             "operator_applications": res.operator_applications,
             "true_residual": res.true_residual, "operator_seconds": t["op"],
             "operator_GFLOPs": flops / t["op"] / 1e9,
             "GFLOPs": res.operator_applications * flops / seconds / 1e9,
             "wait_seconds": wait, "comm_fraction": wait / seconds}
    if low is not None:  # split the applications: inner ones at single-precision speed
        outer = res.restarts + (0 if args.full else 1)  # one residual per correction (+ e/o)
        inner = res.operator_applications - outer
        busy = inner * t["op_low"] + outer * t["op"]
        entry["operator_low_seconds"] = t["op_low"]
        entry["ratio"] = busy / seconds
    else:
        entry["ratio"] = entry["GFLOPs"] / entry["operator_GFLOPs"]
    return entry
