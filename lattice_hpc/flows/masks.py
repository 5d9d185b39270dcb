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

The 2D ``sweep`` order (:func:`sweep_masks`) uses the same layers with stripes of period ``L``
(one row of links at a time) and, at the end, single links: each plaquette is the active loop of
exactly one layer and is passive only in layers before that one, so a plaquette that a layer has
transformed is never changed again (an autoregressive order of the plaquettes, the last one,
``P(0, 0)``, being fixed by the others through ``prod_x P(x) = 1``).  In 2D the plaquettes of
``exp(-S)`` are independent up to that one constraint, so in this order each layer's ideal kernel
is a function of its own loop alone (the map of the uniform angle to the one-plaquette
distribution), which a layer can learn; in the stripes order a transformed plaquette is
scrambled again whenever it is passive in a later layer.  The sweep is not translation
equivariant (its period is the lattice) and has ``L_0 + L_1 - 2`` layers.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ..errors import ConfigError
from ..geometry.decomposition import direction_names

PERIOD = 4


@dataclass(frozen=True)
class StripeMask:
    """The mask of one coupling layer: active links ``U_mu(x)`` with ``x_nu = offset (mod
    period)`` and, if ``pin = (d, c)`` is given, ``x_d = c`` (a single row of a stripe)."""

    mu: int
    nu: int
    offset: int
    period: int = PERIOD
    pin: tuple[int, int] | None = None

    def active(self, coords) -> np.ndarray:
        """Whether ``U_mu(x)`` is active, over sites with global coordinates ``coords``."""
        a = (np.asarray(coords[self.nu]) % self.period) == self.offset % self.period
        if self.pin is not None:
            a = a & (np.asarray(coords[self.pin[0]]) == self.pin[1])
        return a

    def _active_at(self, coords, shift_dir: int | None, dims) -> np.ndarray:
        """Whether ``U_mu(x + shift_dir)`` is active (``shift_dir`` None: ``U_mu(x)``)."""
        if shift_dir is not None:
            coords = list(coords)
            coords[shift_dir] = (np.asarray(coords[shift_dir]) + 1) % dims[shift_dir]
        return self.active(coords)

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
ORDERS = ("stripes", "planes", "sweep")

#: 4D ``planes`` order: these six ordered planes cover every unordered plane once
_PLANES_4D = ((0, 1), (1, 2), (2, 3), (3, 0), (0, 2), (1, 3))


def canonical_order(ndim: int, order: str) -> str:
    """The mask order as stored in a model's architecture.  In 2D both orders are the same (one
    plane), and are stored as ``stripes``, so that 2D model files of either name fit any job."""
    if order not in ORDERS:
        raise ConfigError(f"flow.masks = {order!r}: expected one of {', '.join(ORDERS)}")
    if order == "sweep":
        if ndim != 2:
            raise ConfigError(f"flow.masks = 'sweep' is a 2D order (the plaquettes of a 2D "
                              f"lattice are independent up to one constraint); this lattice is "
                              f"{ndim}D: use stripes or planes")
        return order
    return "stripes" if ndim == 2 else order


def sweep_masks(dims) -> list[StripeMask]:
    """The ``L_0 + L_1 - 2`` masks of one 2D sweep (see the module docstring).

    Rows: for ``t = L_1 - 1, ..., 1`` the links ``U_0(x)`` of row ``x_1 = t`` are active, their
    loops ``P_01(x)`` (row ``t``) change and row ``t - 1`` is passive.  Then row 0: for
    ``s = L_0 - 1, ..., 1`` the single link ``U_1(s, 0)``, whose loop is ``P_10(s, 0)`` (the
    plaquette ``P_01(s, 0)`` reversed) with ``P(s - 1, 0)`` passive.  ``P(0, 0)`` is left to the
    constraint."""
    L0, L1 = int(dims[0]), int(dims[1])
    return ([StripeMask(0, 1, t, L1) for t in range(L1 - 1, 0, -1)]
            + [StripeMask(1, 0, s, L0, pin=(1, 0)) for s in range(L0 - 1, 0, -1)])


def layer_masks(ndim: int, n_layers: int, order: str = "stripes", dims=None) -> list[StripeMask]:
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

    ``sweep`` (2D, needs ``dims``): :func:`sweep_masks`, repeated; ``n_layers`` must be a
    multiple of its length ``L_0 + L_1 - 2``.
    """
    order = canonical_order(ndim, order)
    if order == "sweep":
        one = sweep_masks(dims)
        if not one or n_layers % len(one):
            raise ConfigError(f"flow.layers = {n_layers}: the sweep order of a {dims[0]}x{dims[1]} "
                              f"lattice has {len(one)} layers per sweep (L0 + L1 - 2); give a "
                              "multiple of it")
        return one * (n_layers // len(one))
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
    for nu, period in sorted({(m.nu, m.period) for m in masks}):
        if dims[nu] % period:
            raise ConfigError(f"lattice.dims: extent {dims[nu]} in direction {names[nu]} is not a "
                              f"multiple of {period}, the period of the flow's masking pattern "
                              "(stripes of active links), so the masks cannot tile the lattice")
