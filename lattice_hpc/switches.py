"""Every environment switch of lattice_hpc, in one registry, and the start-up facts ranks compare.

An environment variable that changes a code path is a hazard in an SPMD job: set on one rank only
(nodes' environments differ on batch systems), it sends that rank down another path and the job
hangs in the next collective.  So every such variable is registered here, read only through
:func:`get` (which validates it), and compared across ranks at start-up by
:func:`lattice_hpc.comm.check_environment` (``lattice-hpc`` does so for every command): a switch
that differs stops every rank with an error naming it.

Switches (*agree*: must be identical on every rank; checked at start-up):

- ``LATTICE_HPC_NO_MPI`` = ``0`` | ``1`` (default ``0``; agree): ``1`` runs without mpi4py, the
  process thinks it runs alone.
- ``LATTICE_HPC_H5_READ`` = ``collective`` | ``independent`` | ``auto`` (default ``auto``:
  collective on one rank, independent on several; agree): MPI-IO mode of HDF5 reads.
- ``LATTICE_HPC_KERNEL`` = ``auto`` | ``reference`` | ``compiled`` | ``cuda`` (default ``auto``;
  agree): the Wilson hopping kernel, and whether the gauge force is compiled (``reference``: the
  array-module code everywhere).
- ``LATTICE_HPC_GPU_AWARE_MPI`` = ``0`` | ``1`` (default ``0``; agree): ``1`` hands device (CuPy)
  halo buffers to MPI directly instead of staging them through the host.
- ``MPICH_GPU_SUPPORT_ENABLED`` = ``0`` | ``1`` (default ``0``; agree): Cray MPICH's GPU support;
  ``1`` has the same effect on the halo buffers as ``LATTICE_HPC_GPU_AWARE_MPI=1``.
- ``LATTICE_HPC_FAULT`` = ``ACTION:POINT[:K][@RANK],...`` (default unset; agree): fault injection
  for tests, see :mod:`lattice_hpc.faults` (which reads it itself).
- ``LATTICE_HPC_CACHE`` = a directory (default ``~/.cache/lattice_hpc``; may differ between
  ranks): the cache of compiled kernels.
- ``LATTICE_HPC_DEADLINE`` = Unix time (default unset; agree): the run stops cleanly, with a
  checkpoint, when the next step might end after it; the batch scripts of ``lattice-hpc submit``
  set it from the job's start and its wall-clock limit, so start-up time counts too.
- ``LATTICE_HPC_PROFILES`` = a directory (default: the checkout's ``profiles/``; may differ):
  the machine profiles of ``lattice-hpc submit``, ``scaling`` and ``model``.

Facts compared at start-up as well (they differ when nodes' installations differ):

- ``lattice_hpc version`` -- ``lattice_hpc.__version__`` of the imported package;
- ``mpi4py`` -- the version of mpi4py in use, or unset when the process runs without it.

An empty variable counts as unset.  A bad value raises :class:`~lattice_hpc.errors.ConfigError`
naming the variable and its allowed values.  A switch added later is registered here with
:func:`register` (with ``agree=True`` unless ranks may legitimately differ) and read with
:func:`get`; the start-up check then covers it with no further code.

``LATTICE_HPC_NO_MPI=1`` cannot be compared by the rank that has it (it is not in the MPI job):
:func:`lattice_hpc.comm.world` refuses to run without MPI in a process that an MPI launcher started
as one of several, and the command line then ends the whole job.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Any, Callable

from .errors import ConfigError


@dataclass(frozen=True)
class Switch:
    """One environment variable (``kind="env"``) or one start-up fact (``kind="fact"``).

    ``choices``: the allowed values (strings), or ``None`` when ``validator`` decides;
    ``validator``: ``str -> value`` raising ``ValueError`` for a bad one (``choices`` given: the
    value is the string itself, or ``convert`` of it); ``default``: the value when unset;
    ``agree``: whether every rank must have the same value; ``provider``: for a fact, the function
    that returns its value on this process.
    """

    name: str
    meaning: str
    default: Any = None
    choices: tuple[str, ...] | None = None
    validator: Callable[[str], Any] | None = None
    agree: bool = True
    kind: str = "env"
    provider: Callable[[], Any] | None = None
    allowed: str = ""  # how the allowed values are described in messages

    def describe_allowed(self) -> str:
        if self.choices is not None:
            return " | ".join(self.choices)
        return self.allowed or "see lattice_hpc/switches.py"

    def parse(self, raw: str | None):
        """The validated value of the raw string ``raw`` (``None`` or empty: the default)."""
        if raw is None or raw == "":
            return self.default
        if self.choices is not None and raw not in self.choices:
            raise ConfigError(f"{self.name}={raw!r} is not allowed: use one of "
                              f"{self.describe_allowed()}, or leave it unset ({self.name}: "
                              f"{self.meaning})")
        if self.validator is not None:
            try:
                return self.validator(raw)
            except ValueError as exc:
                raise ConfigError(f"{self.name}={raw!r} is not allowed ({exc}): allowed values: "
                                  f"{self.describe_allowed()}, or leave it unset ({self.name}: "
                                  f"{self.meaning})") from None
        return raw


REGISTRY: dict[str, Switch] = {}


def register(name: str, meaning: str, default=None, choices=None, validator=None, agree=True,
             allowed: str = "") -> Switch:
    """Register the environment switch ``name`` (once; see the module docstring)."""
    if name in REGISTRY:
        raise ValueError(f"switch {name} registered twice")
    REGISTRY[name] = sw = Switch(name, meaning, default, tuple(choices) if choices else None,
                                 validator, agree, "env", None, allowed)
    return sw


def register_fact(name: str, meaning: str, provider: Callable[[], Any]) -> Switch:
    """Register a start-up fact: ``provider()`` gives this process's value (``None``: unset)."""
    if name in REGISTRY:
        raise ValueError(f"switch {name} registered twice")
    REGISTRY[name] = sw = Switch(name, meaning, agree=True, kind="fact", provider=provider)
    return sw


def _flag(raw: str) -> bool:
    return raw == "1"


def _fault_spec(raw: str):
    from .faults import parse  # raises ValueError naming the item it cannot parse

    return parse(raw)


def raw(name: str) -> str | None:
    """The raw value of switch ``name`` on this process: the string, or ``None`` if unset/empty."""
    sw = REGISTRY[name]
    if sw.kind == "fact":
        value = sw.provider()
        return None if value is None else str(value)
    value = os.environ.get(name)
    return value if value else None


def get(name: str):
    """The validated value of switch ``name`` (its default when unset).

    Raises :class:`ConfigError` naming the variable and its allowed values for a bad value, and
    ``KeyError`` for a name that is not registered (register it first).
    """
    sw = REGISTRY[name]
    if sw.kind == "fact":
        return sw.provider()
    return sw.parse(raw(name))


def snapshot() -> dict[str, str | None]:
    """This process's raw values of every switch and fact that must agree across ranks.

    ``{name: raw string or None (unset)}``; never raises (a bad value is reported by
    :func:`lattice_hpc.comm.check_environment` after the ranks have compared their values)."""
    out = {}
    for name, sw in REGISTRY.items():
        if sw.agree:
            try:
                out[name] = raw(name)
            except Exception as exc:  # a fact whose provider fails: compared as such
                out[name] = f"<unavailable: {type(exc).__name__}: {exc}>"
    return out


def effective(name: str, raw_value: str | None):
    """What ``raw_value`` of switch ``name`` means, for comparison: the validated value, or a marker
    of the bad raw string (so that two ranks with different bad values differ)."""
    sw = REGISTRY.get(name)
    if sw is None or sw.kind == "fact":
        return raw_value
    try:
        value = sw.parse(raw_value)
    except ConfigError:
        return ("invalid", raw_value)
    return repr(value)


def _version():
    from . import __version__

    return __version__


def _mpi4py():
    from .comm import mpi  # at call time: comm.mpi itself reads LATTICE_HPC_NO_MPI from here

    return mpi.mpi4py_version()


register("LATTICE_HPC_NO_MPI", "1 runs without mpi4py: the process thinks it runs alone",
         default=False, choices=("0", "1"), validator=_flag)
register("LATTICE_HPC_H5_READ", "MPI-IO mode of HDF5 reads (auto: collective on one rank, "
         "independent on several)", default="auto", choices=("collective", "independent", "auto"))
register("LATTICE_HPC_KERNEL", "Dirac hopping kernel and gauge force (auto picks the compiled one)",
         default="auto", choices=("auto", "reference", "compiled", "cuda"))
register("LATTICE_HPC_GPU_AWARE_MPI", "1 hands device (CuPy) halo buffers to MPI directly",
         default=False, choices=("0", "1"), validator=_flag)
register("MPICH_GPU_SUPPORT_ENABLED", "Cray MPICH's GPU support; 1 hands device halo buffers "
         "to MPI directly", default=False, choices=("0", "1"), validator=_flag)
register("LATTICE_HPC_FAULT", "fault injection for tests (lattice_hpc/faults.py)", default=[],
         validator=_fault_spec, allowed="comma-separated ACTION:POINT[:K][@RANK], ACTION one of "
         "kill, eio, eacces, nan, clock")
register("LATTICE_HPC_CACHE", "directory of the compiled-kernel cache (may differ per node)",
         default=None, validator=os.path.expanduser, agree=False, allowed="a directory")
register("LATTICE_HPC_DEADLINE", "Unix time by which the run stops itself cleanly (batch scripts "
         "of lattice-hpc submit set it from the job's start and its wall-clock limit)",
         default=None, validator=float, allowed="seconds since the epoch")
register("LATTICE_HPC_PROFILES", "directory of the machine profiles (lattice-hpc submit, scaling, "
         "model; default: the checkout's profiles/)", default=None, validator=os.path.expanduser,
         agree=False, allowed="a directory")
register_fact("lattice_hpc version", "the version of the imported lattice_hpc package", _version)
register_fact("mpi4py", "the version of mpi4py in use (unset: this process runs without MPI)",
              _mpi4py)


__all__ = ["Switch", "REGISTRY", "register", "register_fact", "get", "raw", "snapshot", "effective"]
