"""The Wilson(-clover) Dirac operator in kappa normalization: the reference implementation.

Conventions (CONVENTIONS.md)::

    D psi(x) = A(x) psi(x) - kappa H psi(x),
    H psi(x) = sum_mu [ (1 - gamma_mu) U_mu(x) psi(x + mu) + (1 + gamma_mu) U_mu(x - mu)^dag psi(x - mu) ]
    A(x) = 1 + 2 kappa c_sw (i/4) sum_{mu, nu} sigma_{mu nu} F_{mu nu}(x)       (A = 1 for Wilson)

with the clover-leaf field strength ``F_{mu nu} = (1/8)(Q_{mu nu} - Q_{nu mu})`` (openQCD
``doc/dirac.pdf``), DeGrand-Rossi gammas (:mod:`.gamma`), and a phase per direction for hops
across the global boundary (default: periodic in space, antiperiodic in time).  ``D^dag`` is the
same with ``gamma_mu -> -gamma_mu`` (so ``D^dag = gamma_5 D gamma_5``, which the tests check
against the explicit form).  ``A`` commutes with ``gamma_5 = diag(1, 1, -1, -1)``: it is stored
as two 6x6 blocks per site (spins 0,1 and 2,3 with their colours).

Spinor fields are local arrays ``(L_t, ..., L_x, 4, 3)`` (memory order, no halo) on the backend's
array module; this module is written on that module only (NumPy or CuPy).

The same operator in 2D with U(1) links is the Schwinger model's (two-component spinors, Pauli
matrices, :mod:`.gamma`; fields ``(L_t, L_x, 2, 1)``); there ``kappa = 1 / (2 m0 + 4)``, the free
critical value is ``1/4``, and the sum over ``mu`` runs over the two directions.  Other gauge
groups and dimensions use ``spin_count(ndim)`` spins and ``N`` colours.  The fused kernels and the
clover term are those of 4D SU(3); any other field runs on the reference kernel.

Kernels: every operation here is one call of the generalised hopping operation of
:mod:`.kernels.base` (``out = alpha B chi + beta C H psi`` on a parity), done by the reference on the
array module or by the fused kernels compiled from ``kernels/wilson.cuh`` (g++ on the CPU, NVRTC on
the GPU); ``kernel="auto"`` picks the fused one.

Communication: the hopping term projects each spinor to half spinors (2 spins x 3 colours) with
``1 -/+ gamma_mu = R P`` (:func:`.gamma.projector`), packs the faces of the partitioned
directions -- ``P_- psi`` of the lower face (needed at ``-mu``) and ``U^dag P_+ psi`` of the upper
face (needed at ``+mu``) -- and hands them to :class:`lattice_hpc.comm.FaceExchange`: half the
bytes of a spinor halo, and no gauge-field halo at all.  The interior sites are computed while the
faces travel; the face sites follow.  Directions that are not partitioned wrap on-rank.
"""

from __future__ import annotations

import numpy as np

from ..backend import Backend
from ..gauge import GaugeField
from ..gauge.topology import clover_field_strength
from ..groups.linalg import dagger
from .gamma import gammas, sigma, spin_count
from .kernels import make_hopping

SPIN, COLOR = 4, 3  # of 4D SU(3), the fused kernels' layout


class WilsonDirac:
    """``D``, ``D^dag``, ``gamma_5``, the hopping term and its parity blocks on a decomposed lattice.

    Args:
        U: the gauge field (its halo is refreshed here, collectively, when ``csw != 0``): 4D
            SU(3), or any group in 2D or 4D on the reference kernel (2D U(1): the Schwinger model).
        kappa: hopping parameter, ``kappa = 1 / (2 m0 + 2 d)`` in ``d`` dimensions.
        csw: clover coefficient (0 for plain Wilson fermions).
        bc: phase per direction for hops across the global boundary (default ``+1`` in space,
            ``-1`` in time).
        kernel: ``"auto"``, ``"reference"``, ``"compiled"`` (CPU) or ``"cuda"`` (see :mod:`.kernels`).
        recon: link storage of the fused kernels: 18 reals, or 12 (the first two rows; the third
            is rebuilt as ``conj(row0 x row1)``, which needs links in SU(3), checked here).  The
            reference always uses whole links.

    Construction is collective only when ``csw != 0`` (the clover leaves need the gauge halo).
    """

    def __init__(self, U: GaugeField, kappa: float, csw: float = 0.0, bc=None, kernel: str = "auto",
                 clover=None, recon: int = 18):
        lat = U.lattice
        if lat.ndim not in (2, 4):
            raise ValueError(f"Wilson fermions are defined in 2 and 4 dimensions, not {lat.ndim}")
        self.spin, self.color = spin_count(lat.ndim), U.N
        #: whether the fused kernels (and the clover term) apply: 4D SU(3)
        self.fused = (lat.ndim, U.N) == (4, COLOR)
        if csw and not self.fused:
            raise ValueError(f"the clover term is implemented for 4D SU(3), not a {lat.ndim}D "
                             f"field with {U.N} colour(s): set csw = 0")
        self.gauge_field = U
        self.lattice, self.kappa, self.csw = lat, float(kappa), float(csw)
        self.backend = U.backend
        xp = self.xp = U.backend.xp
        self.dtype = U.backend.complex
        self.bc = tuple(bc) if bc is not None else (1,) * (lat.ndim - 1) + (-1,)
        if len(self.bc) != lat.ndim:
            raise ValueError(f"bc needs one phase per direction ({lat.ndim}), got {len(self.bc)}")
        self.links = [xp.ascontiguousarray(U.U(mu)) for mu in range(lat.ndim)]
        self.upper_boundary = [o + L == D for o, L, D in zip(lat.origin, lat.local_dims, lat.dims)]
        self.lower_boundary = [o == 0 for o in lat.origin]
        self._g5 = xp.asarray(np.diag(gammas(lat.ndim)[1]).real.reshape(self.spin, 1),
                              dtype=U.backend.real)
        if clover is not None:
            self.clover = xp.asarray(clover, dtype=self.dtype)
        else:
            self.clover = self._clover_blocks(U) if self.csw else None
        self._clover_inv = None
        self.kernel_name, self.recon = kernel, int(recon)
        if self.recon not in (18, 12):
            raise ValueError(f"recon must be 18 or 12, got {recon}")
        if self.recon == 12:
            self._check_special_unitary()
        self.hopping = make_hopping(self, kernel)

    def converted(self, precision: str | None = None, kernel: str | None = None,
                  array: str | None = None, recon: int | None = None) -> "WilsonDirac":
        """The same operator at another precision (e.g. ``"single"`` for mixed-precision solves),
        with another kernel or link storage, or on another array module (``"numpy"``/``"cupy"``).

        The links and clover blocks are rounded from this operator's, not recomputed.
        """
        U = self.gauge_field
        backend = Backend(array or U.backend.name, precision or U.backend.precision)
        low = GaugeField(U.lattice, U.group, backend, U.depth)
        low.links[...] = backend.asarray(U.backend.asnumpy(U.links), dtype=backend.complex)
        low._fresh = list(U._fresh)
        clover = None if self.clover is None else backend.asarray(U.backend.asnumpy(self.clover))
        return WilsonDirac(low, self.kappa, self.csw, self.bc, kernel or self.kernel_name,
                           clover=clover, recon=recon or self.recon)

    def _check_special_unitary(self):
        """``recon=12`` rebuilds the third row from the first two: refuse links that are not SU(3)."""
        xp = self.xp
        tol = 1e-12 if self.backend.precision == "double" else 1e-5
        if not self.fused:
            raise ValueError("recon=12 is a storage of the fused kernels: 4D SU(3) links only")
        eye = xp.eye(COLOR, dtype=self.dtype)
        for mu, u in enumerate(self.links):
            third = xp.conj(xp.cross(u[..., 0, :], u[..., 1, :]))
            err = float(xp.abs(u @ dagger(u) - eye).max()) + float(xp.abs(u[..., 2, :] - third).max())
            if err > tol:
                raise ValueError(f"recon=12 needs links in SU(3): U_{mu} is off by {err:.1e} "
                                 "(project the field, or use recon=18)")

    # -- fields ------------------------------------------------------------------------------
    def shape(self) -> tuple:
        return self.lattice.shape(0) + (self.spin, self.color)

    @property
    def site_shape(self) -> tuple:
        """``(spins, colours)`` of a site of the spinor fields."""
        return (self.spin, self.color)

    def zeros(self):
        return self.xp.zeros(self.shape(), dtype=self.dtype)

    def gamma5(self, psi):
        """``gamma_5 psi`` (diagonal in this basis)."""
        return psi * self._g5

    # -- the operator ------------------------------------------------------------------------
    def dslash(self, psi, chi=None, alpha=0.0, B=None, beta=1.0, C=None, dagger=False, parity=None):
        """Collective: ``alpha B chi + beta C H psi`` on ``parity`` (see :mod:`.kernels.base`)."""
        return self.hopping.dslash(psi, chi, alpha, B, beta, C, dagger, parity)

    def apply(self, psi):
        """Collective: ``D psi = A psi - kappa H psi``."""
        return self.dslash(psi, psi, 1.0, self.clover, -self.kappa)

    def apply_dagger(self, psi):
        """Collective: ``D^dag psi`` (``gamma_mu -> -gamma_mu``; ``A`` is Hermitian)."""
        return self.dslash(psi, psi, 1.0, self.clover, -self.kappa, dagger=True)

    def normal(self, psi):
        """Collective: ``D^dag D psi``."""
        return self.apply_dagger(self.apply(psi))

    def diagonal(self, psi, parity=None):
        """``A psi`` (the site-diagonal part), on ``parity`` (all sites if None)."""
        return self.apply_diagonal(self.clover, psi, parity)

    def apply_diagonal(self, blocks, psi, parity=None):
        """``blocks psi`` on ``parity`` (``blocks=None``: the identity)."""
        if blocks is None:
            out = psi.copy()
            if parity is not None:
                out *= self.hopping.parity_mask(parity)
            return out
        return self.hopping.apply_blocks(blocks, psi, parity)

    def hop(self, psi, dagger: bool = False, parity=None):
        """Collective: ``H psi`` (``dagger``: with ``gamma_mu -> -gamma_mu``), on ``parity``."""
        return self.dslash(psi, None, 0.0, None, 1.0, None, dagger, parity)

    @property
    def clover_inv(self):
        """``A^{-1}`` per site as ``(..., 2, 6, 6)`` blocks (None for Wilson fermions)."""
        if self.clover is None:
            return None
        if self._clover_inv is None:
            self._clover_inv = self.xp.ascontiguousarray(self.xp.linalg.inv(self.clover))
        return self._clover_inv

    # -- clover --------------------------------------------------------------------------------
    def _clover_blocks(self, U: GaugeField):
        """``A = 1 + 2 kappa c_sw (i/4) sum_{mu,nu} sigma_{mu nu} F_{mu nu}`` as ``(..., 2, 6, 6)``."""
        xp = self.xp
        U.refresh()  # collective: the leaves reach x +/- mu +/- nu
        c = 2.0 * self.kappa * self.csw * 0.25j * 2.0  # sum over mu<nu counts each pair twice
        shape = self.lattice.shape(0)
        A = xp.zeros(shape + (2, 6, 6), dtype=self.dtype)
        for mu in range(4):
            for nu in range(mu + 1, 4):
                F = field_strength(U, mu, nu)
                s = sigma(mu, nu)
                for b in range(2):
                    sb = xp.asarray(s[2 * b:2 * b + 2, 2 * b:2 * b + 2], dtype=self.dtype)
                    A[..., b, :, :] += c * xp.einsum("ab,...ij->...aibj", sb, F).reshape(shape + (6, 6))
        A += xp.eye(6, dtype=self.dtype)
        return A


def field_strength(U: GaugeField, mu: int, nu: int):
    """Clover-leaf ``F_{mu nu}(x) = (1/8)(Q_{mu nu} - Q_{nu mu})`` over the interior (halo codim 2):
    :func:`lattice_hpc.gauge.topology.clover_field_strength`, the one implementation."""
    return clover_field_strength(U, mu, nu)
