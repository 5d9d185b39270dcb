"""A gauge-equivariant flow: a stack of coupling layers, its densities and its model file.

Direction and sign (CONVENTIONS.md, stated once for every bijection of :mod:`lattice_hpc.flows`):
the flow ``f`` maps a prior sample ``z`` (Haar measure on every link, :mod:`.prior`) to a gauge
field ``U = f(z)``; every layer returns ``log|det J|`` of the map it applies (forward, or its
inverse when asked), and

    log q(U) = log r(z) - log|det J_f(z)| = - sum_layers log|det J_layer|   (log r = 0, Haar).

The log-determinants are sums over sites: each rank returns its part, and
:func:`lattice_hpc.comm.autograd.sum_over_ranks` (differentiable) makes them global.

Architecture (a dict, stored with the weights in the model file so that a model is rebuilt from
the file alone): ``group`` (``U1``, ``SU2``, ``SU3``), ``dims``, ``layers`` (coupling layers;
``4 ndim`` change every link once), ``kernel`` (``spline`` or ``ncp``, U(1)), ``bins``,
``hidden`` (channels of the context networks' hidden layers), ``kernel_size``, ``kernel_shape``
(``cube`` or ``cross``, :mod:`.conv`), ``masks`` (the order of the masks over the layers,
``stripes``, ``planes`` or, in 2D, ``sweep``, :func:`.masks.layer_masks`).
"""

from __future__ import annotations

import torch

from ..comm.autograd import sum_over_ranks
from .masks import canonical_order, check_tiling, layer_masks
from .sun import SUNLoopCoupling
from .u1 import U1PlaquetteCoupling

ARCH_KEYS = ("group", "dims", "layers", "kernel", "bins", "hidden", "kernel_size", "kernel_shape",
             "masks")
#: architecture keys added later, with the value that model files without them were made with
ARCH_DEFAULTS = {"kernel_shape": "cube", "masks": "stripes"}


class GaugeFlow(torch.nn.Module):
    """The flow of architecture ``arch`` on the block ``fl`` (:class:`.geometry.FlowLattice`).

    Weights are drawn from ``torch.Generator().manual_seed(seed)``: the same on every rank and
    every process grid (the lattice enters only through the masks).
    """

    def __init__(self, fl, arch: dict, seed: int = 0):
        super().__init__()
        self.fl = fl
        self.arch = {k: arch.get(k, ARCH_DEFAULTS.get(k)) for k in ARCH_KEYS}
        self.arch["dims"] = list(self.arch["dims"])
        self.arch["hidden"] = list(self.arch["hidden"])
        self.arch["masks"] = canonical_order(fl.ndim, self.arch["masks"])
        group = arch["group"]
        self.N = 1 if group == "U1" else int(group[2:])
        masks = layer_masks(fl.ndim, int(arch["layers"]), self.arch["masks"], fl.lattice.dims)
        check_tiling(fl.lattice.dims, masks)
        g = torch.Generator().manual_seed(int(seed))
        hidden = tuple(arch["hidden"])
        if self.N == 1:
            layers = [U1PlaquetteCoupling(fl, m, self.arch["kernel"], self.arch["bins"], hidden,
                                          self.arch["kernel_size"], g, self.arch["kernel_shape"])
                      for m in masks]
        else:
            layers = [SUNLoopCoupling(fl, self.N, m, self.arch["bins"], hidden,
                                      self.arch["kernel_size"], g, self.arch["kernel_shape"])
                      for m in masks]
        self.layers = torch.nn.ModuleList(layers)
        self.to(device=fl.device)

    def forward(self, z):
        """``(U, log|det J_f(z)|)``: the field and this rank's part of the log-det, per sample."""
        ld = torch.zeros(z.shape[0], dtype=self.fl.real, device=z.device)
        for layer in self.layers:
            z, l = layer(z)
            ld = ld + l
        return z, ld

    def inverse(self, U):
        """``(z, log|det J_{f^-1}(U)|)`` (this rank's part, per sample)."""
        ld = torch.zeros(U.shape[0], dtype=self.fl.real, device=U.device)
        for layer in reversed(self.layers):
            U, l = layer(U, inverse=True)
            ld = ld + l
        return U, ld

    def sample(self, z):
        """Collective: ``(U, log q(U))`` for prior samples ``z``, ``log q`` global (differentiable)."""
        U, ld = self(z)
        return U, -sum_over_ranks(ld, self.fl.comm)

    def log_q(self, U):
        """Collective: the model log-density of given fields (through the inverse flow)."""
        _, ld = self.inverse(U)
        return sum_over_ranks(ld, self.fl.comm)
