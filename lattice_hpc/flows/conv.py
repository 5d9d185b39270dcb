"""Translation-equivariant context networks on the decomposed lattice.

A :class:`LatticeConv` is a convolution over the ``ndim`` site axes with periodic boundary
conditions *of the global lattice*: its input is padded by ``kernel // 2`` sites of the
neighbouring blocks (:func:`lattice_hpc.comm.autograd.halo_pad`, differentiable across ranks),
then convolved without padding.  So the same weights give the same output at every site whatever
the process grid, and the gradients of the weights are exact sums over the global lattice.  2D
uses ``conv2d``; 4D (torch has no ``conv4d``) sums ``conv3d`` over the taps of the time direction.
``shape = "cross"`` keeps only the centre and the ``kernel // 2`` nearest sites along each axis
(``2 ndim h + 1`` taps instead of ``kernel^ndim``: 9 instead of 81 in 4D, where the full cube
costs seconds per training step on a CPU); stacked layers still reach every site of the cube.

:class:`ContextNet` is the conditioner of a coupling layer (Kanwar et al. arXiv 2003.06413, and
Boyda et al. arXiv 2008.05456): a stack of such convolutions with LeakyReLU between them, from the
gauge-invariant frozen-loop channels to the parameters of the bijection at every site.  The last
convolution starts at zero weights, so an untrained flow is the identity map.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F

from ..comm.autograd import halo_pad


class LatticeConv(torch.nn.Module):
    """Periodic convolution over the global lattice of a ``(B, C, L_{d-1}, ..., L_0)`` block."""

    def __init__(self, grid, ndim: int, c_in: int, c_out: int, kernel: int = 3, zero: bool = False,
                 dtype=torch.float64, generator=None, shape: str = "cube"):
        super().__init__()
        if kernel % 2 != 1:
            raise ValueError(f"kernel size {kernel} must be odd")
        if ndim not in (2, 3, 4):
            raise ValueError(f"LatticeConv supports 2, 3 or 4 dimensions, not {ndim}")
        if shape not in ("cube", "cross"):
            raise ValueError(f"unknown kernel shape {shape!r}: use cube or cross")
        self.grid, self.ndim, self.kernel, self.shape = grid, ndim, kernel, shape
        h = kernel // 2
        # cross: the centre and the sites at distance 1..h along each axis (2 ndim h + 1 taps)
        self.taps = [tuple(s * (nu == ax) for nu in range(ndim)) for ax in range(ndim)
                     for s in range(-h, h + 1) if s] + [(0,) * ndim] if shape == "cross" else None
        shape = (c_out, c_in) + ((kernel,) * ndim if self.taps is None else (len(self.taps),))
        bound = 1.0 / math.sqrt(c_in * (kernel ** ndim if self.taps is None else len(self.taps)))
        w = torch.zeros(shape, dtype=dtype)
        b = torch.zeros(c_out, dtype=dtype)
        if not zero:
            w.uniform_(-bound, bound, generator=generator)
            b.uniform_(-bound, bound, generator=generator)
        self.weight = torch.nn.Parameter(w)
        self.bias = torch.nn.Parameter(b)

    def forward(self, x):
        h = self.kernel // 2
        xp = halo_pad(x, self.grid, h, 2) if h else x
        if self.taps is not None:
            out = None
            for t, off in enumerate(self.taps):  # offsets in memory order of the site axes
                sl = (slice(None), slice(None)) + tuple(
                    slice(h + o, h + o + L) for o, L in zip(off, x.shape[2:]))
                y = torch.einsum("oc,bc...->bo...", self.weight[:, :, t], xp[sl])
                out = y if out is None else out + y
            return out + self.bias.view(1, -1, *([1] * self.ndim))
        if self.ndim == 2:
            return F.conv2d(xp, self.weight, self.bias)
        if self.ndim == 3:
            return F.conv3d(xp, self.weight, self.bias)
        B, T = x.shape[0], x.shape[2]
        out = None
        for dt in range(self.kernel):
            sl = xp[:, :, dt:dt + T]  # (B, C, T, Z', Y', X'): fold the time slices into the batch
            y = F.conv3d(sl.transpose(1, 2).reshape(B * T, *sl.shape[1:2], *sl.shape[3:]),
                         self.weight[:, :, dt])
            out = y if out is None else out + y
        out = out.reshape(B, T, *out.shape[1:]).transpose(1, 2)
        return out + self.bias.view(1, -1, *([1] * self.ndim))


class ContextNet(torch.nn.Module):
    """``c_in`` channels -> hidden convolutions -> ``c_out`` channels, periodic on the lattice.

    Args:
        grid: the process grid (for the halos); ``ndim``: lattice dimension.
        hidden: channels of the hidden layers, e.g. ``(16, 16)``.
        kernel: kernel size of every convolution (odd).
        generator: a ``torch.Generator`` seeded from the job (weights do not depend on the grid).
    """

    def __init__(self, grid, ndim: int, c_in: int, c_out: int, hidden=(16, 16), kernel: int = 3,
                 dtype=torch.float64, generator=None, shape: str = "cube"):
        super().__init__()
        sizes = [c_in, *hidden]
        self.hidden = torch.nn.ModuleList(
            LatticeConv(grid, ndim, a, b, kernel, dtype=dtype, generator=generator, shape=shape)
            for a, b in zip(sizes[:-1], sizes[1:]))
        self.out = LatticeConv(grid, ndim, sizes[-1], c_out, kernel, zero=True, dtype=dtype,
                               generator=generator, shape=shape)
        self.features = sizes[-1]

    def forward(self, x, return_features: bool = False):
        for conv in self.hidden:
            x = F.leaky_relu(conv(x))
        y = self.out(x)
        return (y, x) if return_features else y
