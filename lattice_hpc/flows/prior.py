"""The prior of the flows: Haar measure on every link, drawn from the counter-based generator.

Link ``U_mu(x)`` of sample ``b`` comes from the counter ``(seed, global site x, purpose + (b, mu))``
of :class:`lattice_hpc.rng.CounterRNG`, so a prior sample is the same field on every process
grid, and the same whichever rank or data-parallel replica draws it.  U(1): ``theta = 2 pi u``;
SU(N): Gram-Schmidt of a complex Gaussian matrix with the determinant divided out
(:meth:`lattice_hpc.groups.SUN.haar`).  The density with respect to the normalised Haar measure
is 1, so ``log r(z) = 0`` and the model density of a flow is ``log q(f(z)) = -log|det J_f(z)|``.
"""

from __future__ import annotations

import math

import numpy as np
import torch


def haar_sample(fl, group, rng, purpose: tuple, samples) -> torch.Tensor:
    """Prior links for the global sample indices ``samples`` on this rank's block.

    Returns angles ``(B, ndim, *sites)`` for U(1), matrices ``(B, ndim, *sites, N, N)`` for SU(N),
    on the flow's device and precision.
    """
    sites = fl.lattice.global_index
    out = []
    for b in samples:
        links = []
        for mu in range(fl.ndim):
            p = tuple(purpose) + (int(b), mu)
            if group.N == 1:
                links.append(2.0 * math.pi * rng.uniform(p, sites, 1)[..., 0])
            else:
                links.append(group.haar(rng.normal(p, sites, group.haar_normals)))
        out.append(np.stack(links))
    arr = np.stack(out) if out else np.zeros((0, fl.ndim) + fl.site_shape
                                              + (() if group.N == 1 else (group.N, group.N)))
    dtype = fl.real if group.N == 1 else fl.complex
    return torch.as_tensor(arr).to(device=fl.device, dtype=dtype)
