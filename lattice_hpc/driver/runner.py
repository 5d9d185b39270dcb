"""``lattice-hpc run JOB.toml``: from a job file to a finished (or cleanly stopped) segment.

The order is what makes a run directory safe, for every job type (:mod:`.jobtype`):

1. every rank reads and validates the whole job file (types, finite floats, ranges, the job
   type's cross-key checks), the lattice and process grid, and, for a new run, the header of
   the start file if ``update.start`` names one (a resumed run does not need it any more); the
   resolved configuration must be identical on all ranks.
   Nothing is written yet, so a corrected job file is never refused because of a failed start;
2. the run-directory lock is taken (:mod:`.lock`): a second job on the same directory is
   refused on every rank before any file is touched;
3. the saved ``config.json`` and the newest valid checkpoint are read; a change of a key that
   defines the chain is refused (naming it); a corrupt checkpoint is renamed ``*.corrupt`` and
   the previous one is used, but one that *could not be read* (an I/O error on any rank) stops
   the job with status 2 and touches nothing;
4. the job type sets up its chain (from the checkpoint, or from the start field);
5. only then is the segment recorded (``config.json``, ``history.jsonl``) and the records
   trimmed to what the checkpoint has seen;
6. the step loop (:mod:`.chain`) runs; the lock is released at the end, whatever happens.

A run directory with records but no usable checkpoint restarts the chain from the beginning,
moving the old records aside.
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
from ..groups import get_group
from ..io import Checkpoint, CheckpointStore
from ..log import get_logger
from ..rng import CounterRNG
from .chain import run_chain
from .config import chain_changes, config_hash, load_config
from .jobtypes import JOB_TYPES
from .lock import RunLock
from .rundir import RunDir
from .startfield import check_start_file, start_field
from .stopping import StopControl


class Checkpointing:
    """What the step loop needs to resume and to save: the resumed checkpoint and ``save``.

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


def run_job(path: str, overrides, comm: Communicator, force_unlock: bool = False) -> dict | None:
    """Collective: run (or resume) the job file ``path``; returns the result dictionary on rank 0.

    ``force_unlock`` takes over the run directory's lock whoever holds it (``--force-unlock``).
    """
    log = get_logger(comm)
    cfg = load_config(path, overrides)
    job_type = JOB_TYPES[cfg["job"]["type"]]
    run_dir = cfg["output"]["dir"].replace("{name}", cfg["job"]["name"])
    domain = job_type.domain(cfg, comm)  # the ranks that share one field (all, but for replicas)
    lattice = Lattice(cfg["lattice"]["dims"], cfg["lattice"]["grid"], comm=domain)  # checks, then collective
    chash = config_hash(cfg)
    comm.check_same(chash, "the job configuration")
    if not _has_checkpoints(run_dir, comm):  # a resumed run does not need its start file
        check_start_file(cfg, lattice)
    backend = Backend(cfg["backend"]["name"], cfg["backend"]["precision"])
    lock = RunLock(run_dir, comm, force=force_unlock, log=log)
    lock.acquire()
    try:
        return _run_locked(cfg, job_type, run_dir, lattice, comm, chash, backend, lock, log)
    finally:
        lock.release()


def _run_locked(cfg, job_type, run_dir, lattice, comm, chash, backend, lock, log):
    rundir = RunDir(run_dir, comm)
    previous = rundir.previous()
    if previous is not None:
        _refuse_changes(run_dir, "config.json", previous.get("config", {}), cfg)
    store = CheckpointStore(os.path.join(run_dir, "checkpoints"), comm, cfg["checkpoint"]["keep"], log,
                            writer=comm.rank < lattice.comm.size)
    # checkpoints are looked for even without config.json (copied in by hand): never ignored,
    # since later saves would prune them.  load_latest may rename a corrupt one: still ours?
    lock.check()
    resumed = store.load_latest(lattice, backend)
    job = job_type(cfg, lattice, backend, log)
    job.world = comm
    if resumed is not None:
        _refuse_changes(run_dir, resumed.path, resumed.config or {}, cfg)
        log.info("resuming from %s (step %d)", resumed.path, resumed.state["step"])
        job.resume(resumed)
        start = (previous or {}).get("start")
    else:
        if previous is not None:
            log.warning("%s holds an earlier segment but no usable checkpoint: starting the chain "
                        "again (earlier records move to records.discarded.jsonl)", run_dir)
        field, start = start_field(cfg, lattice, get_group(cfg["action"]["group"]), backend,
                                   CounterRNG(cfg["update"]["seed"]))
        if start is not None:
            log.info("starting from %s (%s, sha256 %s)", start["path"], start["format"],
                     start["sha256"][:16])
        job.start(field)
    first = resumed.state["step"] if resumed else 0
    meta = comm.bcast({"version": __version__, "git_commit": _git_commit() if comm.rank == 0 else None,
                       "mpi_size": comm.size,
                       "grid": list(lattice.grid.dims), "host": socket.gethostname(),
                       "date": datetime.datetime.now().isoformat(timespec="seconds"),
                       "resumed_from": resumed.path if resumed else None, "step": first,
                       "start": start, "lock": lock.info if comm.rank == 0 else None})
    lock.check()  # a start can take long (a big checkpoint or start file): is the lock still ours?
    rundir.start(cfg, chash, meta, resumed.state["records"] if resumed else 0)
    log.info("job %s (%s): lattice %s on grid %s (%d ranks), local %s, run dir %s", cfg["job"]["name"],
             job_type.name, ",".join(map(str, lattice.dims)), ",".join(map(str, lattice.grid.dims)),
             comm.size, ",".join(map(str, lattice.local_dims)), run_dir)
    sched = job_type.schedule(cfg)
    stopper = StopControl(comm, cfg["job"]["max_seconds"], lock)
    try:
        summary = run_chain(job, sched, first, rundir, Checkpointing(store, cfg, chash, meta, resumed),
                            stopper, log)
    finally:
        stopper.close()
    rundir.finish(summary)
    return {"run_dir": os.path.abspath(run_dir), **summary} if comm.rank == 0 else None


def _has_checkpoints(run_dir: str, comm) -> bool:
    """Collective, read only: whether ``run_dir/checkpoints`` holds a checkpoint (a hint before
    the lock is taken; what is resumed is decided under the lock)."""
    def peek():
        try:
            return any(n.startswith("ckpt_") for n in os.listdir(os.path.join(run_dir, "checkpoints")))
        except OSError:
            return False
    return comm.on_root(peek)


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
