"""U(1) plaquette coupling layer (Kanwar et al., arXiv 2003.06413; tutorial arXiv 2101.08176).

With the stripes of :mod:`.masks`, the active link ``theta_mu(x)`` enters its own loop
``theta_W(x) = theta_mu(x) + theta_nu(x+mu) - theta_mu(x+nu) - theta_nu(x)`` and no other active
link does, so the layer transforms the angle of that loop with a bijection ``h`` of the circle,
conditioned on the frozen plaquettes (a :class:`.conv.ContextNet` of their ``cos`` and ``sin``),
and on the 1x2 loop that the active loop forms with the passive plaquette below it
(:func:`.loops.u1_rectangle`, at the active sites: it does not contain the active link, and in
2D the exact conditional density of the active link, given all other links, is a function of it
alone), and pushes the change into the active link:

    theta_W' = h(theta_W),    theta_mu(x) -> theta_mu(x) + theta_W' - theta_W.

The change of variables from the active links to their loops (other links fixed) is a shift, so
``log|det J| = sum over active x of log h'(theta_W(x))``.  The layer is gauge equivariant because
``theta_W`` and the context are gauge invariant and the update adds an invariant to a link.
In the last layers of the 2D sweep order (:func:`.masks.sweep_masks`, single links ``U_1(s, 0)``
of row 0) the kernel is also conditioned on the loop around the plaquettes ``P(0, 0) .. P(s, 0)``,
the rest of row 0 that no layer has transformed yet (its angle is the sum of theirs; it does not
contain the active link, which two of its plaquettes share with opposite signs): with it the exact
conditional density of ``theta_W``, ``p_1(theta) f_s(S - theta)`` (``f_s`` the density of the sum
of ``s`` plaquette angles), is within the kernel's reach, and only the angle of the whole row,
a sum of ``L_0`` plaquettes whose density is nearly flat, is left to the constraint.  The loop is
a sum over sites, reduced over the ranks (differentiable, :func:`lattice_hpc.comm.autograd.
shared_sum_over_ranks`: every rank's use of it sends gradient to every rank's part).

``h`` is a circular rational-quadratic spline (``kernel = "spline"``, Rezende et al. arXiv
2002.02428; ``bins`` bins) or a mixture of non-compact projections with a shift
(``kernel = "ncp"``, ``bins`` components), as in the tutorial.
"""

from __future__ import annotations

import math

import torch

from ..comm.autograd import shared_sum_over_ranks
from .conv import ContextNet
from .loops import planes, site_sum, u1_loop, u1_rectangle
from .ncp import ncp_mixture
from .splines import circular_rq_spline

TWO_PI = 2 * math.pi


def circle_kernel(kernel: str, x, params, bins: int, inverse: bool = False):
    """``(h(x), log|h'|)`` of the layers' circle bijection (or its inverse) with the parameters
    ``params[..., :]``: ``3 bins`` for the spline (widths, heights, derivatives), ``2 bins + 1``
    for the NCP mixture (its components' parameters and the shift)."""
    K = bins
    if kernel == "spline":
        return circular_rq_spline(x, params[..., :K], params[..., K:2 * K], params[..., 2 * K:],
                                  inverse=inverse)
    return ncp_mixture(x, params[..., :K], params[..., K:2 * K], params[..., 2 * K],
                       inverse=inverse)


class U1PlaquetteCoupling(torch.nn.Module):
    """One U(1) coupling layer for the mask ``mask`` (:class:`.masks.StripeMask`)."""

    def __init__(self, fl, mask, kernel: str = "spline", bins: int = 8, hidden=(16, 16),
                 kernel_size: int = 3, generator=None, kernel_shape: str = "cube"):
        super().__init__()
        if kernel not in ("spline", "ncp"):
            raise ValueError(f"unknown U(1) kernel {kernel!r}: use spline or ncp")
        self.fl, self.mask, self.kernel, self.bins = fl, mask, kernel, bins
        self.planes = planes(fl.ndim)
        c_in = 2 * len(self.planes) + 2 + (2 if mask.pin is not None else 0)
        c_out = 3 * bins if kernel == "spline" else 2 * bins + 1
        self.net = ContextNet(fl.grid, fl.ndim, c_in, c_out, hidden, kernel_size, fl.real, generator,
                              kernel_shape)
        dims = fl.lattice.dims
        self.register_buffer("active", fl.site_mask(mask.active), persistent=False)
        frozen = [fl.site_mask(lambda c, r=r, s=s: mask.frozen_plaquette(r, s, c, dims))
                  for r, s in self.planes]
        self.register_buffer("frozen", torch.stack(frozen), persistent=False)
        if mask.pin is not None:  # the untransformed rest of the pinned row: x_nu <= offset
            d, c = mask.pin
            rest = fl.site_mask(lambda x: (x[d] == c) & (x[mask.nu] <= mask.offset))
            self.register_buffer("rest", rest, persistent=False)

    def context(self, padded):
        fl = self.fl
        ch = []
        loops = [u1_loop(fl, padded, r, s) for r, s in self.planes]
        for i, a in enumerate(loops):
            ch += [torch.cos(a) * self.frozen[i], torch.sin(a) * self.frozen[i]]
        r = u1_rectangle(fl, padded, self.mask.mu, self.mask.nu)
        ch += [torch.cos(r) * self.active, torch.sin(r) * self.active]
        if self.mask.pin is not None:  # 2D: the one plane's plaquettes, summed over the rest
            line = shared_sum_over_ranks(site_sum(loops[0] * self.rest, fl.ndim), fl.comm)
            line = line.view(-1, *([1] * fl.ndim))
            ch += [torch.cos(line) * self.active, torch.sin(line) * self.active]
        return torch.stack(ch, dim=1)

    def forward(self, theta, inverse: bool = False):
        """``(theta', log|det J|)`` of the layer (or of its inverse); ``log|det J|`` is this
        rank's part, per sample."""
        fl, m = self.fl, self.mask
        padded = fl.pad(theta, 2)
        params = self.net(self.context(padded)).movedim(1, -1)
        x = torch.remainder(u1_loop(fl, padded, m.mu, m.nu), TWO_PI)
        y, ld = circle_kernel(self.kernel, x, params, self.bins, inverse)
        delta = torch.remainder(y - x + math.pi, TWO_PI) - math.pi
        new = theta[:, m.mu] + delta * self.active
        out = torch.cat([theta[:, :m.mu], new.unsqueeze(1), theta[:, m.mu + 1:]], dim=1)
        return out, site_sum(ld * self.active, fl.ndim)
