"""SU(N) loop coupling layer (Boyda et al., arXiv 2008.05456; Abbott et al., arXiv 2305.02402).

The active link ``U_mu(x)`` (stripes of :mod:`.masks`) enters its own untraced loop
``W(x) = U_mu(x) S(x)``, ``S(x) = U_nu(x+mu) U_mu(x+nu)^dag U_nu(x)^dag``, and no other loop of
the layer.  The layer changes the eigenvalues of ``W`` by a spectral map (:mod:`.spectral`),
conditioned on the gauge-invariant traces of the frozen plaquettes and of the 1x2 loop
``S^dag S_-`` that the active loop forms with the passive plaquette below it
(:func:`.loops.sun_rectangle`), and sets

    U_mu(x) -> W'(x) S(x)^dag = W'(x) W(x)^dag U_mu(x).

``W -> g(x) W g(x)^dag`` under a gauge transformation, the spectral map is conjugation
equivariant and the context is invariant, so the layer is gauge equivariant.  Haar measure is
invariant under ``U -> U S``, so the log-Jacobian of the link update is the spectral map's
log-Jacobian with respect to Haar measure.

The spectral map acts on the canonical cell of the eigenphases in unit-cube coordinates ``u``
(:func:`.spectral.to_cell`): for SU(2) one coordinate, transformed by a rational-quadratic
spline on ``[0, 1]`` whose parameters the context network gives; for SU(3) two coordinates,
transformed autoregressively: ``u1' = h1(u1 | context)``, then ``u2' = h2(u2 | context, u1')``,
the parameters of ``h2`` from a per-site network of the context features and ``u1'``, so the
Jacobian is triangular and the inverse runs ``h1^{-1}`` first.  The eigendecomposition is done
only at the active sites.
"""

from __future__ import annotations

import math

import torch

from .conv import ContextNet
from .loops import planes, sun_loop, sun_rectangle, sun_staple
from .spectral import spectral_map
from .splines import rq_spline


def _embed(u):
    k = torch.arange(1, 4, dtype=u.dtype, device=u.device)
    a = math.pi * u.unsqueeze(-1) * k
    return torch.cat([u.unsqueeze(-1), torch.cos(a), torch.sin(a)], dim=-1)


class SUNLoopCoupling(torch.nn.Module):
    """One SU(N) coupling layer (N = 2 or 3) for the mask ``mask``."""

    def __init__(self, fl, N: int, mask, bins: int = 8, hidden=(16, 16), kernel_size: int = 3,
                 generator=None, kernel_shape: str = "cube"):
        super().__init__()
        if N not in (2, 3):
            raise ValueError(f"SU(N) flows are implemented for N = 2 and 3, not {N}")
        self.fl, self.N, self.mask, self.bins = fl, N, mask, bins
        self.planes = planes(fl.ndim)
        npar = 3 * bins + 1
        self.net = ContextNet(fl.grid, fl.ndim, 2 * len(self.planes) + 2, npar, hidden, kernel_size,
                              fl.real, generator, kernel_shape)
        if N == 3:
            f = self.net.features + 7
            self.second = torch.nn.Sequential(torch.nn.Linear(f, 2 * f, dtype=fl.real),
                                              torch.nn.LeakyReLU(),
                                              torch.nn.Linear(2 * f, npar, dtype=fl.real))
            with torch.no_grad():
                g = generator
                for lin in (self.second[0],):
                    bound = 1.0 / math.sqrt(lin.in_features)
                    lin.weight.uniform_(-bound, bound, generator=g)
                    lin.bias.uniform_(-bound, bound, generator=g)
                self.second[2].weight.zero_()
                self.second[2].bias.zero_()
        dims = fl.lattice.dims
        active = fl.site_mask(mask.active)
        self.register_buffer("active", active, persistent=False)
        self.register_buffer("index", torch.nonzero(active.reshape(-1) > 0).reshape(-1),
                             persistent=False)
        frozen = [fl.site_mask(lambda c, r=r, s=s: mask.frozen_plaquette(r, s, c, dims))
                  for r, s in self.planes]
        self.register_buffer("frozen", torch.stack(frozen), persistent=False)

    def context(self, padded):
        fl, ch = self.fl, []
        for i, (r, s) in enumerate(self.planes):
            tr = torch.diagonal(sun_loop(fl, padded, r, s), dim1=-2, dim2=-1).sum(-1) / self.N
            ch += [tr.real * self.frozen[i], tr.imag * self.frozen[i]]
        m = self.mask
        tr = torch.diagonal(sun_rectangle(fl, padded, m.mu, m.nu), dim1=-2, dim2=-1).sum(-1) / self.N
        ch += [tr.real * self.active, tr.imag * self.active]
        return torch.stack(ch, dim=1)

    def _spline(self, u, p, inverse):
        K = self.bins
        return rq_spline(u, p[..., :K], p[..., K:2 * K], p[..., 2 * K:], inverse=inverse)

    def forward(self, U, inverse: bool = False):
        """``(U', log|det J|)`` of the layer (or its inverse); this rank's part, per sample."""
        fl, m, nd = self.fl, self.mask, self.fl.ndim
        padded = fl.pad(U, 2)
        params, feats = self.net(self.context(padded), return_features=True)
        B, N = U.shape[0], self.N
        flat = lambda t: t.reshape(B, -1, *t.shape[1 + nd:]) if t.dim() > 1 + nd else t.reshape(B, -1)
        idx = self.index
        S = flat(sun_staple(fl, padded, m.mu, m.nu))[:, idx]
        Umu = flat(U[:, m.mu])
        W = Umu[:, idx] @ S
        p1 = params.movedim(1, -1).reshape(B, -1, params.shape[1])[:, idx]
        f1 = feats.movedim(1, -1).reshape(B, -1, feats.shape[1])[:, idx]

        def cell_map(u, inv):
            if N == 2:
                y, ld = self._spline(u[..., 0], p1, inv)
                return y.unsqueeze(-1), ld
            if not inv:
                y1, ld1 = self._spline(u[..., 0], p1, False)
                p2 = self.second(torch.cat([f1, _embed(y1)], dim=-1))
                y2, ld2 = self._spline(u[..., 1], p2, False)
            else:
                y1, ld1 = self._spline(u[..., 0], p1, True)
                p2 = self.second(torch.cat([f1, _embed(u[..., 0])], dim=-1))
                y2, ld2 = self._spline(u[..., 1], p2, True)
            return torch.stack([y1, y2], dim=-1), ld1 + ld2

        W2, ld = spectral_map(W, cell_map, inverse=inverse)
        new = W2 @ S.conj().transpose(-1, -2)
        Umu = Umu.index_copy(1, idx, new).reshape(U[:, m.mu].shape)
        out = torch.cat([U[:, :m.mu], Umu.unsqueeze(1), U[:, m.mu + 1:]], dim=1)
        return out, ld.sum(-1) if ld.dim() > 1 else ld
