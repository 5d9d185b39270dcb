"""Two-flavour pseudofermions (Wilson, clover, Hasenbusch ratio, clover log det).

- every monomial's force is the derivative of its action along random algebra directions (central
  differences, relative 1e-6), with the pseudofermion held fixed;
- determinant bookkeeping against dense matrices: ``|det D|^2 = det(A_oo)^2 det(D_hat^dag D_hat)``
  (the odd blocks, not the even ones), the actions against dense inverses, and the monomials of
  :func:`two_flavour_monomials` (with and without Hasenbusch) add up to ``-log det(D^dag D)``;
- the heatbath: right after a refresh the action equals ``eta^dag eta``, with ``<|eta_i|^2> = 1``;
- a force solve stagnating just above ``force_tol`` is used and counted, an action solve never;
- the pseudofermion, its action and its force are the same on every process grid.
"""

import numpy as np
import pytest

from helpers import grids_run, on_grids
from lattice_hpc.backend import Backend
from lattice_hpc.comm import self_comm, world
from lattice_hpc.fermions import SchurOperator, WilsonDirac, gather_spinor, inner
from lattice_hpc.gauge import GaugeField
from lattice_hpc.geometry import Lattice
from lattice_hpc.groups import get_group
from lattice_hpc.hmc.pseudofermions import (CloverLogDet, HasenbuschRatio, TwoFlavour,
                                            gaussian_source, two_flavour_monomials)
from lattice_hpc.rng import CounterRNG
from lattice_hpc.solvers import SolverError

SU3 = get_group("SU3")
B = Backend("numpy", "double")
TIGHT = dict(force_tol=1e-13, action_tol=1e-13)
GRIDS = [(1, 1, 1, 1), (1, 1, 1, 2), (1, 1, 2, 2)]


def _lattice(dims):
    return Lattice(dims, (1,) * len(dims), comm=self_comm())


def _field(lat, epsilon=0.5, seed=4):
    U = GaugeField.near_identity(lat, SU3, CounterRNG(seed), epsilon=epsilon)
    U.refresh()
    return U


MONOMIALS = {
    "wilson": lambda: TwoFlavour(0.125, 0.0, name="wilson", **TIGHT),
    "clover": lambda: TwoFlavour(0.12, 1.5, name="clover", include_logdet=False, **TIGHT),
    "clover_with_logdet": lambda: TwoFlavour(0.12, 1.5, name="clover_ld", **TIGHT),
    "logdet": lambda: CloverLogDet(0.12, 1.5),
    "ratio_clover": lambda: HasenbuschRatio(0.12, 0.10, 1.5, name="ratio", **TIGHT),
    "ratio_wilson": lambda: HasenbuschRatio(0.125, 0.11, 0.0, name="ratio_w", **TIGHT),
}


def _directional(lat, X, F):
    return lat.comm.allreduce(float(sum((X[mu] @ F[mu]).diagonal(axis1=-2, axis2=-1).sum().real
                                        for mu in range(lat.ndim))))


@pytest.mark.parametrize("case", list(MONOMIALS))
def test_force_is_the_derivative_of_the_action(case):
    """d/d eps S(exp(eps X) U) at 0 equals sum Re Tr(X F) (relative 1e-6), phi fixed."""
    lat = _lattice((4, 4, 4, 4))
    U = _field(lat)
    m = MONOMIALS[case]()
    m.refresh(U, CounterRNG(7), 3)
    F = m.force(U)
    # an algebra field: anti-Hermitian and traceless
    assert np.abs(F + F.conj().swapaxes(-1, -2)).max() < 1e-12
    assert np.abs(np.trace(F, axis1=-2, axis2=-1)).max() < 1e-12
    worst = 0.0
    for k in range(2):
        X = np.stack([SU3.algebra(CounterRNG(5).normal(("dir", k, mu), lat.global_index, SU3.dim))
                      for mu in range(4)])
        predicted = _directional(lat, X, F)

        def S(eps):
            V = U.copy()
            V.set_interior(np.stack([SU3.exp(eps * X[mu]) @ U.U(mu) for mu in range(4)]))
            V.refresh()
            return m.action(V)

        h = 1e-5
        fd = (S(h) - S(-h)) / (2 * h)
        rel = abs(predicted - fd) / abs(fd)
        worst = max(worst, rel)
        assert rel < 1e-6, f"{case}: force {predicted!r} vs finite difference {fd!r} ({rel:.1e})"
    print(f"{case}: worst relative deviation {worst:.1e}")
    assert m.stats["forces"] == 1 and m.stats["actions"] == 4
    if not isinstance(m, CloverLogDet):
        assert m.stats["solves"] >= 5 and m.stats["iterations"] > 0


# -- dense determinants ------------------------------------------------------------------------

def _dense(apply, lat, sites_mask):
    """The matrix of ``apply`` restricted to the sites of ``sites_mask`` (columns: unit vectors)."""
    shape = lat.shape(0) + (4, 3)
    keep = np.broadcast_to(sites_mask[..., None, None], shape).ravel()
    idx = np.flatnonzero(keep)
    cols = []
    for i in idx:
        e = np.zeros(int(np.prod(shape)), dtype=complex)
        e[i] = 1.0
        cols.append(apply(e.reshape(shape)).ravel()[idx])
    return np.array(cols).T


def _logdet_blocks(A, mask):
    return float(np.linalg.slogdet(A)[1].sum(axis=-1)[mask].sum())


def _dense_schur_logdet(U, kappa, csw):
    """``log det(D_hat^dag D_hat)`` and ``log |det A_oo|`` (dense), and the dense ``D_hat``."""
    lat = U.lattice
    D = WilsonDirac(U, kappa, csw)
    even = lat.parity == 0
    Dh = _dense(SchurOperator(D).apply, lat, even)
    Aoo = _logdet_blocks(D.clover, lat.parity == 1) if csw else 0.0
    return 2 * np.linalg.slogdet(Dh)[1], Aoo, Dh


def test_determinant_bookkeeping_against_dense_matrices():
    lat = _lattice((2, 2, 2, 4))
    U = _field(lat, epsilon=0.7)
    kappa, csw = 0.12, 1.5
    D = WilsonDirac(U, kappa, csw)
    everything = np.ones(lat.shape(0), dtype=bool)
    full = 2 * np.linalg.slogdet(_dense(D.apply, lat, everything))[1]       # log |det D|^2
    schur, logA_oo, Dh = _dense_schur_logdet(U, kappa, csw)
    logA_ee = _logdet_blocks(D.clover, lat.parity == 0)
    # det D = det A_oo det D_hat: the odd blocks appear, and the even ones would not do
    assert abs(full - (2 * logA_oo + schur)) < 1e-10 * abs(full)
    assert abs(full - (2 * logA_ee + schur)) > 1e-3
    assert abs(logA_oo) > 1e-3
    # the log det monomial is -2 log det A_oo
    ld = CloverLogDet(kappa, csw)
    assert abs(ld.action(U) - (-2 * logA_oo)) < 1e-12 * abs(logA_oo)

    # the actions at a fixed phi against dense inverses
    even = lat.parity == 0
    sel = np.broadcast_to(even[..., None, None], lat.shape(0) + (4, 3))
    tf = TwoFlavour(kappa, csw, **TIGHT)
    tf.refresh(U, CounterRNG(11), 0)
    phi = tf.phi[sel]
    want = (phi.conj() @ np.linalg.solve(Dh.conj().T @ Dh, phi)).real - 2 * logA_oo
    assert abs(tf.action(U) - want) < 1e-10 * abs(want)
    kh = 0.10
    ratio = HasenbuschRatio(kappa, kh, csw, **TIGHT)
    ratio.refresh(U, CounterRNG(11), 0)
    Wh = _dense_schur_logdet(U, kh, csw)[2]
    v = Wh.conj().T @ ratio.phi[sel]
    want = (v.conj() @ np.linalg.solve(Dh.conj().T @ Dh, v)).real
    assert abs(ratio.action(U) - want) < 1e-10 * abs(want)

    # the monomials represent -log det(D^dag D) = -log |det D|^2 in all, with and without Hasenbusch
    for hk in (None, 0.10, [0.11, 0.09]):
        represented = 0.0
        mons = two_flavour_monomials(kappa, csw, hasenbusch_kappa=hk)
        for m in mons:
            if isinstance(m, CloverLogDet):
                represented += -2 * _dense_schur_logdet(U, m.kappa, csw)[1]
            elif isinstance(m, HasenbuschRatio):
                represented += (-_dense_schur_logdet(U, m.kappa, csw)[0]
                                + _dense_schur_logdet(U, m.kappa_heavy, csw)[0])
            else:
                sch, la, _ = _dense_schur_logdet(U, m.kappa, csw)
                represented += -sch - (2 * la if m.include_logdet else 0.0)
        assert abs(represented + full) < 1e-10 * abs(full), (hk, [m.name for m in mons])
        assert sum(isinstance(m, CloverLogDet) or getattr(m, "include_logdet", False)
                   for m in mons) == 1
        assert len({m.name for m in mons}) == len(mons)


def test_two_flavour_monomials_wiring():
    (m,) = two_flavour_monomials(0.125, 0.0)
    assert isinstance(m, TwoFlavour) and m.kappa == 0.125 and not m.include_logdet
    mons = two_flavour_monomials(0.125, 0.0, hasenbusch_kappa=0.11)
    assert [type(m) for m in mons] == [TwoFlavour, HasenbuschRatio]  # no log det for Wilson
    assert mons[0].kappa == 0.11 and (mons[1].kappa, mons[1].kappa_heavy) == (0.125, 0.11)
    mons = two_flavour_monomials(0.13, 1.0, hasenbusch_kappa=[0.12, 0.1], name="f")
    assert [m.name for m in mons] == ["f", "f_ratio1", "f_ratio0", "f_logdet"]
    assert [(m.kappa, m.kappa_heavy) for m in mons[1:3]] == [(0.12, 0.1), (0.13, 0.12)]
    assert mons[-1].kappa == 0.13 and not mons[0].include_logdet
    with pytest.raises(ValueError, match="decrease"):
        two_flavour_monomials(0.12, 1.0, hasenbusch_kappa=0.13)
    with pytest.raises(ValueError, match="kappa_heavy"):
        HasenbuschRatio(0.12, 0.12)


# -- heatbath ----------------------------------------------------------------------------------

@pytest.mark.parametrize("case", ["wilson", "clover", "ratio_clover", "ratio_wilson"])
def test_action_after_refresh_is_eta_squared(case):
    lat = _lattice((4, 4, 4, 8))
    U = _field(lat)
    m = MONOMIALS[case]()
    rng = CounterRNG(21)
    m.refresh(U, rng, 5)
    eta = gaussian_source(lat, rng, ("pseudofermion", m.name, 5), B)
    odd = lat.parity == 1
    assert np.all(eta[odd] == 0) and np.all(m.phi[odd] == 0)
    n = 12 * lat.volume // 2
    eta2 = inner(lat, eta, eta).real
    assert abs(eta2 / n - 1) < 0.1  # <|eta_i|^2> = 1 per complex component (std 0.018 here)
    re = eta[~odd].real.ravel()
    assert abs(np.var(re) - 0.5) < 0.05
    S = m.action(U)
    assert abs(S - eta2) < 1e-10 * eta2, f"{case}: S {S!r} vs eta^dag eta {eta2!r}"
    # another trajectory draws another field
    m.refresh(U, rng, 6)
    assert abs(m.action(U) - eta2) > 1e-3 * eta2


def test_failed_solve_names_the_monomial():
    lat = _lattice((4, 4, 4, 4))
    U = _field(lat)
    m = TwoFlavour(0.125, 1.0, name="pf_light", maxiter=3)
    m.refresh(U, CounterRNG(1), 0)
    with pytest.raises(SolverError, match="pf_light.*force.*maxiter=3"):
        m.force(U)
    with pytest.raises(RuntimeError, match="refresh"):
        TwoFlavour(0.12).action(U)


@pytest.mark.parametrize("case", ["wilson", "ratio_wilson"])
def test_a_force_solve_at_the_rounding_floor_is_used_and_counted(case, monkeypatch):
    """A force CG that stagnates (the solver's error carries ``x`` and a finite true residual)
    below ``FORCE_SLACK * force_tol`` gives the force of that ``x``, counted in ``stats``; above
    it, and for any action solve, the error is raised naming the monomial."""
    import lattice_hpc.hmc.pseudofermions as pf

    lat = _lattice((4, 4, 4, 4))
    U = _field(lat)
    m = MONOMIALS[case]()
    m.refresh(U, CounterRNG(7), 3)
    F_exact = m.force(U)
    real_cg, tol = pf.cg, m.force_tol

    def stagnating_at(true):
        def fake(S, b, **kw):
            res = real_cg(S, b, **kw)
            res.true_residual, res.converged = true, False
            raise SolverError("cg: the true residual stagnated", res)
        return fake

    monkeypatch.setattr(pf, "cg", stagnating_at(5 * tol))
    F = m.force(U)
    assert np.array_equal(F, F_exact)
    assert m.stats["inexact_forces"] >= 1 and m.stats["worst_force_residual"] == 5 * tol
    with pytest.raises(SolverError, match=f"monomial '{m.name}' \\(action"):
        m.action(U)
    monkeypatch.setattr(pf, "cg", stagnating_at(20 * tol))
    with pytest.raises(SolverError, match=f"monomial '{m.name}' \\(force"):
        m.force(U)


# -- decomposition independence ----------------------------------------------------------------

@pytest.mark.mpi
@pytest.mark.parametrize("case", ["clover_with_logdet", "ratio_clover"])
def test_pseudofermion_action_and_force_are_the_same_on_every_grid(case):
    dims = (4, 4, 4, 8)

    def body(lat):
        U = _field(lat, epsilon=0.5, seed=9)
        m = MONOMIALS[case]()
        m.refresh(U, CounterRNG(13), 2)
        S = m.action(U)
        F = m.force(U)
        holder = GaugeField(lat, SU3, U.backend)
        holder.set_interior(F)
        return gather_spinor(lat, m.phi), S, holder.gather()

    res = on_grids(dims, GRIDS, body)
    if world().rank == 0:
        phi0, S0, F0 = res["serial"]
        scale = np.abs(F0).max()
        assert scale > 1e-3
        for key in grids_run(res):
            phi, S, F = res[key]
            np.testing.assert_allclose(phi, phi0, rtol=0, atol=1e-12)
            assert abs(S - S0) < 1e-10 * abs(S0), (key, S, S0)
            assert np.abs(F - F0).max() < 1e-10 * scale, (key, np.abs(F - F0).max())


def test_leapfrog_energy_violation_scales_as_dt_squared():
    """With the momentum convention of :mod:`lattice_hpc.hmc.momenta` (dP/dt = F/2), a leapfrog
    trajectory of the Hasenbusch-preconditioned clover monomials violates H by O(dt^2)."""
    from lattice_hpc.hmc.momenta import draw_momenta, kinetic_energy, link_step, momentum_step

    lat = _lattice((4, 4, 4, 4))
    U0 = _field(lat, epsilon=0.3)
    mons = two_flavour_monomials(0.125, 1.0, hasenbusch_kappa=0.11, force_tol=1e-12,
                                 action_tol=1e-13)
    rng = CounterRNG(3)
    for m in mons:
        m.refresh(U0, rng, 0)

    def H(U, P):
        return kinetic_energy(lat, P) + sum(m.action(U) for m in mons)

    def force(U):
        return sum(m.force(U) for m in mons)

    dH = []
    for n in (4, 8):
        U, P = U0.copy(), draw_momenta(U0, rng, 0)
        H0, dt = H(U, P), 0.5 / n
        momentum_step(P, force(U), dt / 2)
        for i in range(n):
            link_step(U, P, dt)
            U.refresh()
            momentum_step(P, force(U), dt if i < n - 1 else dt / 2)
        dH.append(H(U, P) - H0)
    assert abs(dH[0]) > 1e-3 and 3.5 < dH[0] / dH[1] < 4.6, dH
