"""The start-up check that every rank runs with the same switches (:mod:`lattice_hpc.switches`).

``check_environment(comm)`` is collective: each rank contributes ``switches.snapshot()`` (the raw
values of every registered switch and fact that must agree), and if any differ every rank raises
the same :class:`~lattice_hpc.errors.ConfigError`, naming each differing setting with its value on
each rank.  It then validates the (now identical) values, so a bad value is reported by every rank
alike.  ``lattice-hpc`` calls it right after :func:`~lattice_hpc.comm.world` for every command; a
switch registered later is covered with no change here.
"""

from __future__ import annotations

from .. import switches
from ..errors import ConfigError

_FIX = "set the same environment on every rank (in the batch script, before the launcher)"
_MAX_LISTED = 8  # ranks listed per value group before the list is shortened


def _show(raw) -> str:
    return "unset" if raw is None else repr(raw)


def _ranks(ranks: list[int]) -> str:
    if len(ranks) == 1:
        return f"rank {ranks[0]}"
    if len(ranks) > _MAX_LISTED:
        shown = ", ".join(str(r) for r in ranks[:_MAX_LISTED])
        return f"ranks {shown}, ... ({len(ranks)} ranks)"
    return "ranks " + ", ".join(str(r) for r in ranks)


def describe_differences(snapshots: list[dict]) -> list[str]:
    """One sentence per setting whose meaning differs between the ranks' ``snapshots``; pure.

    Two raw values differ when they mean different things (``auto`` and unset are the same for
    ``LATTICE_HPC_H5_READ``; two different bad values differ).  Ranks with the same value are
    grouped (by raw value, in rank order).
    """
    names = []
    for snap in snapshots:
        names.extend(n for n in snap if n not in names)
    out = []
    for name in names:
        raws = [snap.get(name) for snap in snapshots]
        meanings = [switches.effective(name, raw) for raw in raws]
        if all(m == meanings[0] for m in meanings):
            continue
        groups: dict = {}  # raw value -> [ranks], in order of first rank
        for rank, raw in enumerate(raws):
            groups.setdefault(raw, []).append(rank)
        per_rank = ", ".join(f"{_ranks(ranks)} {_show(raw)}" for raw, ranks in groups.items())
        out.append(f"{name} differs between ranks: {per_rank}")
    return out


def check_environment(comm) -> dict:
    """Collective: raise :class:`ConfigError` on every rank unless all ranks of ``comm`` have the
    same switches and facts (:func:`lattice_hpc.switches.snapshot`), or if one is invalid.

    The message names each differing setting with its value per rank, e.g.
    ``LATTICE_HPC_H5_READ differs between ranks: rank 0 'independent', rank 1 unset: set the same
    environment on every rank (in the batch script, before the launcher)``.  Returns this rank's
    snapshot.
    """
    mine = switches.snapshot()
    snapshots = comm.allgather(mine)
    diffs = describe_differences(snapshots)
    if diffs:
        raise ConfigError("; ".join(diffs) + ": " + _FIX)
    for name, sw in switches.REGISTRY.items():  # identical on every rank now: so is any error
        if sw.kind == "env" and sw.agree:
            switches.get(name)
    return mine


__all__ = ["check_environment", "describe_differences"]
