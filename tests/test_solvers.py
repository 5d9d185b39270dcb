"""Krylov solvers on the Wilson(-clover) operator: accuracy, agreement, failure, decomposition.

- CG on ``D^dag D``, CGNE and BiCGStab on ``D`` solve ``D x = b`` to a true relative residual below
  1e-10, recomputed here with the operator, and agree with each other;
- the residual history starts at 1, ends below ``tol`` and has one entry per iteration;
- mixed precision (complex64 inner solves) reaches the double-precision residual that a
  complex64 solve alone cannot reach, after more than one correction;
- impossible solves (too few iterations, a singular or indefinite operator) raise ``SolverError``
  carrying the history; a tolerance below the rounding floor of an ill-conditioned operator
  raises as stagnation, with ``x`` and the true residual reached;
- several right-hand sides give bitwise the single solves;
- the CGNE solution and its iteration count are the same on the process grids 1x1x1x1, 1x1x1x2,
  1x1x2x2, 2x1x1x2.
"""

import numpy as np
import pytest

from helpers import grids_run, on_grids
from lattice_hpc.backend import Backend
from lattice_hpc.comm import self_comm, world
from lattice_hpc.fermions import WilsonDirac, gather_spinor, random_spinor
from lattice_hpc.gauge import GaugeField
from lattice_hpc.geometry import Lattice
from lattice_hpc.groups import get_group
from lattice_hpc.rng import CounterRNG
from lattice_hpc.solvers import (SolveResult, SolverError, bicgstab, cg, cgne, mixed_precision,
                                 solve_many)

SU3 = get_group("SU3")
B = Backend("numpy", "double")
B32 = Backend("numpy", "single")
GRIDS = [(1, 1, 1, 1), (1, 1, 1, 2), (1, 1, 2, 2), (2, 1, 1, 2)]
DIMS = (4, 4, 4, 8)
TOL = 1e-10


def _lattice(dims=DIMS):
    return Lattice(dims, (1,) * len(dims), comm=self_comm())


def _hot(lat, seed=3):
    U = GaugeField.hot(lat, SU3, CounterRNG(seed))
    U.refresh()
    return U


def _single(U):
    """The same links in complex64."""
    Us = GaugeField(U.lattice, SU3, B32)
    Us.set_interior(U.interior().astype(np.complex64))
    Us.refresh()
    return Us


def _source(lat, name="b"):
    return random_spinor(lat, CounterRNG(11), (name,), B)


def _rel(v, b):
    return np.linalg.norm(v) / np.linalg.norm(b)


def _solve_all(D, b):
    """x = D^{-1} b by CG (on D^dag D x = D^dag b), CGNE and BiCGStab."""
    return {
        "cg": cg(D, D.apply_dagger(b), tol=1e-12, maxiter=500, apply=D.normal),
        "cgne": cgne(D, b, tol=TOL, maxiter=500),
        "bicgstab": bicgstab(D, b, tol=TOL, maxiter=500),
    }


@pytest.mark.parametrize("csw", [0.0, 1.0])
def test_cg_cgne_bicgstab_solve_the_dirac_equation_and_agree(csw):
    lat = _lattice()
    D = WilsonDirac(_hot(lat), kappa=0.12, csw=csw)
    b = _source(lat)
    res = _solve_all(D, b)
    for name, r in res.items():
        assert isinstance(r, SolveResult) and r.converged, name
        assert r.restarts == 0
        assert 5 < r.iterations < 500, name  # a real solve, not a shortcut
    # no restart was needed in double precision: the counts are those of the plain recursions
    # (CG: D^dag D per iteration + the final check; CGNE: D and D^dag per iteration + D^dag r_0
    # + the check; BiCGStab: two D per iteration + the check)
    assert res["cg"].operator_applications == 2 * res["cg"].iterations + 2
    assert res["cgne"].operator_applications == 2 * res["cgne"].iterations + 2
    assert res["bicgstab"].operator_applications == 2 * res["bicgstab"].iterations + 1
    # CG's own system D^dag D x = D^dag b, recomputed independently
    Db = D.apply_dagger(b)
    assert _rel(D.apply_dagger(D.apply(res["cg"].x)) - Db, Db) < 1e-12
    assert res["cg"].true_residual < 1e-12
    # every solver solves D x = b
    for name, r in res.items():
        assert _rel(D.apply(r.x) - b, b) < TOL, name
    for name in ("cgne", "bicgstab"):
        assert res[name].true_residual == pytest.approx(_rel(D.apply(res[name].x) - b, b), rel=1e-6)
    # and they agree with each other
    x = res["cg"].x
    for name in ("cgne", "bicgstab"):
        assert _rel(res[name].x - x, x) < 1e-9, name
    assert _rel(res["cgne"].x - res["bicgstab"].x, x) < 1e-9
    assert _rel(x - b, b) > 0.05  # the solution is not the source: D is not close to 1


def _free_spectrum(dims, kappa):
    """Distinct eigenvalues of the free Wilson ``D`` (antiperiodic time): ``m(p) +/- i s(p)``,
    ``m = 1 - 2 kappa sum_mu cos p_mu``, ``s = 2 kappa |sin p|``, and of ``D^dag D``: ``m^2 + s^2``."""
    grids = np.meshgrid(*[2 * np.pi * (np.arange(L) + (0.5 if mu == 3 else 0)) / L
                          for mu, L in enumerate(dims)], indexing="ij")
    m = 1 - 2 * kappa * sum(np.cos(p) for p in grids)
    s = 2 * kappa * np.sqrt(sum(np.sin(p) ** 2 for p in grids))
    d = {(round(a, 9), round(sign * b, 9)) for a, b in zip(m.ravel(), s.ravel()) for sign in (1, -1)}
    return d, np.unique(np.round(m ** 2 + s ** 2, 9))


def test_free_field_finite_termination():
    """In exact arithmetic CG on ``D^dag D`` (and CGNE, the same iterates) ends after as many
    iterations as ``D^dag D`` has distinct eigenvalues; rounding costs a few more.  A method
    that lost conjugacy (or steepest descent: condition number ~300) would need hundreds."""
    lat = _lattice()
    cold = GaugeField.cold(lat, SU3)
    cold.refresh()
    D = WilsonDirac(cold, 0.12)
    ev_D, ev_normal = _free_spectrum(DIMS, 0.12)
    assert len(ev_normal) == 40 and len(ev_D) == 80
    b = _source(lat)
    r_cg = cg(D, D.apply_dagger(b), tol=TOL, apply=D.normal)
    r_cgne = cgne(D, b, tol=TOL)
    r_bicg = bicgstab(D, b, tol=TOL)
    assert len(ev_normal) - 10 < r_cg.iterations <= len(ev_normal) + 4
    assert len(ev_normal) - 10 < r_cgne.iterations <= len(ev_normal) + 4
    assert r_bicg.iterations <= len(ev_D)  # each iteration raises the polynomial degree by 2
    for r in (r_cgne, r_bicg):
        assert _rel(D.apply(r.x) - b, b) < TOL


@pytest.mark.parametrize("solver", ["cg", "cgne", "bicgstab"])
def test_history_starts_at_one_and_ends_below_tol(solver):
    lat = _lattice()
    D = WilsonDirac(_hot(lat), kappa=0.12, csw=1.0)
    b = _source(lat)
    r = _solve_all(D, b)[solver]
    tol = 1e-12 if solver == "cg" else TOL
    assert r.history[0] == 1.0
    assert len(r.history) == r.iterations + 1
    assert r.history[-1] < tol
    assert all(h >= r.history[-1] for h in r.history[:-1])  # the minimum is at the end
    if solver == "cgne":  # CG on the normal equations minimises |b - D x| over the Krylov space
        assert all(h1 <= h0 * (1 + 1e-12) for h0, h1 in zip(r.history, r.history[1:]))
    assert r.seconds > 0


@pytest.mark.parametrize("method", ["cgne", "bicgstab"])
@pytest.mark.parametrize("csw", [0.0, 1.0])
def test_mixed_precision_reaches_the_double_precision_residual(csw, method):
    lat = _lattice()
    U = _hot(lat)
    D, D32 = WilsonDirac(U, 0.12, csw), WilsonDirac(_single(U), 0.12, csw)
    seen = set()

    class Low:  # D32, recording the precision its solves really run in
        lattice = D32.lattice
        dtype = D32.dtype

        def apply(self, v):
            seen.add(v.dtype)
            return D32.apply(v)

        def apply_dagger(self, v):
            seen.add(v.dtype)
            return D32.apply_dagger(v)

    b = _source(lat)
    r = mixed_precision(D, Low(), b, tol=TOL, inner_tol=1e-5, maxiter=1000, method=method)
    assert seen == {np.dtype(np.complex64)}
    assert r.x.dtype == np.complex128
    assert r.converged and r.restarts > 1
    assert _rel(D.apply(r.x) - b, b) <= TOL
    assert r.true_residual <= TOL and len(r.history) == r.iterations + 1
    # the single-precision operator alone cannot get there
    with pytest.raises(SolverError):
        cgne(D32, b.astype(np.complex64), tol=TOL, maxiter=300)


def test_solve_of_zero_source_is_zero():
    lat = _lattice()
    D = WilsonDirac(_hot(lat), 0.12)
    for solver in (cgne, bicgstab, cg):
        r = solver(D, D.zeros())
        assert r.converged and r.iterations == 0 and not np.any(r.x)


class Zero:
    """An operator that annihilates everything."""

    def __init__(self, lat):
        self.lattice = lat

    def apply(self, v):
        return np.zeros_like(v)

    apply_dagger = apply


def test_impossible_solves_raise_with_the_history():
    lat = _lattice()
    D = WilsonDirac(_hot(lat), 0.12, csw=1.0)
    b = _source(lat)
    # too few iterations
    for name, solver in [("cgne", cgne), ("bicgstab", bicgstab)]:
        with pytest.raises(SolverError) as info:
            solver(D, b, tol=1e-12, maxiter=3)
        exc = info.value
        assert exc.iterations == 3 and len(exc.history) == 4 and exc.history[0] == 1.0
        assert exc.history[-1] > 1e-12 and not exc.result.converged
        assert str(exc).startswith(name) and "maxiter=3" in str(exc)
    # CG on a negative definite operator: <p, A p> < 0 at once
    with pytest.raises(SolverError, match="cg: breakdown.*not positive definite") as info:
        cg(D, b, apply=lambda v: -D.normal(v))
    assert info.value.history == [1.0]
    # an operator that is zero
    for name, solver in [("cg", cg), ("cgne", cgne), ("bicgstab", bicgstab)]:
        with pytest.raises(SolverError, match=f"^{name}: breakdown") as info:
            solver(Zero(lat), b)
        assert info.value.history and info.value.history[0] == 1.0


def test_singular_free_wilson_operator_raises():
    """Free Wilson D at kappa = 1/8, periodic in all directions: constant spinors are zero modes."""
    lat = _lattice()
    cold = GaugeField.cold(lat, SU3)
    cold.refresh()
    D = WilsonDirac(cold, 0.125, bc=(1, 1, 1, 1))
    b = D.zeros()
    b[..., 0, 0] = 1.0
    assert np.abs(D.apply(b)).max() < 1e-14  # really a zero mode, so D x = b has no solution
    for name, solver in [("cgne", cgne), ("bicgstab", bicgstab)]:
        with pytest.raises(SolverError, match=f"^{name}: breakdown.*singular") as info:
            solver(D, b, maxiter=100)
        assert info.value.history[0] == 1.0


@pytest.mark.parametrize("solver", [cgne, bicgstab])
def test_solve_many_equals_single_solves_bitwise(solver):
    lat = _lattice()
    D = WilsonDirac(_hot(lat), 0.12, csw=1.0)
    sources = [_source(lat, f"b{i}") for i in range(3)]
    single = [solver(D, b, tol=TOL) for b in sources]
    for many in (solve_many(solver, D, sources, tol=TOL),
                 solve_many(solver, D, np.stack(sources), tol=TOL)):
        assert len(many) == 3
        for a, s in zip(many, single):
            assert np.array_equal(a.x, s.x)
            assert a.iterations == s.iterations and a.history == s.history
    assert not np.array_equal(single[0].x, single[1].x)


def test_solve_many_with_mixed_precision():
    lat = _lattice()
    U = _hot(lat)
    D, D32 = WilsonDirac(U, 0.12), WilsonDirac(_single(U), 0.12)
    sources = [_source(lat, f"b{i}") for i in range(2)]
    many = solve_many(mixed_precision, D, sources, op_low=D32, method="bicgstab")
    for r, b in zip(many, sources):
        assert np.array_equal(r.x, mixed_precision(D, D32, b, method="bicgstab").x)


@pytest.mark.mpi
@pytest.mark.parametrize("csw", [0.0, 1.0])
def test_cgne_solution_is_identical_on_every_grid(csw):
    def body(lat):
        D = WilsonDirac(_hot(lat, 7), 0.12, csw)
        r = cgne(D, random_spinor(lat, CounterRNG(8), ("b",), B), tol=TOL, maxiter=500)
        return gather_spinor(lat, r.x), r.iterations, r.true_residual

    res = on_grids(DIMS, GRIDS, body)
    want, iters, true = res["serial"]
    assert true < TOL
    for key in grids_run(res):
        got, n, t = res[key]
        assert n == iters, key
        assert t < TOL
        if got is not None:  # on the grid's root
            scale = np.linalg.norm(want)
            np.testing.assert_allclose(got / scale, want / scale, rtol=0, atol=1e-12)
    if world().rank == 0:
        assert len(grids_run(res)) == sum(np.prod(g) <= world().size for g in GRIDS)


class _IllConditioned:
    """``A = Q diag(lambda) Q^dag`` on the spinors of a small lattice: Hermitian positive definite,
    half its eigenvalues 1 and half ``lowest`` (CG's recursion converges in a few iterations),
    ``Q`` a random unitary (dense)."""

    def __init__(self, lat, lowest):
        self.lattice = lat
        n = int(np.prod(lat.shape(0) + (4, 3)))
        g = np.random.default_rng(5)
        q, _ = np.linalg.qr(g.normal(size=(n, n)) + 1j * g.normal(size=(n, n)))
        self.A = (q * np.where(np.arange(n) % 2 == 0, 1.0, lowest)) @ q.conj().T

    def apply(self, v):
        return (self.A @ v.ravel()).reshape(v.shape)


def test_stagnation_at_the_rounding_floor_raises_with_x_and_the_true_residual():
    """cond(A) = 1e6 (as D_hat^dag D_hat of the Schwinger model near kappa_c): ``|b - A x| / |b|``
    cannot go much below ``eps cond(A) ~ 1e-10`` in double precision, however far the recursion
    goes.  CG must say so (stagnation, not maxiter) and hand over ``x`` and the true residual it
    reached; the same system to a reachable tol converges."""
    lat = _lattice((2, 2, 2, 2))
    A = _IllConditioned(lat, 1e-6)
    b = _source(lat)
    with pytest.raises(SolverError, match="^cg: the true residual stagnated.*rounding floor") as info:
        cg(A, b, tol=1e-12, maxiter=1000)
    r = info.value.result
    true = _rel(b - A.apply(r.x), b)
    assert np.isfinite(r.true_residual) and not r.converged and r.iterations < 100
    assert 1e-12 < r.true_residual < 1e-8 and true < 1e-8
    ok = cg(A, b, tol=1e-8, maxiter=1000)
    assert ok.converged and _rel(b - A.apply(ok.x), b) < 1e-8
