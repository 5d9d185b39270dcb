"""Masking patterns of the gauge-equivariant coupling layers (2D and 4D).

A coupling layer changes the *active* links and leaves all others unchanged.  Here a layer is
given by ``(mu, nu, offset)``: the active links are ``U_mu(x)`` with ``x_nu = offset (mod 4)``
(stripes of period 4 in direction ``nu``; Kanwar et al., arXiv 2003.06413, and the tutorial
arXiv 2101.08176 in 2D; the same stripes in any dimension).  Each active link is changed through
its *own* loop, the untraced plaquette ``W(x) = U_mu(x) U_nu(x+mu) U_mu(x+nu)^dag U_nu(x)^dag``
in the ``(mu, nu)`` plane: ``U_mu(x) -> W'(x) W(x)^dag U_mu(x)``.  The stripes make this a
triangular (hence exactly invertible, exact log-det) update:

- no loop ``W(x)`` contains a second active link (``U_mu(x+nu)`` has ``x_nu + 1 != offset``);
- the *frozen* plaquettes, which contain no active link, are the context of the layer: they are
  unchanged, so the parameters computed from them are the same in the inverse;
- the other plaquettes that touch an active link (``P_{mu nu}(x - nu)`` and, in 4D, the
  ``(mu, rho)`` plaquettes of active sites) change passively and are not used.

A lattice whose extent in ``nu`` is not a multiple of the period cannot be tiled by the stripes:
:func:`check_tiling` refuses it naming the direction.  Masks are functions of the *global*
coordinates, so they do not depend on the process grid, and each layer is equivariant under
translations by 4 in ``nu`` and by 1 in the other directions.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ..errors import ConfigError
from ..geometry.decomposition import direction_names

PERIOD = 4


@dataclass(frozen=True)
class StripeMask:
    """The mask of one coupling layer: active links ``U_mu(x)`` with ``x_nu = offset (mod 4)``."""

    mu: int
    nu: int
    offset: int

    def active(self, coords) -> np.ndarray:
        """Whether ``U_mu(x)`` is active, over sites with global coordinates ``coords``."""
        return (np.asarray(coords[self.nu]) % PERIOD) == self.offset % PERIOD

    def _active_at(self, coords, shift_dir: int | None, dims) -> np.ndarray:
        c = coords[self.nu]
        if shift_dir == self.nu:
            c = (np.asarray(c) + 1) % dims[self.nu]
        return (np.asarray(c) % PERIOD) == self.offset % PERIOD

    def frozen_plaquette(self, rho: int, sigma: int, coords, dims) -> np.ndarray:
        """Whether ``P_{rho sigma}(y)`` (``rho < sigma``) contains no active link, over sites ``y``.

        Its links are ``U_rho(y), U_sigma(y + rho), U_rho(y + sigma), U_sigma(y)``; only links of
        direction ``mu`` can be active.
        """
        shape = np.broadcast(*coords).shape
        touched = np.zeros(shape, dtype=bool)
        if rho == self.mu:  # U_mu(y) and U_mu(y + sigma)
            touched |= self._active_at(coords, None, dims) | self._active_at(coords, sigma, dims)
        if sigma == self.mu:  # U_mu(y + rho) and U_mu(y)
            touched |= self._active_at(coords, None, dims) | self._active_at(coords, rho, dims)
        return ~touched


#: the orders of the masks over the layers (:func:`layer_masks`)
ORDERS = ("stripes", "planes")

#: 4D ``planes`` order: these six ordered planes cover every unordered plane once
_PLANES_4D = ((0, 1), (1, 2), (2, 3), (3, 0), (0, 2), (1, 3))


def canonical_order(ndim: int, order: str) -> str:
    """The mask order as stored in a model's architecture.  In 2D both orders are the same (one
    plane), and are stored as ``stripes``, so that 2D model files of either name fit any job."""
    if order not in ORDERS:
        raise ConfigError(f"flow.masks = {order!r}: expected one of {', '.join(ORDERS)}")
    return "stripes" if ndim == 2 else order


def layer_masks(ndim: int, n_layers: int, order: str = "stripes") -> list[StripeMask]:
    """The masks of ``n_layers`` coupling layers.

    ``stripes``: layer ``i`` is active in ``mu = i mod ndim`` at offset ``(i div ndim) mod 4``,
    so that ``4 ndim`` consecutive layers change every link once; the stripe direction ``nu`` is
    the next direction after ``mu``, cycling through the others from one group of ``4 ndim``
    layers to the next.  In 4D its first 16 layers make the loops of only four of the six planes
    active (``(mu, mu+1)``); the planes ``(0, 2)`` and ``(1, 3)`` wait until layer 17.

    ``planes`` (4D): every plaquette is the active loop of one layer in each group of 24 layers:
    for each offset the six planes ``(0,1), (1,2), (2,3), (3,0), (0,2), (1,3)`` in turn, and in
    the next group of 24 the same planes with the other orientation ``(nu, mu)``, so that 48
    layers change every link direction equally often (12 times).  ``P_{mu nu}(x)`` is active in
    the layer ``(mu, nu, x_nu mod 4)`` (and in ``(nu, mu, x_mu mod 4)``).  In 2D it is the same
    as ``stripes``.
    """
    order = canonical_order(ndim, order)
    out = []
    for i in range(n_layers):
        if order == "planes":
            within = i % 24
            mu, nu = _PLANES_4D[within % 6]
            if (i // 24) % 2:
                mu, nu = nu, mu
            out.append(StripeMask(mu, nu, within // 6))
            continue
        mu = i % ndim
        off = (i // ndim) % PERIOD
        turn = (i // (PERIOD * ndim)) % (ndim - 1)
        nu = (mu + 1 + turn) % ndim
        out.append(StripeMask(mu, nu, off))
    return out


def check_tiling(dims, masks, names=None) -> None:
    """Raise :class:`~lattice_hpc.errors.ConfigError` if a stripe direction's extent is not a
    multiple of the mask period."""
    names = names or direction_names(len(dims))
    for nu in sorted({m.nu for m in masks}):
        if dims[nu] % PERIOD:
            raise ConfigError(f"lattice.dims: extent {dims[nu]} in direction {names[nu]} is not a "
                              f"multiple of {PERIOD}, the period of the flow's masking pattern "
                              "(stripes of active links), so the masks cannot tile the lattice")
