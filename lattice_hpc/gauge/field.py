"""Gauge fields on the decomposed lattice.

A link ``U_mu(x)`` is the parallel transporter from ``x + mu`` to ``x`` (it multiplies ``psi(x+mu)``).
Storage: ``links`` has shape ``(ndim, *lattice.shape(depth), N, N)`` -- one padded site field per
direction (see :mod:`lattice_hpc.geometry.lattice` for the memory order), so ``links[mu]`` is a
contiguous field whose halo can be refreshed alone.

Halo bookkeeping: the field remembers, per direction, up to which codimension its halo is fresh
(0 = stale).  :meth:`GaugeField.U` refuses to return a shifted view that would read stale halo
data, which turns a forgotten halo refresh into an error instead of a silently wrong result.
"""

from __future__ import annotations

import numpy as np

from ..backend import Backend, DEFAULT
from ..geometry import Lattice
from ..rng import CounterRNG


class GaugeField:
    """Links ``U_mu(x)`` of group ``group`` on this rank's block, with a halo of depth ``depth``.

    Args:
        lattice: the decomposed lattice.
        group: a group from :mod:`lattice_hpc.groups`.
        backend: array module and precision.
        depth: halo depth (1 for plaquettes and staples; flows need 2 or more).
    """

    def __init__(self, lattice: Lattice, group, backend: Backend = DEFAULT, depth: int = 1):
        self.lattice = lattice
        self.group = group
        self.backend = backend
        self.depth = int(depth)
        xp = backend.xp
        self.links = xp.zeros((lattice.ndim,) + lattice.shape(depth) + (group.N, group.N),
                              dtype=backend.complex)
        self._fresh = [0] * lattice.ndim

    # -- construction ------------------------------------------------------------------------
    @classmethod
    def cold(cls, lattice, group, backend=DEFAULT, depth=1):
        """Every link the identity."""
        f = cls(lattice, group, backend, depth)
        f.set_interior(group.identity((lattice.ndim,) + lattice.shape(0), backend.xp, backend.complex))
        return f

    @classmethod
    def hot(cls, lattice, group, rng: CounterRNG, backend=DEFAULT, depth=1, purpose=("hot",)):
        """Haar-random links, link ``(x, mu)`` drawn from the counter ``(seed, x, purpose + (mu,))``."""
        f = cls(lattice, group, backend, depth)
        xp = backend.xp
        sites = xp.asarray(lattice.global_index)
        out = []
        for mu in range(lattice.ndim):
            p = tuple(purpose) + (mu,)
            if group.N == 1:
                out.append(group.haar_from_uniform(rng.uniform(p, sites, 1)[..., 0], backend.complex))
            else:
                out.append(group.haar(rng.normal(p, sites, group.haar_normals), backend.complex))
        f.set_interior(xp.stack(out))
        return f

    @classmethod
    def near_identity(cls, lattice, group, rng: CounterRNG, epsilon: float = 0.1, backend=DEFAULT,
                      depth=1, purpose=("near_identity",)):
        """``U = exp(epsilon X)``, ``X`` a Gaussian algebra element (unit normals in the ``T^a`` basis)."""
        f = cls(lattice, group, backend, depth)
        xp = backend.xp
        sites = xp.asarray(lattice.global_index)
        out = []
        for mu in range(lattice.ndim):
            coeff = rng.normal(tuple(purpose) + (mu,), sites, group.dim)
            out.append(group.exp(epsilon * group.algebra(coeff)).astype(backend.complex))
        f.set_interior(xp.stack(out))
        return f

    def copy(self) -> "GaugeField":
        f = GaugeField(self.lattice, self.group, self.backend, self.depth)
        f.links[...] = self.links
        f._fresh = list(self._fresh)
        return f

    # -- access ------------------------------------------------------------------------------
    @property
    def ndim(self) -> int:
        return self.lattice.ndim

    @property
    def N(self) -> int:
        return self.group.N

    def U(self, mu: int, shift=None):
        """View of ``U_mu(x + shift)`` over the interior sites ``x`` (shape ``(*local, N, N)``).

        Raises ``RuntimeError`` if the shift reads halo data that is not fresh.
        """
        if shift is not None:
            s = shift if not isinstance(shift, dict) else [shift.get(m, 0) for m in range(self.ndim)]
            needed = sum(1 for v in s if v)
            if needed > self._fresh[mu]:
                raise RuntimeError(f"halo of U_{mu} is stale (fresh to codim {self._fresh[mu]}, "
                                   f"need {needed}): call refresh() after updating links")
        return self.lattice.view(self.links[mu], self.depth, shift)

    def interior(self):
        """Copy of the interior links, shape ``(ndim, *local, N, N)``, on the backend."""
        return self.lattice.view(self.links, self.depth, None, lead=1).copy()

    def set_interior(self, values, mu: int | None = None) -> None:
        """Overwrite the interior links (all directions, or direction ``mu``); halo becomes stale."""
        if mu is None:
            self.lattice.view(self.links, self.depth, None, lead=1)[...] = values
            self._fresh = [0] * self.ndim
        else:
            self.lattice.view(self.links[mu], self.depth)[...] = values
            self._fresh[mu] = 0

    def mark_stale(self, mu: int | None = None) -> None:
        """Declare the halo of direction ``mu`` (or all) stale after an in-place update."""
        if mu is None:
            self._fresh = [0] * self.ndim
        else:
            self._fresh[mu] = 0

    # -- communication (documented points) -----------------------------------------------------
    def refresh(self, mu: int | None = None, codim: int = 2) -> None:
        """Collective: exchange the halo of all links (or of direction ``mu``) up to ``codim``.

        ``codim=1`` fills faces (enough for plaquettes), ``2`` adds edges (staples, clover leaves).
        """
        codim = min(codim, self.ndim)
        halo = self.lattice.halo(self.depth, codim)
        if mu is None:
            halo.exchange(self.links, lead=1)
            self._fresh = [codim] * self.ndim
        else:
            halo.exchange(self.links[mu], lead=0)
            self._fresh[mu] = codim

    def gather(self, root: int = 0):
        """Collective: the global field on ``root`` as a host array ``(ndim, *global, N, N)``.

        The global site axes are in memory order (t slowest, x fastest); ``None`` on other ranks.
        """
        lat = self.lattice
        blocks = lat.grid.gather_blocks(self.backend.asnumpy(self.interior()), root)
        if blocks is None:
            return None
        out = np.empty((lat.ndim,) + tuple(reversed(lat.dims)) + (self.N, self.N),
                       dtype=self.links.dtype)
        for coords, block in blocks:
            out[(slice(None),) + lat.block_slices(coords)] = block
        return out
