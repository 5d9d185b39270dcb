"""Fault injection for tests: kill the process, or make an I/O call fail, at named points.

``LATTICE_HPC_FAULT`` holds a comma-separated list of faults; each is ``ACTION:POINT[:K][@RANK]``:

- ``kill:POINT:K``   -- SIGKILL this process at the ``K``-th time (1-based) it reaches ``POINT``;
- ``eio:POINT`` / ``eacces:POINT`` -- the I/O call at ``POINT`` raises ``OSError(EIO)`` /
  ``PermissionError(EACCES)`` (every time; ``:K`` for the ``K``-th time only);
- ``nan:POINT:K`` -- the value passed through :func:`value` at ``POINT`` becomes NaN the ``K``-th
  time (numerical faults of the flows; give it on every rank);
- ``clock:chain:MS`` -- a virtual clock for the chain's time budget (``job.max_seconds``): each
  step counts as ``MS`` milliseconds, so that a wall-clock stop comes at a known step (tests of
  batch segments);
- ``@RANK`` restricts a fault to that rank of COMM_WORLD (default: every rank).

Points (each names where it sits in the code):

- ``checkpoint-write`` -- in the middle of a checkpoint write, after the field data went out;
- ``checkpoint-read``  -- opening a checkpoint for reading (every rank);
- ``record-append``    -- in the middle of appending a record (half the line written and flushed);
- ``step``             -- inside a step of a chain, before its record is written;
- ``flow-loss``        -- the model log-densities of a flow's training step (``nan``);
- ``flow-log-weight``  -- the log-weights of a batch of flow proposals (``nan``).

The variable is read once; the spec is the same on every rank (the startup check of
:mod:`lattice_hpc.switches` compares it), and the ``@RANK`` part selects where it fires.  The
legacy form ``checkpoint-write:K`` means ``kill:checkpoint-write:K``.  Without the variable every
call here is a dictionary lookup and nothing else.
"""

from __future__ import annotations

import errno
import os
import signal

_counts: dict[str, int] = {}
_spec: list[tuple[str, str, int | None, int | None]] | None = None


def _rank() -> int:
    for var in ("PMI_RANK", "OMPI_COMM_WORLD_RANK", "PMIX_RANK", "PALS_RANKID", "SLURM_PROCID"):
        if os.environ.get(var, "").isdigit():
            return int(os.environ[var])
    return 0


def parse(text: str) -> list[tuple[str, str, int | None, int | None]]:
    """``[(action, point, K or None, rank or None)]`` of a ``LATTICE_HPC_FAULT`` value."""
    out = []
    for item in filter(None, (s.strip() for s in text.split(","))):
        body, _, rank = item.partition("@")
        parts = body.split(":")
        if parts[0] not in ("kill", "eio", "eacces", "nan", "clock"):  # legacy "checkpoint-write:K"
            parts = ["kill"] + parts
        if len(parts) not in (2, 3) or (len(parts) == 3 and not parts[2].isdigit()) or \
                (rank and not rank.isdigit()):
            raise ValueError(f"LATTICE_HPC_FAULT: cannot parse {item!r} (ACTION:POINT[:K][@RANK])")
        out.append((parts[0], parts[1], int(parts[2]) if len(parts) == 3 else None,
                    int(rank) if rank else None))
    return out


def _faults():
    global _spec
    if _spec is None:
        _spec = parse(os.environ.get("LATTICE_HPC_FAULT", ""))
    return _spec


def _firing(name: str, count: int):
    rank = _rank()
    for action, where, k, r in _faults():
        if where == name and (r is None or r == rank) and (k is None or k == count):
            return action
    return None


def armed(name: str) -> bool:
    """Whether the next :func:`point` call of ``name`` will fire (so that the caller can first
    leave the half-done state that the fault is meant to test, e.g. half a record line)."""
    return bool(_faults()) and _firing(name, _counts.get(name, 0) + 1) is not None


def point(name: str) -> None:
    """Reach the fault point ``name``: kill the process or raise ``OSError`` if a fault says so."""
    faults = _faults()
    if not faults:
        return
    _counts[name] = count = _counts.get(name, 0) + 1
    action = _firing(name, count)
    if action == "kill":
        os.kill(os.getpid(), signal.SIGKILL)
    if action is not None:
        code = errno.EIO if action == "eio" else errno.EACCES
        raise OSError(code, f"{os.strerror(code)} (injected by LATTICE_HPC_FAULT at {name})")


def value(name: str, x):
    """Reach the numerical fault point ``name`` with value ``x`` (a number, array or tensor): ``x``
    itself, or ``x * nan`` if a ``nan`` fault fires here."""
    faults = _faults()
    if not faults:
        return x
    _counts[name] = count = _counts.get(name, 0) + 1
    return x * float("nan") if _firing(name, count) == "nan" else x


def clock(elapsed: float, steps: int) -> float:
    """The seconds a chain has run as its stop check sees them: ``elapsed``, or ``steps * MS /
    1000`` under a ``clock:chain:MS`` fault."""
    for action, where, k, _ in _faults():
        if action == "clock" and where == "chain":
            return steps * (k or 0) / 1000.0
    return elapsed
