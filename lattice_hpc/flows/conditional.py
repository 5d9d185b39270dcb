"""A learned conditional flow for the pseudofermion given the gauge field, ``q_theta(phi | U)``
(issue 14; ``[fermions] proposal = "learned"`` of a flow job with ``determinant =
"pseudofermion"``).

The joint target of the ``pseudofermion`` route (:mod:`.determinant`; Abbott et al. arXiv
2207.08945) is ``p(U, phi) ~ exp(-S_g(U) - phi^dag (M^dag M)^{-1} phi)``, so the exact
conditional ``p(phi | U)`` is the Gaussian ``phi = M^dag eta``.  A proposal needs a conditional
whose density is tractable.  This one is the affine, gauge-equivariant map of the complex
Gaussian ``eta`` (``P ~ exp(-eta^dag eta)``)

    phi(x) = s(x) [M_c(U)^dag eta](x),   s(x) = exp(a + b P(x)),   M_c = (1 - k^2 L_c)(1 - k^2 R_c),

with ``L_c``, ``R_c`` the two-hop hopping term of the even/odd operator split into the parts below
and above the diagonal in the global site order and weighted per path class (straight, bent;
:mod:`lattice_hpc.fermions.triangular`).  ``M_c`` is unit triangular, so ``det M_c = 1`` for
every ``c``; ``P(x)`` is the gauge-invariant local plaquette (``(1/N) Re Tr`` of the
``2 d (d - 1)`` plaquettes that touch ``x``, averaged), so the site-dependent scale keeps the
map gauge covariant, and the density is exact:

    log q(phi | U) = -eta^dag eta - 2 n_s sum_{x even} (a + b P(x)) - n log pi,

``n_s`` = spins x colours, ``n = (V/2) n_s``.  The scale is what lets a proposal carry part of
``det M`` itself, which no determinant-one operator can: to leading order of the hopping
expansion ``log det(M^dag M)`` is a constant plus a multiple of the plaquette sum (the closed
four-hop loops of ``tr K^2`` are the plaquettes), and ``exp(2 n_s b sum_{x even} P(x))`` is a
factor of that kind: each plaquette has two even corners, so ``sum_{x even} P(x)`` is half the
plaquette sum.  (With the plaquette based at ``x`` alone, the even sites would see half of the
plaquettes; on hot 6x6 U(1) fields at ``kappa = 0.25`` that sum correlates with ``log det`` at
0.49, the whole sum at 0.69.)
``theta = (a, b, c_R, c_L)`` (six real numbers per Hasenbusch factor; ``a = b = 0``, ``c = 1`` is
the ``triangular`` proposal) is trained by the reverse KL of the conditional, averaged over the
flow's own proposals ``U ~ q(U)``:

    KL_j(theta) = E_{U, eta} [ S_j(U, phi_j) - eta^dag eta - 2 n_s sum_x log s_j(x) ] + E_U log det_j(U),

``S_j`` the action of factor ``j`` (``phi^dag (M_1^dag M_1)^{-1} phi``, or the Hasenbusch ratio's
``phi^dag M_j (M_{j+1}^dag M_{j+1})^{-1} M_j^dag phi``); the last term does not depend on
``theta``.  With ``A`` the map ``eta -> phi`` and ``X_j`` the kernel of ``S_j``, its minimum 0 is
reached when ``A^dag X_j A = 1``.  The chain's fermion part of ``log w`` is ``-S_j + eta^dag eta
+ 2 n_s sum_x log s_j(x)`` (the whole ``log q``, up to ``n log pi``); at that minimum it equals
``log det_j(U)`` for every ``eta`` (no variance given ``U``).  The gradient is exact and costs
one solve per sample (the solve of ``S_j`` itself): with ``g = dS/dphi^*`` (``(M^dag M)^{-1}
phi``, or ``M_j (M_{j+1}^dag M_{j+1})^{-1} M_j^dag phi``), ``g_s = s g`` (site by site),
``x = gamma_5 eta``, ``r = x - k^2 R_{c_L} x`` and ``phi = s gamma_5 (r - k^2 L_{c_R} r)``
(:meth:`TriangularSchur.apply_dagger`),

    dS/dc_{L,k}  = -2 k^2 Re < gamma_5 (g_s - k^2 R_{c_R} g_s), R_k x >,
    dS/dc_{R,k}  = -2 k^2 Re < gamma_5 g_s, L_k r >,
    dS/da        =  2 Re < g, phi >,       dS/db = 2 Re < g, P phi >,

(``X_{c_Y}`` the triangle ``X`` weighted with the coefficients ``c_Y`` of triangle ``Y``, ``R_k``,
``L_k`` the unweighted classes), and Adam (torch) takes the steps.  Training happens once, after the
flow's training and before the first proposal, on ``fermions.conditional_steps`` batches of
``fermions.conditional_batch`` proposals of the trained flow (prior counters
``("flow-cond-z", step)``, Gaussians ``("flow-cond", j, step, b)`` of the sampling seed), so it
is the same on every process grid (to rounding) and on resume; the parameters are then fixed
for the whole chain (an independence chain needs a fixed proposal) and checkpointed with it.
The history's ``theta`` of step ``k`` is the one before that step's update.

The parameters are global; coefficients from a context network on the plaquettes (site-dependent
weights of the path classes, a richer ``s(x)``) would keep every property above (``det M_c =
1``, covariance, a tractable Jacobian) and are the next step.

Where it helps (``tools/validate_flow_fermions.py --only conditionals``): it is trained on the
flow's proposals, so it is as good as ``q(U)`` is near the target.  With a pure-gauge flow near
the critical ``kappa`` the proposals include near-singular fields that ``p(U)`` suppresses by
``det``; their huge ``S_j`` dominate the KL, and the trained scale can lower the acceptance
(validation/flow_fermions/pf_learned_schwinger_L8_b2_k0.276.toml).  Train the gauge flow with
fermions first.
"""

from __future__ import annotations

import numpy as np
import torch

from ..errors import FlowError
from ..fermions import SchurOperator, WilsonDirac, inner
from ..fermions.triangular import TriangularSchur
from ..hmc.pseudofermions import gaussian_source
from .fermions import _normal_solve

#: parameter order per factor: a, b (s(x) = exp(a + b P(x))), c_R (straight, bent), c_L (straight, bent)
N_PARAMS = 6


class LearnedConditional:
    """``phi_j = s_j M_{c_j}(U)^dag eta`` per Hasenbusch factor ``j`` (module docstring).

    Args:
        lattice: the flow's block.
        kappas: ``kappa`` of each factor's triangular operator (``k_1``, then ``r_j``).
        levels: the operator ``kappa`` s ``(k_1, ..., k_m, kappa)`` of the factors' actions.
        bc: boundary phases of the Wilson operator.
        tol: of the solves.
    """

    def __init__(self, lattice, kappas, levels, bc=None, tol: float = 1e-12):
        self.lattice, self.kappas, self.levels = lattice, tuple(kappas), tuple(levels)
        self.bc, self.tol = bc, float(tol)
        theta = np.zeros((len(self.kappas), N_PARAMS))
        theta[:, 2:] = 1.0
        self.theta = theta
        self.trained = False
        self.history: list[dict] = []
        self._paths = None
        self._site_shape = None

    # -- parameters ------------------------------------------------------------------------------
    def log_scale(self, field, j: int):
        """``log s_j(x) = a + b P(x)`` on this rank's sites (an array of the backend's module)."""
        from ..gauge.observables import planes, plaquette_field
        from ..groups.linalg import retrace

        lat, xp = self.lattice, field.backend.xp
        padded = xp.zeros(lat.shape(1), dtype=np.float64)
        P = 0.0
        for mu, nu in planes(field.ndim):  # the four plaquettes of the plane that touch x
            lat.view(padded, 1)[...] = retrace(plaquette_field(field, mu, nu))
            lat.halo(1, 2).exchange(padded)  # collective; corners for the diagonal shift
            P = P + sum(lat.view(padded, 1, d) for d in ({}, {mu: -1}, {nu: -1}, {mu: -1, nu: -1}))
        P = P / (4 * field.N * len(planes(field.ndim)))
        return self.theta[j, 0] + self.theta[j, 1] * P, P

    def site_shape(self, field) -> tuple:
        """``(spins, colours)`` of the pseudofermions on ``field``'s lattice."""
        if self._site_shape is None:
            self._site_shape = WilsonDirac(field, self.kappas[0], 0.0, self.bc).site_shape
        return self._site_shape

    def coeffs(self, j: int) -> np.ndarray:
        """``[[c_R straight, c_R bent], [c_L straight, c_L bent]]`` of factor ``j``."""
        return self.theta[j, 2:].reshape(2, 2)

    def state(self) -> list:
        return [[float(v) for v in row] for row in self.theta]

    def load(self, values) -> None:
        theta = np.asarray(values, dtype=np.float64)
        if theta.shape != self.theta.shape:
            raise FlowError(f"the checkpoint's learned conditional has shape {theta.shape}, "
                            f"the job's {self.theta.shape} (fermions.hasenbusch changed?)")
        self.theta, self.trained = theta, True

    # -- the map -----------------------------------------------------------------------------------
    def operator(self, field, j: int) -> TriangularSchur:
        """Collective: ``M_{c_j}`` on ``field`` (a refreshed gauge field)."""
        if self._paths is None:
            self._paths = TriangularSchur.paths_of(self.lattice, field.backend.xp)
        return TriangularSchur(WilsonDirac(field, self.kappas[j], 0.0, self.bc), self._paths,
                               self.coeffs(j))

    def propose(self, field, j: int, eta):
        """``(phi_j = s_j M_{c_j}^dag eta, log |det dphi/deta|^2 = 2 n_s sum_{x even} log
        s_j(x))`` (collective)."""
        T = self.operator(field, j)
        ls, _ = self.log_scale(field, j)
        even = T.even[..., 0, 0]
        ns = int(np.prod(T.D.site_shape))
        jac = 2.0 * ns * float(self.lattice.comm.allreduce(float((ls * even).sum())))
        return T.D.xp.exp(ls)[..., None, None] * T.apply_dagger(eta), jac

    def _factor_action(self, field, j: int, phi):
        """``(S_j, g = dS_j/dphi^*)`` of factor ``j`` (collective, one solve)."""
        top = SchurOperator(WilsonDirac(field, self.levels[j], 0.0, self.bc))
        if j == 0:
            psi = _normal_solve(top, phi, self.tol, 10_000, "learned conditional").x
            return float(inner(self.lattice, phi, psi).real), psi
        low = SchurOperator(WilsonDirac(field, self.levels[j - 1], 0.0, self.bc))
        chi = low.apply_dagger(phi)
        psi = _normal_solve(top, chi, self.tol, 10_000, "learned conditional").x
        return float(inner(self.lattice, chi, psi).real), low.apply(psi)

    def objective(self, field, j: int, eta) -> tuple[float, np.ndarray, float]:
        """Collective: ``(S_j - eta^dag eta - 2 n_s sum_x log s_j(x), its gradient in theta_j,
        the fermion part -S_j + eta^dag eta + 2 n_s sum_x log s_j(x) of log w)`` for one field
        and one Gaussian ``eta``."""
        T = self.operator(field, j)
        D, k2, lat = T.D, self.kappas[j] ** 2, self.lattice
        xp = D.xp
        c = self.coeffs(j)
        swapped = np.stack([c[1], c[0]])
        ls, P = self.log_scale(field, j)
        even = T.even[..., 0, 0]
        sx = (xp.exp(ls) * even)[..., None, None]
        x = D.gamma5(eta)
        rx = T.triangle_parts(x, False)                          # R_k x
        r = x - k2 * (swapped[0, 0] * rx[0] + swapped[0, 1] * rx[1])
        lr = T.triangle_parts(r, True)                           # L_k r
        phi = sx * D.gamma5(r - k2 * (swapped[1, 0] * lr[0] + swapped[1, 1] * lr[1]))
        S, g = self._factor_action(field, j, phi)
        gs = sx * g
        g5g = D.gamma5(gs)
        h = D.gamma5(gs - k2 * T._triangle(gs, False, c))        # gamma5 (g_s - k^2 R_{c_R} g_s)
        ns = int(np.prod(D.site_shape))
        sums = lat.comm.allreduce(np.array([float((ls * even).sum()), float((P * even).sum())]))
        jac = 2.0 * ns * float(sums[0])
        eta2 = float(inner(lat, eta, eta).real)
        grad = np.zeros(N_PARAMS)
        grad[0] = 2.0 * float(inner(lat, g, phi).real) - 2.0 * ns * (lat.volume // 2)
        grad[1] = 2.0 * float(inner(lat, g, P[..., None, None] * phi).real) - 2.0 * ns * float(sums[1])
        for k in range(2):
            grad[2 + k] = -2.0 * k2 * float(inner(lat, g5g, lr[k]).real)   # c_R
            grad[4 + k] = -2.0 * k2 * float(inner(lat, h, rx[k]).real)     # c_L
        return S - eta2 - jac, grad, eta2 - S + jac

    # -- training ----------------------------------------------------------------------------------
    def train(self, fields_of_step, rng, steps: int, lr: float, gather=None, log=None) -> None:
        """Collective: ``steps`` Adam steps on the mean objective of each step's fields.

        ``fields_of_step(step)`` returns ``(global sample indices, refreshed gauge fields)`` of
        this replica's share of the step's batch; ``gather`` (``Parallel.gather``) joins the
        replicas' per-sample values in sample order, so every rank takes the same step."""
        theta = torch.tensor(self.theta, dtype=torch.float64, requires_grad=True)
        opt = torch.optim.Adam([theta], lr=lr)
        gather = gather or (lambda v: v)
        for step in range(steps):
            samples, fields = fields_of_step(step)
            per = []
            for b, field in zip(samples, fields, strict=True):
                row = []
                for j in range(len(self.kappas)):
                    eta = gaussian_source(self.lattice, rng, ("flow-cond", j, int(step), int(b)),
                                          field.backend, site_shape=self.site_shape(field))
                    obj, grad, lwf = self.objective(field, j, eta)
                    row.append(np.concatenate([[obj, lwf], grad]))
                per.append(row)
            allv = gather(np.asarray(per, dtype=np.float64))        # (B, factors, 2 + N_PARAMS)
            if not np.all(np.isfinite(allv)):
                raise FlowError(f"learned conditional, step {step}: a non-finite objective or "
                                "gradient")
            mean = allv.mean(axis=0)
            self.history.append({"step": step, "objective": [float(v) for v in mean[:, 0]],
                                 "log_w_fermion_var": [float(v) for v in allv[:, :, 1].var(axis=0, ddof=1)]
                                 if len(allv) > 1 else None,
                                 "theta": self.state()})
            if log is not None and (step % 10 == 0 or step == steps - 1):
                log(f"learned conditional step {step + 1}/{steps}: objective "
                    + " ".join(f"{v:.3f}" for v in mean[:, 0]) + "  var(log w_f) "
                    + " ".join(f"{v:.3f}" for v in (self.history[-1]["log_w_fermion_var"] or [])))
            opt.zero_grad()
            theta.grad = torch.from_numpy(mean[:, 2:].copy())
            opt.step()
            self.theta = theta.detach().numpy().copy()
        self.trained = True


__all__ = ["LearnedConditional", "N_PARAMS"]
