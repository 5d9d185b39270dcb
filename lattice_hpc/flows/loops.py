"""Gauge loops and actions of torch link tensors on the decomposed lattice (see :mod:`.geometry`).

U(1) links are angles ``theta_mu(x)`` (``U = exp(i theta)``); SU(N) links are matrices.  The
plaquette is ``P_{mu nu}(x) = U_mu(x) U_nu(x+mu) U_mu(x+nu)^dag U_nu(x)^dag`` (CONVENTIONS.md),
so ``theta_P = theta_mu(x) + theta_nu(x+mu) - theta_mu(x+nu) - theta_nu(x)`` for U(1).  Functions
take the links padded by one site (:meth:`.geometry.FlowLattice.pad`, collective) so that a layer
pays for one halo exchange of its links.  Sums over sites are this rank's part (per sample);
:func:`lattice_hpc.comm.autograd.sum_over_ranks` makes them global.
"""

from __future__ import annotations

import math

import torch


def _link(fl, padded, mu, shift=None):
    """``U_mu(x + shift)`` over the interior from links padded by 1 (site axes from axis 2);
    ``shift`` is a direction (one step forward) or a dict ``{direction: steps}``."""
    s = [0] * fl.ndim
    for d, v in ({shift: 1} if isinstance(shift, int) else shift or {}).items():
        s[d] += v
    return fl.view(padded[:, mu], 1, s)


def u1_rectangle(fl, padded, mu: int, nu: int):
    """Angle of ``W(x)^dag L(x)``, ``L(x) = U_mu(x) U_nu(x+mu-nu)^dag U_mu(x-nu)^dag U_nu(x-nu)``:
    the 1x2 loop made of the active link's own loop ``W(x)`` and the passive plaquette below it,
    which does not contain ``U_mu(x)`` (see :func:`sun_rectangle`)."""
    lower = (-_link(fl, padded, nu, {mu: 1, nu: -1}) - _link(fl, padded, mu, {nu: -1})
             + _link(fl, padded, nu, {nu: -1}))
    upper = _link(fl, padded, nu, mu) - _link(fl, padded, mu, nu) - _link(fl, padded, nu)
    return lower - upper


def sun_rectangle(fl, padded, mu: int, nu: int):
    """``S(x)^dag S_-(x)``, ``S_-(x) = U_nu(x+mu-nu)^dag U_mu(x-nu)^dag U_nu(x-nu)``: with the
    active link's loop ``W = U_mu(x) S(x)`` and the passive plaquette through it,
    ``L = U_mu(x) S_-(x)``, this is ``W^dag L``, a 1x2 loop based at ``x`` that does not contain
    ``U_mu(x)`` nor any other active link of the stripes (:mod:`.masks`).  Conditioned on it, a
    coupling layer sees everything the two plaquettes of the link in the ``(mu, nu)`` plane know
    about it (in 2D U(1) the exact conditional density of the active link depends on nothing
    else)."""
    h = lambda m: m.conj().transpose(-1, -2)
    lower = h(_link(fl, padded, nu, {mu: 1, nu: -1})) @ h(_link(fl, padded, mu, {nu: -1})) \
        @ _link(fl, padded, nu, {nu: -1})
    return h(sun_staple(fl, padded, mu, nu)) @ lower


def u1_loop(fl, padded, mu: int, nu: int):
    """Angle of the oriented plaquette ``U_mu(x) U_nu(x+mu) U_mu(x+nu)^dag U_nu(x)^dag``."""
    return (_link(fl, padded, mu) + _link(fl, padded, nu, mu) - _link(fl, padded, mu, nu)
            - _link(fl, padded, nu))


def sun_staple(fl, padded, mu: int, nu: int):
    """``S(x) = U_nu(x+mu) U_mu(x+nu)^dag U_nu(x)^dag``, so that ``W = U_mu(x) S(x)`` is the loop."""
    a = _link(fl, padded, nu, mu)
    b = _link(fl, padded, mu, nu).conj().transpose(-1, -2)
    c = _link(fl, padded, nu).conj().transpose(-1, -2)
    return a @ b @ c


def sun_loop(fl, padded, mu: int, nu: int):
    """The untraced oriented plaquette ``W(x) = U_mu(x) S(x)``."""
    return _link(fl, padded, mu) @ sun_staple(fl, padded, mu, nu)


def planes(ndim: int):
    return [(mu, nu) for mu in range(ndim) for nu in range(mu + 1, ndim)]


def site_sum(x, ndim: int):
    """Sum over the ``ndim`` trailing site axes: one number per sample."""
    return x.sum(dim=tuple(range(-ndim, 0)))


def u1_action_local(fl, theta, beta: float, padded=None):
    """This rank's part of ``S = -beta sum_x sum_{mu<nu} cos theta_P`` per sample (``B``)."""
    p = fl.pad(theta, 2) if padded is None else padded
    return -beta * sum(site_sum(torch.cos(u1_loop(fl, p, mu, nu)), fl.ndim)
                       for mu, nu in planes(fl.ndim))


def sun_action_local(fl, U, beta: float, padded=None):
    """This rank's part of ``S = beta sum_x sum_{mu<nu} (1 - (1/N) Re Tr P)`` per sample."""
    p = fl.pad(U, 2) if padded is None else padded
    N = U.shape[-1]
    total = 0.0
    for mu, nu in planes(fl.ndim):
        tr = torch.diagonal(sun_loop(fl, p, mu, nu), dim1=-2, dim2=-1).sum(-1).real
        total = total + site_sum(1.0 - tr / N, fl.ndim)
    return beta * total


def u1_charge_local(fl, theta, padded=None):
    """This rank's part of the geometric charge ``Q = (1/2 pi) sum_x arg P_01(x)``, ``arg`` in
    ``[-pi, pi)`` (2D; the endpoint is a set of measure zero)."""
    p = fl.pad(theta, 2) if padded is None else padded
    a = torch.remainder(u1_loop(fl, p, 0, 1) + math.pi, 2 * math.pi) - math.pi
    return site_sum(a, fl.ndim) / (2 * math.pi)
