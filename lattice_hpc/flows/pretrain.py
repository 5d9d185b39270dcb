"""The one-plaquette start of a U(1) flow (``train.init = "plaquette"``).

In 2D the Wilson weight ``exp(beta sum_x cos theta_P(x))`` makes the plaquettes independent up
to the one constraint ``prod_x P(x) = 1``, each with the density

    p_1(theta) = exp(beta cos theta) / (2 pi I_0(beta)).

In the sweep order of the masks (:func:`.masks.sweep_masks`) the active loop of every layer
enters it with the uniform distribution of the Haar prior, independent of everything already
transformed, and is never changed again; so the ideal kernel of every layer is the one map ``h``
of the circle that pushes the uniform angle to ``p_1``, whatever the context, and the whole flow
is then exact but for the last plaquette ``P(0, 0)``, which stays uniform: its
``KL = ln I_0(beta)`` (4.2 nats at beta = 6) is what the context networks and the training have
to reduce.

This module learns ``h``: the layers' own kernel (circular spline or NCP mixture, with ``bins``)
with constant parameters, by minimising

    KL(h_# uniform || p_1) = (1/n) sum_i [ -log h'(u_i) - beta cos h(u_i) ] + ln I_0(beta),

on the midpoint rule ``u_i = 2 pi (i + 1/2) / n`` with L-BFGS (a deterministic problem: the
same numbers on every run; rank 0's result is broadcast).  :func:`start_from_plaquette` puts the
result into every layer's output bias (the output weights stay zero), so that the untrained flow
is this product map rather than the identity; the reverse-KL training of the whole flow goes on
from there.  The same start helps the stripes order less: there a transformed plaquette is changed
again when it is passive in a later layer.
"""

from __future__ import annotations

import math

import torch

from ..errors import ConfigError
from .splines import TWO_PI
from .u1 import circle_kernel


def plaquette_kl(kind: str, params, bins: int, beta: float, points: int = 4096):
    """``KL(h_# uniform || p_1)`` in nats by the midpoint rule on ``points`` angles
    (differentiable in ``params``)."""
    u = (torch.arange(points, dtype=torch.float64) + 0.5) * (TWO_PI / points)
    y, ld = circle_kernel(kind, u, params.expand(points, params.shape[-1]), bins)
    log_i0 = beta + math.log(float(torch.special.i0e(torch.tensor(beta, dtype=torch.float64))))
    return (-ld - beta * torch.cos(y)).mean() + log_i0


def plaquette_kernel(kind: str, bins: int, beta: float, iterations: int = 1000,
                     points: int = 16384):
    """The constant kernel parameters (float64, ``3 bins`` for a spline, ``2 bins + 1`` for NCP)
    that push the uniform angle to ``p_1``, and their KL in nats.

    The problem is deterministic and small, so L-BFGS (strong Wolfe line search) solves it, from
    two starts (all zero: the identity; and ``0.01 k`` for parameter ``k``, which breaks the
    symmetry of the NCP mixture's components); the better one is kept.  With 6 NCP components the
    KL is about 1e-5 nats at beta = 6 (the mixture of projections fits ``p_1`` well), with 8 spline
    bins about 5e-3."""
    if kind not in ("spline", "ncp"):
        raise ConfigError(f"train.init = 'plaquette': unknown U(1) kernel {kind!r}")
    n = 3 * bins if kind == "spline" else 2 * bins + 1
    best = None
    for start in (torch.zeros(n, dtype=torch.float64), 0.01 * torch.arange(n, dtype=torch.float64)):
        params = start.clone().requires_grad_()
        opt = torch.optim.LBFGS([params], lr=1.0, max_iter=iterations, history_size=50,
                                line_search_fn="strong_wolfe", tolerance_grad=1e-12,
                                tolerance_change=1e-15)

        def closure():
            opt.zero_grad()
            kl = plaquette_kl(kind, params, bins, beta, points)
            kl.backward()
            return kl

        opt.step(closure)
        with torch.no_grad():
            kl = float(plaquette_kl(kind, params, bins, beta, points))
        if math.isfinite(kl) and (best is None or kl < best[1]):
            best = (params.detach().clone(), kl)
    if best is None:
        raise ConfigError(f"train.init = 'plaquette': the one-plaquette fit of the {kind} kernel "
                          f"at beta = {beta} did not give a finite KL")
    return best


def start_from_plaquette(flow, beta: float, comm=None, iterations: int = 1000,
                         points: int = 16384) -> float:
    """Put the one-plaquette kernel into every layer of the U(1) ``flow`` (see the module
    docstring); returns its KL per plaquette in nats.  Collective when ``comm`` is given: rank 0's
    parameters are broadcast, so the weights are bitwise the same on every rank."""
    from ..comm.autograd import broadcast_tensor

    arch = flow.arch
    if arch["group"] != "U1":
        raise ConfigError(f"train.init = 'plaquette' starts the kernels of a U(1) flow; this flow "
                          f"is {arch['group']} (use train.init = 'identity')")
    params, kl = plaquette_kernel(arch["kernel"], int(arch["bins"]), beta, iterations, points)
    if comm is not None:
        both = broadcast_tensor(torch.cat([params, torch.tensor([kl], dtype=torch.float64)]), comm)
        params, kl = both[:-1], float(both[-1])
    with torch.no_grad():
        for layer in flow.layers:
            bias = layer.net.out.bias
            bias.copy_(params.to(bias.dtype).to(bias.device))
    return kl
