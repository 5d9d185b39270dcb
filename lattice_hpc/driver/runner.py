"""Dispatch ``lattice-hpc run JOB.toml``: configuration, lattice, resume, job type, summary.

A job that finds a checkpoint in its run directory resumes from the newest valid one (falling back
over corrupt ones); it refuses to resume if a key that defines the Markov chain changed
(:data:`lattice_hpc.driver.config.CHAIN_KEYS`), naming each.  A run directory with records but no
usable checkpoint restarts the chain from the beginning, moving the old records aside.
"""

from __future__ import annotations

import datetime
import os
import socket
import subprocess

from .. import __version__
from ..backend import Backend
from ..comm import Communicator
from ..errors import ConfigError
from ..geometry import Lattice
from ..io import Checkpoint, CheckpointStore
from ..log import get_logger
from .config import chain_changes, config_hash, load_config
from .hmc import run_hmc
from .quenched import run_quenched
from .rundir import RunDir

JOB_TYPES = {"quenched": run_quenched, "hmc": run_hmc}


class Checkpointing:
    """What a job type needs to resume and to save: the resumed checkpoint and ``save``.

    Attributes:
        resumed: the :class:`lattice_hpc.io.Checkpoint` this segment starts from, or ``None``.
    """

    def __init__(self, store: CheckpointStore, cfg: dict, chash: str, meta: dict, resumed):
        self.store, self.cfg, self.chash, self.meta, self.resumed = store, cfg, chash, meta, resumed
        self.every = cfg["checkpoint"]["every"]
        prec = cfg["checkpoint"]["precision"]
        self.precision = cfg["backend"]["precision"] if prec == "auto" else prec

    def due(self, step: int) -> bool:
        """Whether a checkpoint is due after ``step`` steps (not counting the final one)."""
        return self.every > 0 and step % self.every == 0

    def save(self, step: int, field, state: dict, arrays=None, blobs=None) -> str:
        """Collective: checkpoint ``field`` and the chain ``state`` as ``ckpt_<step>.h5``."""
        ck = Checkpoint(field, self.precision, dict(state, step=step), self.cfg, self.chash,
                        {"generator": "philox4x32-10", "seed": self.cfg["update"]["seed"],
                         "key": "blake2b(seed, purpose)", "counter": "(global site, draw)"},
                        arrays or {}, blobs or {},
                        {**self.meta, "backend": self.cfg["backend"]["name"],
                         "precision": self.cfg["backend"]["precision"]})
        return self.store.save(step, ck)


def run_job(path: str, overrides, comm: Communicator) -> dict | None:
    """Collective: run (or resume) the job file ``path``; returns the result dictionary on rank 0.

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
    lattice = Lattice(cfg["lattice"]["dims"], cfg["lattice"]["grid"], comm=comm)  # checks, then collective
    chash = config_hash(cfg)
    comm.check_same(chash, "the job configuration")
    rundir = RunDir(run_dir, comm)
    previous = rundir.previous()
    if previous is not None:
        _refuse_changes(run_dir, "config.json", previous.get("config", {}), cfg)
    store = CheckpointStore(os.path.join(run_dir, "checkpoints"), comm, cfg["checkpoint"]["keep"], log)
    backend = Backend(cfg["backend"]["name"], cfg["backend"]["precision"])
    # checkpoints are looked for even without config.json (copied in by hand): never ignored,
    # since later saves would prune them
    resumed = store.load_latest(lattice, backend)
    if resumed is not None:
        _refuse_changes(run_dir, resumed.path, resumed.config or {}, cfg)
        log.info("resuming from %s (step %d)", resumed.path, resumed.state["step"])
    elif previous is not None:
        log.warning("%s holds an earlier segment but no usable checkpoint: starting the chain "
                    "again (earlier records move to records.discarded.jsonl)", run_dir)
    meta = comm.bcast({"version": __version__, "git_commit": _git_commit(), "mpi_size": comm.size,
                       "grid": list(lattice.grid.dims), "host": socket.gethostname(),
                       "date": datetime.datetime.now().isoformat(timespec="seconds"),
                       "resumed_from": resumed.path if resumed else None,
                       "step": resumed.state["step"] if resumed else 0})
    rundir.start(cfg, chash, meta, resumed.state["records"] if resumed else 0)
    log.info("job %s (%s): lattice %s on grid %s (%d ranks), local %s, run dir %s", cfg["job"]["name"],
             kind, ",".join(map(str, lattice.dims)), ",".join(map(str, lattice.grid.dims)), comm.size,
             ",".join(map(str, lattice.local_dims)), run_dir)
    ckpt = Checkpointing(store, cfg, chash, meta, resumed)
    summary = JOB_TYPES[kind](cfg, lattice, rundir, log, ckpt)
    rundir.finish(summary)
    return {"run_dir": os.path.abspath(run_dir), **summary} if comm.rank == 0 else None


def _refuse_changes(run_dir: str, source: str, old: dict, new: dict) -> None:
    changes = chain_changes(old, new)
    if changes:
        raise ConfigError(f"{run_dir}: cannot resume, these parameters differ from {source}: "
                          f"{'; '.join(changes)}. Use a new output.dir for a new chain")


def _git_commit() -> str | None:
    try:
        here = os.path.dirname(os.path.abspath(__file__))
        out = subprocess.run(["git", "rev-parse", "HEAD"], cwd=here, capture_output=True, text=True,
                             timeout=5)
        return out.stdout.strip() or None
    except (OSError, subprocess.SubprocessError):
        return None
