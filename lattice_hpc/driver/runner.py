"""Dispatch ``lattice-hpc run JOB.toml``: configuration, lattice, run directory, job type, summary."""

from __future__ import annotations

import datetime
import os
import subprocess

from .. import __version__
from ..comm import Communicator
from ..errors import ConfigError
from ..geometry import Lattice
from ..log import get_logger
from .config import config_hash, load_config
from .quenched import run_quenched
from .rundir import RunDir

JOB_TYPES = {"quenched": run_quenched}


def run_job(path: str, overrides, comm: Communicator) -> dict | None:
    """Collective: run the job file ``path``; returns the result dictionary on rank 0.

    Every rank validates the configuration and the decomposition before any communication; the
    resolved configuration is then checked to be identical on all ranks.
    """
    log = get_logger(comm)
    cfg = load_config(path, overrides)
    kind = cfg["job"]["type"]
    if kind not in JOB_TYPES:
        raise ConfigError(f"{path}: job.type = {kind!r} is not a known job type; "
                          f"known: {', '.join(JOB_TYPES)}")
    run_dir = cfg["output"]["dir"].replace("{name}", cfg["job"]["name"])
    rundir = RunDir(run_dir, writer=comm.rank == 0)
    rundir.check_fresh()
    lattice = Lattice(cfg["lattice"]["dims"], cfg["lattice"]["grid"], comm=comm)  # checks, then collective
    chash = config_hash(cfg)
    comm.check_same(chash, "the job configuration")
    meta = {"version": __version__, "git_commit": _git_commit(), "mpi_size": comm.size,
            "grid": list(lattice.grid.dims), "date": datetime.datetime.now().isoformat(timespec="seconds")}
    rundir.create(cfg, chash, meta)
    log.info("job %s (%s): lattice %s on grid %s (%d ranks), local %s, run dir %s", cfg["job"]["name"],
             kind, ",".join(map(str, lattice.dims)), ",".join(map(str, lattice.grid.dims)), comm.size,
             ",".join(map(str, lattice.local_dims)), run_dir)
    summary = JOB_TYPES[kind](cfg, lattice, rundir, log)
    rundir.finish(summary)
    return {"run_dir": os.path.abspath(run_dir), **summary} if comm.rank == 0 else None


def _git_commit() -> str | None:
    try:
        here = os.path.dirname(os.path.abspath(__file__))
        out = subprocess.run(["git", "rev-parse", "HEAD"], cwd=here, capture_output=True, text=True,
                             timeout=5)
        return out.stdout.strip() or None
    except (OSError, subprocess.SubprocessError):
        return None
