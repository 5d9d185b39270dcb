"""The block of the lattice a flow runs on: torch device and dtype, masks, halos, shifted views.

Tensors of a flow hold this rank's block of the lattice without halos, with leading batch axes:

- U(1) links as angles ``theta``: shape ``(B, ndim, L_{d-1}, ..., L_0)`` (real);
- SU(N) links: shape ``(B, ndim, L_{d-1}, ..., L_0, N, N)`` (complex);
- activations of the context networks: ``(B, C, L_{d-1}, ..., L_0)``.

The site axes stand in memory order (``t`` slowest, ``x`` fastest), as in every other part of the
project (:mod:`lattice_hpc.geometry.lattice`), so that a block moves between a
:class:`~lattice_hpc.gauge.GaugeField` and a tensor without reordering.  Neighbour sites come from
:func:`lattice_hpc.comm.autograd.halo_pad` (the only communication of a flow's forward pass), so
every layer sees the periodic global lattice whatever the process grid.
"""

from __future__ import annotations

import numpy as np

from ..comm.autograd import halo_pad


def torch_dtype(precision: str, complex_: bool = False):
    import torch

    if precision in ("double", "float64"):
        return torch.complex128 if complex_ else torch.float64
    if precision in ("single", "float32"):
        return torch.complex64 if complex_ else torch.float32
    raise ValueError(f"unknown precision {precision!r}: use double or single")


class FlowLattice:
    """A :class:`~lattice_hpc.geometry.Lattice` seen by torch.

    Args:
        lattice: the decomposed lattice (its grid's communicator is the domain of one sample).
        device: torch device (``"cpu"``, ``"cuda"``); the backend decides (``backend.name = cupy``
            runs flows on CUDA).
        precision: ``double`` or ``single`` for the networks and the links.
    """

    def __init__(self, lattice, device="cpu", precision: str = "double"):
        import torch

        self.lattice = lattice
        self.ndim = lattice.ndim
        self.grid = lattice.grid
        self.comm = lattice.comm
        self.device = torch.device(device)
        self.precision = precision
        self.real = torch_dtype(precision)
        self.complex = torch_dtype(precision, True)
        self.site_shape = lattice.shape(0)  # memory order

    def site_mask(self, fn):
        """A 0/1 tensor of the interior sites (memory order) where ``fn(coords)`` is true, for
        the global coordinates ``coords`` (one array per direction) of the interior sites."""
        import torch

        m = np.asarray(fn(self.lattice.global_coords), dtype=bool)
        return torch.as_tensor(m.astype(np.float64), dtype=self.real, device=self.device)

    def axis(self, mu: int, first: int) -> int:
        """Tensor axis of direction ``mu`` when the site axes start at ``first``."""
        return first + self.ndim - 1 - mu

    def pad(self, x, first: int, depth: int = 1):
        """Collective: ``x`` padded by ``depth`` sites of its neighbours (autograd-aware)."""
        return halo_pad(x, self.grid, depth, first)

    def view(self, padded, first: int, shift, depth: int = 1):
        """The interior of a tensor padded by ``depth`` shifted by the vector ``shift``."""
        sl = [slice(None)] * padded.dim()
        for nu in range(self.ndim):
            ax = self.axis(nu, first)
            L = padded.shape[ax] - 2 * depth
            s = shift[nu] if nu < len(shift) else 0
            sl[ax] = slice(depth + s, depth + s + L)
        return padded[tuple(sl)]
