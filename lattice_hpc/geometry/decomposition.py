"""Parse lattice dimensions and process grids, and check that they fit (pure; no communication).

Conventions (CONVENTIONS.md): dimensions are written ``X,Y,Z,T`` (or ``X,T``), the grid the same
way; every global extent must be divisible by the grid extent and every local extent must be even
(even/odd checkerboarding).  These checks run identically on every rank before any communication,
so a bad input stops every rank with the same message.
"""

from __future__ import annotations

import itertools
import math
from typing import Sequence

from ..comm import compute_dims
from ..errors import GeometryError


def parse_dims(value, what: str = "dims") -> tuple[int, ...]:
    """``"8,8,8,16"``, ``"8x8x8x16"`` or a sequence of ints -> tuple of positive ints."""
    if isinstance(value, str):
        parts = value.split(",") if "," in value else value.split("x")
        try:
            out = tuple(int(p) for p in parts if p.strip())
        except ValueError:
            raise GeometryError(f"{what} = {value!r}: expected comma-separated integers such as "
                                f"'8,8,8,16'") from None
    else:
        try:
            out = tuple(int(v) for v in value)
        except (TypeError, ValueError):
            raise GeometryError(f"{what} = {value!r}: expected a list of integers") from None
    if not out or any(v < 1 for v in out):
        raise GeometryError(f"{what} = {value!r}: every extent must be a positive integer")
    return out


def check_grid(dims: Sequence[int], grid: Sequence[int], nprocs: int) -> None:
    """Raise :class:`GeometryError` naming the direction unless ``grid`` fits ``dims`` on nprocs."""
    names = direction_names(len(dims))
    if len(grid) != len(dims):
        raise GeometryError(f"process grid {','.join(map(str, grid))} has {len(grid)} entries, "
                            f"the lattice {','.join(map(str, dims))} has {len(dims)} dimensions")
    if math.prod(grid) != nprocs:
        raise GeometryError(f"process grid {','.join(map(str, grid))} needs {math.prod(grid)} ranks "
                            f"but the job has {nprocs}: change --grid or the number of ranks")
    for mu, (L, g) in enumerate(zip(dims, grid)):
        if L % g:
            raise GeometryError(f"direction {names[mu]}: global extent {L} is not divisible by the "
                                f"grid extent {g}")
        if (L // g) % 2:
            raise GeometryError(f"direction {names[mu]}: local extent {L // g} (= {L} / {g}) is odd; "
                                f"every local extent must be even for even/odd checkerboarding")


def resolve_grid(dims: Sequence[int], grid, nprocs: int) -> tuple[int, ...]:
    """The process grid for ``dims`` on ``nprocs`` ranks: an explicit grid, checked, or ``auto``.

    ``auto`` takes the balanced factorisation of ``MPI_Dims_create`` and gives the largest factors
    to the slowest directions (t first: their faces are contiguous in memory); if that does not fit
    the lattice, the other orderings of the same factors are tried.
    """
    dims = tuple(dims)
    if len(dims) < 2:
        raise GeometryError(f"lattice {dims}: need at least 2 dimensions (X,T)")
    if grid is None or (isinstance(grid, str) and grid.strip().lower() == "auto"):
        factors = compute_dims(nprocs, len(dims))
        first = tuple(reversed(factors))
        candidates = [first] + sorted(set(itertools.permutations(factors)) - {first}, reverse=True)
        reasons = []
        for cand in candidates:
            try:
                check_grid(dims, cand, nprocs)
                return cand
            except GeometryError as exc:
                reasons.append(str(exc))
        raise GeometryError(f"no process grid of {nprocs} ranks built from {factors} fits the lattice "
                            f"{','.join(map(str, dims))}; with grid {','.join(map(str, first))}: "
                            f"{reasons[0]}")
    grid = parse_dims(grid, "grid")
    check_grid(dims, grid, nprocs)
    return grid


def direction_names(ndim: int) -> tuple[str, ...]:
    """``('x', 't')`` in 2D, ``('x', 'y', 'z', 't')`` in 4D; ``d0, d1, ...`` otherwise."""
    if ndim == 2:
        return ("x", "t")
    if ndim == 4:
        return ("x", "y", "z", "t")
    if ndim == 3:
        return ("x", "y", "t")
    return tuple(f"d{i}" for i in range(ndim))
