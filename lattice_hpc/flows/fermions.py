"""Two-flavour Wilson fermions inside the flows: differentiable fermion actions that run on the
project's Dirac operator, solvers and fermion force (issue 14).

The flows hold links as PyTorch tensors (U(1) as angles, SU(N) as complex matrices); the Dirac
operator, its solvers and its derivative (:mod:`lattice_hpc.fermions`, :mod:`lattice_hpc.hmc.
fermion_force`) run on the backend's array module.  The functions here join the two with
:class:`torch.autograd.Function` s whose forward pass solves with the project's solvers and whose
backward pass is the project's fermion force, so training and sampling use the same kernels as
HMC, decomposed over the ranks like everything else.  The tensors cross without a copy: on the
CPU, ``Tensor.numpy()`` shares the memory; on a GPU, DLPack hands the CUDA buffer to CuPy.

Two actions of the links ``U`` (``M = D_hat``, the even/odd Schur complement of the Wilson
operator, :mod:`lattice_hpc.fermions.evenodd`; ``det D = det D_hat`` for Wilson fermions):

- :func:`pseudofermion_action`: ``S_pf(U) = phi^dag (M^dag M)^{-1} phi`` for a fixed
  pseudofermion ``phi`` (even sites).  Forward: CG on ``M^dag M``; with ``psi = (M^dag M)^{-1}
  phi`` and ``chi = M psi``, ``dS_pf = -2 Re <chi, dM psi>`` (the two-flavour force of
  :mod:`lattice_hpc.hmc.pseudofermions`).
- :func:`logdet_action`: ``S_det(U) = -log det(D^dag D) = -2 log|det M|`` from a dense LU of
  ``M`` (small volumes: the matrix has ``(V/2 * spins * colours)^2`` entries and is assembled on
  every rank, column by column, from the operator itself).  ``d log|det M| = Re Tr(M^{-1} dM)``
  is evaluated as hopping insertions ``Re <M^{-dag} e_j, dM e_j>`` over the unit vectors ``e_j``
  of the even sites, in chunks.

Both return the *global* value per sample, the same bits on every rank (the solves and the
determinant are collective), and are added to the global gauge action (after
:func:`lattice_hpc.comm.autograd.sum_over_ranks`).  Their backward returns, on each rank, the
gradient of that global value with respect to this rank's links, which is what the reduction of
parameter gradients (:func:`~lattice_hpc.comm.autograd.allreduce_gradients`) needs.

Gradient convention (PyTorch's for real functions of complex tensors): ``g`` with
``dS = sum Re Tr(g^dag dU)``, :meth:`lattice_hpc.hmc.fermion_force.DiracDerivative.link_gradient`.
For U(1) the angles pass through ``U = exp(i theta)`` in torch, so autograd applies the chain rule.

Wilson fermions only (no clover term) in this module; the boundary phases are the operator's
(default: antiperiodic in time).  Collective: every rank calls these functions, and the backward
passes that contain them, together.
"""

from __future__ import annotations

import numpy as np
import torch

from ..backend import Backend
from ..fermions import SchurOperator, WilsonDirac
from ..fermions.spinor import inner
from ..gauge import GaugeField
from ..hmc.fermion_force import DiracDerivative
from ..solvers import SolverError, cg

EVEN = 0


# -- tensors <-> the array module ------------------------------------------------------------------

def _to_array(t: torch.Tensor):
    """The same memory as an array of the backend's module (NumPy on CPU, CuPy via DLPack)."""
    t = t.detach().contiguous()
    if t.is_cuda:
        import cupy

        return cupy.from_dlpack(t)
    return t.numpy()


def _to_tensor(a, like: torch.Tensor) -> torch.Tensor:
    if like.is_cuda:
        return torch.from_dlpack(a)
    return torch.from_numpy(np.ascontiguousarray(a)).to(like.device)


def complex_links(group, U: torch.Tensor) -> torch.Tensor:
    """Links as complex ``(B, ndim, *local, N, N)`` matrices, differentiably: U(1) angles
    ``theta`` become ``exp(i theta)`` as 1x1 matrices; SU(N) links are returned as they are."""
    if group.N == 1 and not U.is_complex():
        return torch.polar(torch.ones_like(U), U)[..., None, None]
    return U


def gauge_field(lattice, group, links) -> GaugeField:
    """Collective: a :class:`GaugeField` (halo depth 1, refreshed) holding one sample's links
    ``(ndim, *local, N, N)`` (an array of the backend's module, float64 complex)."""
    backend = Backend("numpy" if isinstance(links, np.ndarray) else "cupy", "double")
    U = GaugeField(lattice, group, backend, 1)
    U.set_interior(links)
    U.refresh()
    return U


def _fields(lattice, group, U: torch.Tensor):
    """Per sample: a refreshed :class:`GaugeField` of the links of ``U`` (B, ndim, ..., N, N)."""
    arr = _to_array(U.to(torch.complex128))
    return [gauge_field(lattice, group, arr[b]) for b in range(arr.shape[0])]


# -- the pseudofermion action ----------------------------------------------------------------------

def _normal_solve(S, b, tol, maxiter, what):
    try:
        return cg(S, b, tol=tol, maxiter=maxiter, apply=S.normal)
    except SolverError as exc:
        raise SolverError(f"{what} (kappa={S.kappa}): {exc}", exc.result) from exc


def _pseudofermion_solves(lattice, fields, phi, kappa, bc, tol, maxiter):
    """``([S_pf], [(D, psi)])`` per field: ``psi = (M^dag M)^{-1} phi``, ``S_pf = phi^dag psi``."""
    out, saved = [], []
    for b, field in enumerate(fields):
        D = WilsonDirac(field, kappa, 0.0, bc)
        res = _normal_solve(SchurOperator(D), phi[b], tol, maxiter, f"pseudofermion action, sample {b}")
        out.append(inner(lattice, phi[b], res.x).real)  # collective
        saved.append((D, res.x))
    return out, saved


def pseudofermion_values(lattice, fields, phi, kappa: float, bc=None, tol: float = 1e-12,
                         maxiter: int = 10_000) -> np.ndarray:
    """Collective, not differentiable: ``S_pf`` of each of the refreshed gauge ``fields`` (the
    Metropolis weights: no second copy of the links), float64 ``(B,)``."""
    return np.array(_pseudofermion_solves(lattice, fields, phi, kappa, bc, tol, maxiter)[0])


class _PseudofermionFunction(torch.autograd.Function):
    """``S_pf`` per sample; backward: ``-2 Re <chi, dM psi>`` as a link gradient."""

    @staticmethod
    def forward(ctx, U, lattice, group, phi, kappa, bc, tol, maxiter):
        out, saved = _pseudofermion_solves(lattice, _fields(lattice, group, U), phi, kappa, bc, tol, maxiter)
        ctx.saved, ctx.dtype = saved, U.dtype
        return torch.tensor(out, dtype=torch.float64, device=U.device)

    @staticmethod
    def backward(ctx, grad):
        grads = []
        gh = grad.detach().to(torch.float64).cpu().numpy()
        for b, (D, psi) in enumerate(ctx.saved):
            M = SchurOperator(D)
            chi = M.apply(psi)
            dd = DiracDerivative(D.gauge_field, D.bc)
            dd.add_schur(D, chi, psi, -2.0 * float(gh[b]))
            grads.append(dd.link_gradient())  # collective
        g = torch.stack([_to_tensor(a, grad) for a in grads])
        ctx.saved = None
        return (g.to(grad.device, ctx.dtype),) + (None,) * 7


def pseudofermion_action(lattice, group, U, phi, kappa: float, bc=None, tol: float = 1e-12,
                         maxiter: int = 10_000):
    """Collective, differentiable: ``S_pf = phi^dag (M^dag M)^{-1} phi`` per sample, ``(B,)``.

    Args:
        lattice: the project's :class:`~lattice_hpc.geometry.Lattice` of the block (the flow's
            ``fl.lattice``).
        group: the gauge group (U(1) angles or SU(N) matrices in ``U``).
        U: links ``(B, ndim, *local)`` (U(1) angles) or ``(B, ndim, *local, N, N)``.
        phi: per sample, the pseudofermion on the even sites (arrays of the backend's module).
        kappa, bc: the Wilson operator.
        tol, maxiter: of the CG solves (relative residual).
    """
    Uc = complex_links(group, U)
    return _PseudofermionFunction.apply(Uc, lattice, group, phi, float(kappa),
                                        None if bc is None else tuple(bc), float(tol), int(maxiter))


def draw_pseudofermion(lattice, group, U, kappa: float, rng, purpose, bc=None, samples=None,
                       with_eta: bool = False):
    """Collective: ``phi = M^dag eta`` per sample, ``eta`` complex Gaussian with
    ``P ~ exp(-eta^dag eta)`` on the even sites from the counter ``purpose + (b,)``, ``b`` the
    sample's global index (``samples``; default ``0 .. B-1``), so the same field on every process
    grid and replica: the exact heatbath of ``exp(-S_pf)`` given ``U``.  ``with_eta``: return
    ``(phi, eta^dag eta)`` pairs (the action right after the draw)."""
    from ..hmc.pseudofermions import gaussian_source

    fields = _fields(lattice, group, complex_links(group, U).detach())
    samples = range(len(fields)) if samples is None else samples
    out = []
    for b, field in zip(samples, fields, strict=True):
        D = WilsonDirac(field, kappa, 0.0, bc)
        eta = gaussian_source(lattice, rng, tuple(purpose) + (int(b),), field.backend,
                              site_shape=D.site_shape)
        phi = SchurOperator(D).apply_dagger(eta)
        out.append((phi, inner(lattice, eta, eta).real) if with_eta else phi)
    return out


# -- the exact determinant ---------------------------------------------------------------------------

class _EvenBasis:
    """The unit vectors ``e_j`` of the even sites in the global order of the dense matrices
    (even site in memory order, then spin, colour): ``j = k * ns + component``, ``k`` the site's
    index among the even sites of the global lattice, ``ns = spins * colours``."""

    def __init__(self, D):
        lat = D.lattice
        self.shape, self.xp, self.dtype = D.shape(), D.xp, D.dtype
        self.ns = self.shape[-2] * self.shape[-1]
        self.n = lat.volume // 2 * self.ns
        V = lat.volume
        parity = np.indices(tuple(reversed(lat.dims))).reshape(lat.ndim, V).sum(axis=0) % 2
        rank = np.full(V, -1, dtype=np.int64)
        rank[parity == 0] = np.arange(V // 2)
        local = rank[np.asarray(lat.global_index)]   # per local site; -1 on odd sites
        self.mask = local >= 0                        # this rank's even sites
        self.index = (local[self.mask][:, None] * self.ns + np.arange(self.ns)).reshape(-1)
        self.where = {int(k): pos for k, pos in zip(local[self.mask], zip(*np.nonzero(self.mask)))}

    def vectors(self, start: int, stop: int):
        """``e_j`` for ``j`` in ``[start, stop)`` as local fields ``(stop - start, *local, s, c)``."""
        out = self.xp.zeros((stop - start,) + tuple(self.shape), dtype=self.dtype)
        c = self.shape[-1]
        for i, j in enumerate(range(start, stop)):
            k, comp = divmod(j, self.ns)
            pos = self.where.get(k)
            if pos is not None:
                out[(i,) + tuple(int(v) for v in pos) + divmod(comp, c)] = 1.0
        return out

    def local_part(self, x) -> np.ndarray:
        """The dense-vector entries ``(n,)`` of this rank's even sites of field ``x`` (zeros
        elsewhere); the sum over ranks is the whole vector."""
        x = x.get() if hasattr(x, "get") else np.asarray(x)
        out = np.zeros(self.n, dtype=np.complex128)
        out[self.index] = x[self.mask].reshape(-1)
        return out

    def fields(self, columns: np.ndarray):
        """Dense vectors ``(n, k)`` -> local fields ``(k, *local, s, c)`` (this rank's sites)."""
        k = columns.shape[1]
        out = np.zeros((k,) + tuple(self.shape), dtype=np.complex128)
        out[:, self.mask] = columns[self.index].T.reshape((k, -1) + tuple(self.shape[-2:]))
        return self.xp.asarray(out, dtype=self.dtype)


def dense_schur(D) -> np.ndarray:
    """Collective: the dense matrix of ``M = D_hat`` on the even sites, ``(n, n)`` with
    ``n = V/2 * spins * colours`` (:class:`_EvenBasis` order), the same on every rank.  Column
    ``j`` is ``M e_j``, summed over the ranks' parts: for small volumes."""
    M, basis = SchurOperator(D), _EvenBasis(D)
    cols = np.zeros((basis.n, basis.n), dtype=np.complex128)
    for j in range(basis.n):
        cols[:, j] = basis.local_part(M.apply(basis.vectors(j, j + 1)[0]))
    return D.lattice.comm.allreduce(cols)


def logdet_normal(D) -> float:
    """Collective: ``log det(D^dag D) = 2 log|det D_hat|`` (Wilson fermions), float64."""
    _, ld = np.linalg.slogdet(dense_schur(D))
    return 2.0 * float(ld)


class _LogdetFunction(torch.autograd.Function):
    """``S_det = -log det(D^dag D)`` per sample; backward: ``-2 Re Tr(M^{-1} dM)``."""

    @staticmethod
    def forward(ctx, U, lattice, group, kappa, bc, chunk):
        fields = _fields(lattice, group, U)
        out, saved = [], []
        for field in fields:
            D = WilsonDirac(field, kappa, 0.0, bc)
            Md = dense_schur(D)
            _, ld = np.linalg.slogdet(Md)
            out.append(-2.0 * float(ld))
            saved.append((D, Md))
        ctx.saved, ctx.chunk, ctx.dtype = saved, chunk, U.dtype
        return torch.tensor(out, dtype=torch.float64, device=U.device)

    @staticmethod
    def backward(ctx, grad):
        gh = grad.detach().to(torch.float64).cpu().numpy()
        grads = []
        for b, (D, Md) in enumerate(ctx.saved):
            basis = _EvenBasis(D)
            Minv_dag = np.linalg.inv(Md).conj().T  # column j: M^{-dag} e_j
            total = None
            for start in range(0, basis.n, ctx.chunk):
                stop = min(basis.n, start + ctx.chunk)
                E = basis.vectors(start, stop)
                L = basis.fields(Minv_dag[:, start:stop])
                dd = DiracDerivative(D.gauge_field, D.bc)
                for k in range(stop - start):  # Re Tr(M^-1 dM) = sum_j Re <M^-dag e_j, dM e_j>
                    dd.add_schur(D, L[k], E[k], -2.0 * float(gh[b]))
                g = dd.link_gradient()  # collective
                total = g if total is None else total + g
            grads.append(total)
        ctx.saved = None
        return (torch.stack([_to_tensor(a, grad) for a in grads]).to(grad.device, ctx.dtype),) \
            + (None,) * 5


def logdet_action(lattice, group, U, kappa: float, bc=None, chunk: int = 64):
    """Collective, differentiable: ``S_det = -log det(D^dag D)`` per sample, ``(B,)``, from a
    dense LU of the even/odd operator (small volumes).  ``chunk``: unit vectors per insertion
    batch of the backward pass (memory ``~ 2 chunk`` spinor fields)."""
    Uc = complex_links(group, U)
    return _LogdetFunction.apply(Uc, lattice, group, float(kappa),
                                 None if bc is None else tuple(bc), int(chunk))


__all__ = ["complex_links", "gauge_field", "pseudofermion_action", "pseudofermion_values", "draw_pseudofermion",
           "dense_schur", "logdet_normal", "logdet_action"]
