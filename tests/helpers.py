"""Test helpers: run a body on sub-communicators shaped as given process grids."""

from __future__ import annotations

import math
import os
import subprocess
import sys

import numpy as np

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

from lattice_hpc.comm import self_comm, world  # noqa: E402
from lattice_hpc.geometry import Lattice  # noqa: E402


def on_grids(dims, grids, body):
    """For each grid that fits COMM_WORLD, run ``body(lattice)`` on the first ``prod(grid)`` ranks.

    Returns ``{grid: result}`` on the ranks that took part (rank 0 of the world takes part in
    every grid).  Also returns the serial reference ``body`` on COMM_SELF under the key ``"serial"``.
    """
    comm = world()
    out = {"serial": body(Lattice(dims, (1,) * len(dims), comm=self_comm()))}
    for grid in grids:
        n = math.prod(grid)
        if n > comm.size:
            continue
        sub = comm.split(0 if comm.rank < n else -1)
        if sub is not None:
            out[tuple(grid)] = body(Lattice(dims, grid, comm=sub))
        comm.barrier()
    return out


def grids_run(results):
    return [k for k in results if k != "serial"]


def global_test_field(dims, site_shape, lead=(), seed=0):
    """A deterministic global field in memory order (t..x) whose entries encode their coordinates."""
    rng = np.random.default_rng(seed)
    shape = tuple(lead) + tuple(reversed(dims)) + tuple(site_shape)
    return rng.standard_normal(shape) + 1j * rng.standard_normal(shape)


def run_cli(args, np=None, cwd=None, timeout=240, env=None):
    """Run ``lattice-hpc ARGS`` (under ``mpirun -n np`` if given) in a subprocess; the result.
    ``env`` adds variables to the environment (on every rank)."""
    cmd = [sys.executable, "-m", "lattice_hpc.cli"] + list(args)
    if np:
        cmd = ["mpirun", "-n", str(np)] + cmd
    # the package of this checkout, whatever the working directory (another checkout may be installed)
    path = os.pathsep.join(filter(None, [ROOT, os.environ.get("PYTHONPATH", "")]))
    env = dict(os.environ, OMP_NUM_THREADS="1", PYTHONPATH=path, **(env or {}))
    return subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, cwd=cwd, env=env)


# A short quenched 2D U(1) job (8 x 8, beta = 2): {dir} is the run directory, {measure} and {log}
# the number of measurements and the log interval.
U1_QUENCHED_JOB = """
[job]
type = "quenched"
name = "u1"
[lattice]
dims = [8, 8]
[action]
group = "U1"
beta = 2.0
[update]
thermalize = 5
measure = {measure}
overrelax = 1
seed = 3
[output]
dir = "{dir}"
log_every = {log}
"""



# A short quenched SU(3) job (4^4, beta = 5.7, checkpoints every 2 steps, the newest 5 kept):
# {start}, {measure}, {heatbath}, {overrelax} and the run directory {dir}.
SU3_QUENCHED_JOB = """
[job]
name = "q"
[lattice]
dims = [4, 4, 4, 4]
[action]
beta = 5.7
[update]
start = "{start}"
thermalize = 0
measure = {measure}
heatbath = {heatbath}
overrelax = {overrelax}
seed = 7
[checkpoint]
every = 2
keep = 5
[output]
dir = "{dir}"
"""


def flip_link_byte(path, bit=0x10):
    """Flip one bit in the middle of the gauge links dataset of a checkpoint (found through
    h5py's storage offset): a corrupt checkpoint whose HDF5 structure is intact."""
    import h5py

    with h5py.File(path, "r") as f:
        offset = f["gauge/links"].id.get_offset()
        n = f["gauge/links"].id.get_storage_size()
    with open(path, "r+b") as fh:
        fh.seek(offset + n // 2)
        b = fh.read(1)
        fh.seek(offset + n // 2)
        fh.write(bytes([b[0] ^ bit]))


def untimed(value):
    """A record without its timings (any key that holds ``seconds``), which differ run to run."""
    if isinstance(value, dict):
        return {k: untimed(v) for k, v in value.items() if "seconds" not in k}
    return value


def run_records(run_dir):
    """The records of a run directory, without their timings."""
    import json

    with open(os.path.join(run_dir, "records.jsonl")) as fh:
        return [untimed(json.loads(ln)) for ln in fh if ln.strip()]


def final_field(run_dir):
    """``(links, chain state)`` of the newest checkpoint of a run directory."""
    import json

    import h5py

    names = sorted(n for n in os.listdir(os.path.join(run_dir, "checkpoints")) if n.endswith(".h5"))
    with h5py.File(os.path.join(run_dir, "checkpoints", names[-1]), "r") as f:
        return f["gauge/links"][...], json.loads(f["chain"].attrs["state"])


def dense_even_operator(apply, D):
    """The dense matrix of an even-site operator ``apply`` (one rank), in the order of
    :class:`lattice_hpc.flows.fermions._EvenBasis` of the Dirac operator ``D``."""
    from lattice_hpc.flows.fermions import _EvenBasis

    basis = _EvenBasis(D)
    out = np.zeros((basis.n, basis.n), dtype=np.complex128)
    for j in range(basis.n):
        out[:, j] = basis.local_part(apply(basis.vectors(j, j + 1)[0]))
    return out
