"""What a job type is: the interface between a Markov chain and the driver that runs it.

A job type (``[job] type = ...``) is a subclass of :class:`JobType`.  It declares, as class
attributes, the job-file keys it owns (``schema``), the ones among them that define its chain
(``chain_keys``), the record keys that are physics observables (``observables``; everything else
in a record is bookkeeping), and the name of its unit of work (``unit``: step, trajectory, ...).
It implements ``start`` / ``resume`` (set up the chain from a start field or a checkpoint),
``step`` (one step, numbered globally from the start of the chain), ``state`` (what a checkpoint
must hold besides the field) and ``progress`` (the log line).

Everything else is done once, for every job type, by the driver (:mod:`.runner`, :mod:`.chain`):
the run-directory lock, validation before anything is written, the start field (``cold``,
``hot``, ``near_identity`` or a file), resuming from the newest valid checkpoint, the
measurement schedule keyed to the global step number (:class:`Schedule`), records, checkpoints,
clean stops, errors that name the step, and the summary over the job type's observables.  So the
properties of a run directory (exact restart, no lost records, no hang) hold by construction for
every job type, present and future.
"""

from __future__ import annotations

import abc
from dataclasses import dataclass


@dataclass(frozen=True)
class Schedule:
    """Which steps of a chain are measured, keyed to the global step number ``n`` (0-based).

    Steps ``0 .. thermalize-1`` thermalize; then every ``every``-th step is measured until
    ``measure`` measurements are taken.  Measurement ``m`` (0-based, global) is step
    ``thermalize + m * every``.  A resumed chain therefore measures exactly the steps of the
    uninterrupted one, however its segments are cut.
    """

    thermalize: int
    measure: int
    every: int = 1

    @property
    def total(self) -> int:
        """Steps of the whole chain."""
        return self.thermalize + self.measure * self.every

    def measurement(self, n: int) -> int | None:
        """The global measurement index of step ``n``, or ``None`` if it is not measured."""
        k = n - self.thermalize
        if k < 0 or k % self.every or k // self.every >= self.measure:
            return None
        return k // self.every

    @staticmethod
    def due(m: int | None, period: int) -> bool:
        """Whether measurement ``m`` is one of every ``period``-th (the ``period``-th, the
        ``2 period``-th, ...; counting from 1 as a user does); ``period = 0`` means never."""
        return m is not None and period > 0 and (m + 1) % period == 0


class JobType(abc.ABC):
    """Base class of the job types.  Collective methods are called on all ranks together.

    Class attributes:
        name: the ``job.type`` of the job file.
        schema: ``{section: {key: config.Key}}`` owned by this job type (beyond config.COMMON).
        chain_keys: ``{section: (key, ...)}`` of its own keys that define the chain.
        observables: record keys that are physics observables (numbers, or lists of numbers that
            are analysed per component); the summary and ``lattice-hpc analyze`` use these only.
        unit: ``(singular, plural)`` of a step, e.g. ``("trajectory", "trajectories")``.

    Attributes after ``start``/``resume``: ``field``, the gauge field (the chain's state that the
    checkpoint holds).
    """

    name = ""
    schema: dict = {}
    chain_keys: dict = {}
    observables: tuple = ()
    unit = ("step", "steps")

    @classmethod
    def check(cls, cfg: dict, source: str) -> None:
        """Cross-key checks of the resolved configuration; raise ``ConfigError`` naming the key.
        Called before anything is written."""

    def __init__(self, cfg: dict, lattice, backend, log):
        self.cfg, self.lattice, self.backend, self.log = cfg, lattice, backend, log
        self.field = None
        self.world = lattice.comm  # all ranks of the job (the driver sets it)

    @abc.abstractmethod
    def start(self, field) -> None:
        """Collective: begin a new chain from ``field`` (halo fresh)."""

    @abc.abstractmethod
    def resume(self, ckpt) -> None:
        """Collective: continue the chain from checkpoint ``ckpt`` (``ckpt.field``, ``ckpt.state``)."""

    @abc.abstractmethod
    def step(self, n: int, m: int | None) -> dict | None:
        """Collective: step ``n`` of the chain; ``m`` is its global measurement index (``None``:
        not measured).  Returns the record of a measured step (a JSON-ready dict)."""

    @classmethod
    def domain(cls, cfg: dict, comm):
        """Collective: the communicator of the ranks that hold one field between them (the
        lattice is decomposed over it).  Default: all ranks.  A job type with data-parallel
        replicas (``flow``) returns its replica's share; the driver's run directory, lock and
        stops stay on all ranks (``job.world``), and replica 0 writes the checkpoints."""
        return comm

    @classmethod
    def schedule(cls, cfg: dict) -> Schedule:
        """Which steps are measured (default: ``update.thermalize``, ``measure``, ``measure_every``)."""
        up = cfg["update"]
        return Schedule(up["thermalize"], up["measure"], up["measure_every"])

    def state(self) -> dict:
        """What a checkpoint must hold besides the field, the step and the record count."""
        return {}

    def arrays(self) -> dict:
        """Named NumPy arrays a checkpoint must hold besides the field (e.g. model weights)."""
        return {}

    def summary(self, records: list) -> dict:
        """Entries the summary adds to the ``[mean, error]`` of the observables (e.g. a
        reweighting's effective sample size)."""
        return {}

    def phase(self, n: int) -> str:
        """What an unmeasured step ``n`` before the measurements does, for the log line."""
        return "thermalizing"

    def remaining_seconds(self, done: int, total: int, per: float) -> float:
        """The log line's ETA: seconds left after ``done`` of ``total`` steps, where this run
        segment has taken ``per`` seconds per step so far (job types whose phases differ in
        cost estimate each)."""
        return per * (total - done)

    def progress(self, n: int, rec: dict | None) -> str:
        """Collective: the part of the log line after step ``n`` that describes the chain."""
        return ""
