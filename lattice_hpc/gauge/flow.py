"""Wilson (gradient) flow, the energy density along it, and the reference scale ``t0``.

M. Luscher, "Properties and uses of the Wilson flow in lattice QCD", JHEP 08 (2010) 071,
arXiv:1006.4518.

Action and flow.  The paper's Wilson action (its eq. (1.3)) is
``S_w(U) = (1/g0^2) sum_p Re tr(1 - U(p))`` with ``p`` running over all *oriented* plaquettes, so
``g0^2 S_w = 2 sum_x sum_{mu<nu} Re tr(1 - P_{mu nu}(x))``, which is
:func:`~lattice_hpc.gauge.action.wilson_action` at ``beta = 2N``.  The flow is
``dV_t(x,mu)/dt = Z_mu(x) V_t(x,mu)``, ``Z = -g0^2 d_{x,mu} S_w(V_t)``, with the Lie-algebra
derivative ``d_{x,mu} f = sum_a T^a d/ds f(exp(s T^a) V(x,mu))|_{s=0}`` and the generators of
:mod:`lattice_hpc.groups` (``Tr T^a T^b = -delta_ab / 2``, the paper's).  With the staple sum
``A_mu(x)`` of :mod:`.action` (``V_mu(x) A_mu(x)`` is the sum of the ``2 (ndim - 1)`` plaquettes that
start with the link ``(x, mu)``)::

    Z_mu(x) = -P_TA( V_mu(x) A_mu(x) )
            = -[ (Omega - Omega^dag)/2 - Tr(Omega - Omega^dag)/(2N) ],   Omega = V_mu(x) A_mu(x),

i.e. ``gauge_force(V, beta=2N) / 2`` in the convention of :mod:`.action`.  Along the flow
``d/dt [g0^2 S_w(V_t)] = -sum_{x,mu} |Z_mu(x)|^2`` with ``|X|^2 = -2 Tr X^2 = sum_a X_a^2``: the flow
is the steepest descent of ``S_w``.  In the abelian small-field limit it reads
``d theta_mu/dt = sum_nu d*_nu (d_nu theta_mu - d_mu theta_nu)``, the lattice ``dB_mu/dt = D_nu G_nu mu``
(the paper's eq. (1.1)), so a transverse plane wave of momentum ``p`` decays as
``exp(-t phat^2)``, ``phat_mu = 2 sin(p_mu / 2)``: the flow time has the continuum normalisation.

Integrator (the paper's appendix C, third order, local error ``O(eps^4)``)::

    W0 = V_t,  W1 = exp(Z0/4) W0,  W2 = exp(8/9 Z1 - 17/36 Z0) W1,
    V_{t+eps} = exp(3/4 Z2 - 8/9 Z1 + 17/36 Z0) W2,        Zi = eps Z(Wi),

with the exact group exponential of :mod:`lattice_hpc.groups`.  Any group of the package (SU(N) in
4D, U(1) in 2D) flows the same way.

Energy densities (averaged over the sites, see :mod:`.topology` for the clover one)::

    E_clover = (1/V) sum_x -sum_{mu<nu} Tr F_{mu nu}(x)^2      (= (1/4) G^a_{mu nu} G^a_{mu nu})
    E_plaq   = (1/V) sum_x 2 sum_{mu<nu} Re tr(1 - P_{mu nu}(x))

Both equal ``-sum_{mu<nu} Tr G_{mu nu}^2`` up to ``O(a^2)`` (``Re tr(1 - e^X) = -Tr X^2 / 2 + O(X^4)``
for ``X`` in su(N)), and ``E_plaq = g0^2 S_w / V`` (the action density of the paper's eq. (1.3)),
so ``E_plaq`` decreases at every step of the flow; ``E_clover`` is not a function of ``S_w`` and may
rise at first on a rough (hot) field.

``t0`` (CONVENTIONS.md): the flow time where ``t^2 <E_clover(t)> = 0.3``, interpolated between the
bracketing flow times (linear, or a cubic through the four nearest points).

Communication: each stage refreshes the halo of the new field (``GaugeField.refresh``); the
observables reduce over the lattice communicator.  The input field is never modified.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field as dc_field

import numpy as np

from ..errors import LatticeError
from ..groups.linalg import retrace
from .action import staple_sum
from .field import GaugeField
from .observables import plaquette_field
from .topology import clover_observables


class FlowError(LatticeError):
    """The flow did not reach what was asked of it (``t0`` beyond ``t_max``); names the limit."""


# -- the generator and one step ---------------------------------------------------------------
def flow_generator(V):
    """``Z_mu(x) = -P_TA(V_mu(x) A_mu(x))``, shape ``(ndim, *local, N, N)`` (halo fresh to codim 2)."""
    xp = V.backend.xp
    return xp.stack([-V.group.project_algebra(V.U(mu) @ staple_sum(V, mu))
                     for mu in range(V.ndim)])


def _new_field(like: GaugeField, links) -> GaugeField:
    """Collective: a field on ``like``'s lattice with interior ``links``, halo refreshed."""
    out = GaugeField(like.lattice, like.group, like.backend, max(1, like.depth))
    out.set_interior(links)
    out.refresh(codim=2)
    return out


def _exp_times(group, X, links):
    return group.exp(X).astype(links.dtype) @ links


def flow_step(V: GaugeField, eps: float) -> GaugeField:
    """Collective: one third-order Runge-Kutta step of size ``eps`` (a new field, halo refreshed).

    ``V`` must have its halo fresh to codim 2 (every field returned here has).
    """
    G = V.group
    Z0 = eps * flow_generator(V)
    W1 = _new_field(V, _exp_times(G, 0.25 * Z0, V.interior()))
    X = (8.0 / 9.0) * eps * flow_generator(W1) - (17.0 / 36.0) * Z0
    del Z0
    W2 = _new_field(V, _exp_times(G, X, W1.interior()))
    del W1
    Y = 0.75 * eps * flow_generator(W2) - X  # 3/4 Z2 - 8/9 Z1 + 17/36 Z0
    return _new_field(V, _exp_times(G, Y, W2.interior()))


def _steps(t_max: float, eps: float) -> list[float]:
    """Step sizes that reach ``t_max``: ``eps`` each, the last one shortened if needed."""
    if not eps > 0:
        raise ValueError(f"flow step eps must be positive (got {eps})")
    if t_max < 0:
        raise ValueError(f"flow time t_max must be >= 0 (got {t_max})")
    n = round(t_max / eps)
    if abs(n * eps - t_max) <= 1e-10 * max(t_max, eps):
        return [eps] * n
    n = math.ceil(t_max / eps)
    return [eps] * (n - 1) + [t_max - (n - 1) * eps]


def wilson_flow(U: GaugeField, t: float, eps: float) -> GaugeField:
    """Collective: the field ``V_t`` flowed from ``V_0 = U`` to time ``t`` in steps ``eps``.

    ``U`` is not modified (its halo need not be fresh); the result has its halo refreshed.
    """
    V = _new_field(U, U.interior())
    for h in _steps(t, eps):
        V = flow_step(V, h)
    return V


# -- observables ------------------------------------------------------------------------------
def energy_density_plaquette(U) -> float:
    """Collective: ``E_plaq = (1/V) sum_x 2 sum_{mu<nu} Re tr(1 - P_{mu nu}(x))`` (halo codim 1)."""
    local = 0.0
    for mu in range(U.ndim):
        for nu in range(mu + 1, U.ndim):
            local += float((U.N - retrace(plaquette_field(U, mu, nu))).sum())
    return 2.0 * U.lattice.comm.allreduce(local) / U.lattice.volume


@dataclass
class FlowResult:
    """Flow observables at the measured times (NumPy arrays) and the field at the last time.

    ``Q`` holds NaN where the topological charge is not defined (2D SU(N)).
    """

    t: np.ndarray
    E_clover: np.ndarray
    E_plaq: np.ndarray
    t2E: np.ndarray            # t^2 <E_clover(t)>
    Q: np.ndarray
    field: GaugeField = dc_field(repr=False)

    def as_dict(self) -> dict:
        return {"t": self.t.tolist(), "E_clover": self.E_clover.tolist(),
                "E_plaq": self.E_plaq.tolist(), "t2E": self.t2E.tolist(), "Q": self.Q.tolist()}


def _measure(V, t, rows, traceless):
    E, Q = clover_observables(V, traceless)
    rows.append((t, E, energy_density_plaquette(V), t * t * E, np.nan if Q is None else Q))


def flow_observables(U: GaugeField, eps: float, t_max: float, every: int = 1,
                     traceless: bool = False) -> FlowResult:
    """Collective: flow ``U`` to ``t_max`` in steps ``eps``, measuring every ``every`` steps.

    Measures at ``t = 0``, after every ``every``-th step and at ``t_max``: ``E_clover``, ``E_plaq``,
    ``t^2 E_clover`` and ``Q`` (clover charge in 4D, geometric in 2D U(1); ``traceless`` as in
    :mod:`.topology`).  ``U`` is not modified.
    """
    every = int(every)
    if every < 1:
        raise ValueError(f"every must be a positive number of steps (got {every})")
    V = _new_field(U, U.interior())
    rows: list = []
    _measure(V, 0.0, rows, traceless)
    steps = _steps(t_max, eps)
    t = 0.0
    for k, h in enumerate(steps, start=1):
        V = flow_step(V, h)
        t = t_max if k == len(steps) else k * eps
        if k % every == 0 or k == len(steps):
            _measure(V, t, rows, traceless)
    cols = [np.array(c, dtype=float) for c in zip(*rows)]
    return FlowResult(*cols, field=V)


# -- t0 ---------------------------------------------------------------------------------------
def t0_from_history(t, t2E, target: float = 0.3, method: str = "linear") -> float:
    """The first flow time where ``t^2 E`` crosses ``target``, interpolated.

    ``method="linear"`` interpolates between the two bracketing times; ``"cubic"`` solves the cubic
    through the four nearest points (exact for data that are a cubic in ``t``).  Raises
    :class:`FlowError` naming the last time if ``target`` is not reached.
    """
    t = np.asarray(t, dtype=float)
    y = np.asarray(t2E, dtype=float)
    if t.ndim != 1 or t.shape != y.shape or t.size == 0:
        raise ValueError("t and t2E must be one-dimensional arrays of the same, non-zero length")
    if method not in ("linear", "cubic"):
        raise ValueError(f"unknown interpolation {method!r}: use 'linear' or 'cubic'")
    above = np.nonzero(y >= target)[0]
    if above.size == 0:
        raise FlowError(f"t^2 E(t) did not reach {target} by t_max = {t[-1]:g} "
                        f"(largest value {y.max():.6g}): flow to a larger t_max")
    i = int(above[0])
    if i == 0:
        if y[0] == target:
            return float(t[0])
        raise FlowError(f"t^2 E(t) = {y[0]:.6g} is already above {target} at the first time "
                        f"t = {t[0]:g}: nothing brackets the crossing")
    if method == "linear" or t.size < 4:
        t1, t2, y1, y2 = t[i - 1], t[i], y[i - 1], y[i]
        return float(t1 + (target - y1) * (t2 - t1) / (y2 - y1))
    lo = min(max(i - 2, 0), t.size - 4)
    ts, ys = t[lo:lo + 4], y[lo:lo + 4]
    c = np.polyfit(ts - t[i - 1], ys - target, 3)  # 4 points: interpolation, exact for cubics
    roots = np.roots(c)
    width = t[i] - t[i - 1]
    real = [r.real + t[i - 1] for r in roots
            if abs(r.imag) <= 1e-9 * width and -1e-12 * width <= r.real <= width * (1 + 1e-12)]
    if not real:  # cubic without a root in the bracket: fall back to the straight line
        return t0_from_history(t, y, target, "linear")
    return float(min(real))


def find_t0(U: GaugeField, eps: float, t_max: float, target: float = 0.3,
            method: str = "linear", traceless: bool = False) -> float:
    """Collective: flow ``U`` until ``t^2 <E_clover>`` crosses ``target`` and interpolate ``t0``.

    Stops a few steps after the crossing; raises :class:`FlowError` (naming ``t_max``) if the target
    is not reached by ``t_max``.
    """
    V = _new_field(U, U.interior())
    ts, ys = [0.0], [0.0]
    steps = _steps(t_max, eps)
    extra = 2 if method == "cubic" else 0
    crossed_at = None
    for k, h in enumerate(steps, start=1):
        V = flow_step(V, h)
        t = t_max if k == len(steps) else k * eps
        E, _ = clover_observables(V, traceless)
        ts.append(t)
        ys.append(t * t * E)
        if crossed_at is None and ys[-1] >= target:
            crossed_at = k
        if crossed_at is not None and k >= crossed_at + extra:
            break
    if crossed_at is None:
        raise FlowError(f"t^2 E(t) did not reach {target} by t_max = {t_max:g} "
                        f"(largest value {max(ys):.6g} at t = {ts[int(np.argmax(ys))]:g}): "
                        f"flow to a larger t_max")
    return t0_from_history(ts, ys, target, method)
