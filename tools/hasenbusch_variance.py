#!/usr/bin/env python3
"""The variance of the pseudofermion part of a flow chain's log-weights, with and without the
even/odd and the Hasenbusch factorisations (issue 14; :mod:`lattice_hpc.flows.determinant`),
from dense spectra.

For one factor with proposal ``phi = T^dag eta`` and action ``phi^dag X phi`` the part of
``log w`` is ``-eta^dag (T X T^dag - 1) eta``: over ``eta`` its variance is ``sum (1 - mu)^2``
over the eigenvalues ``mu`` of ``T X T^dag``, and ``exp`` of it has a finite variance only if
every ``mu > 1/2``.  This script draws 2D U(1) fields with Gaussian link angles (plaquette about
``exp(-2 sigma^2)``), builds the dense even/odd operators, and prints both for a list of
factorisations.  The rows ``"evenodd": false`` are the pseudofermion on all sites instead, with
``D = 1 - kappa H`` itself and its triangular split ``(1 - kappa H_<)(1 - kappa H_>)`` (sites in
memory order): what the even/odd factorisation ``det D = det D_hat`` (``D_oo = 1``) saves.
Usage::

    python tools/hasenbusch_variance.py [--L 8] [--out bench/results/hasenbusch_variance_....json]
"""

import argparse
import json

import numpy as np

from lattice_hpc.fermions.dense import dense_wilson


def operators(theta, kappa, L, ns=2):
    """``(M, M_0)``: the even/odd Schur operator and its triangular approximation (dense)."""
    D = dense_wilson(np.exp(1j * theta)[..., None, None], kappa)
    t, x = np.divmod(np.arange(L * L), L)
    ev, od = np.nonzero((t + x) % 2 == 0)[0], np.nonzero((t + x) % 2 == 1)[0]
    ie = (ev[:, None] * ns + np.arange(ns)).ravel()
    io = (od[:, None] * ns + np.arange(ns)).ravel()
    K2 = D[np.ix_(ie, io)] @ D[np.ix_(io, ie)]  # kappa^2 H_eo H_oe
    M = np.eye(len(ie)) - K2
    site = np.repeat(np.arange(len(ev)), ns)
    low = np.where(site[:, None] > site[None, :], K2, 0)
    up = np.where(site[:, None] < site[None, :], K2, 0)
    return M, (np.eye(len(ie)) - low) @ (np.eye(len(ie)) - up)


def full_lattice(theta, kappa):
    """``(variance, mu_min)`` of one all-sites pseudofermion with the triangular proposal."""
    D = dense_wilson(np.exp(1j * theta)[..., None, None], kappa)
    n = D.shape[0]
    site = np.arange(n) // 2
    H = np.eye(n) - D  # kappa H
    T = (np.eye(n) - np.where(site[:, None] > site[None, :], H, 0)) @ \
        (np.eye(n) - np.where(site[:, None] < site[None, :], H, 0))
    mu = np.linalg.eigvalsh(T @ np.linalg.solve(D.conj().T @ D, T.conj().T))
    return float(np.sum((1 - mu) ** 2)), float(mu.min())


def factors(theta, kappa, levels, L):
    """``[(variance, mu_min)]`` per factor of the factorisation ``levels`` (``[]``: one)."""
    ks = list(levels) + [kappa]
    prev, T = operators(theta, ks[0], L)
    A = T @ np.linalg.solve(prev.conj().T @ prev, T.conj().T)
    out = [A]
    for a, b in zip(ks[:-1], ks[1:]):
        Mb, _ = operators(theta, b, L)
        _, Tr = operators(theta, np.sqrt(b * b - a * a), L)
        B = Tr @ prev
        out.append(B @ np.linalg.solve(Mb.conj().T @ Mb, B.conj().T))
        prev = Mb
    res = []
    for A in out:
        mu = np.linalg.eigvalsh(A)
        res.append((float(np.sum((1 - mu) ** 2)), float(mu.min())))
    return res


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--L", type=int, default=8)
    ap.add_argument("--fields", type=int, default=4)
    ap.add_argument("--sigma2", type=float, default=0.18)
    ap.add_argument("--out", default="")
    a = ap.parse_args()
    rng = np.random.default_rng(1)
    cases = [(0.24, []), (0.24, [0.2]), (0.24, [0.17, 0.21]),
             (0.276, []), (0.276, [0.2]), (0.276, [0.22]), (0.276, [0.2, 0.25]),
             (0.276, [0.18, 0.23, 0.26])]
    fields = [rng.normal(0, np.sqrt(a.sigma2), (2, a.L, a.L)) for _ in range(a.fields)]
    rows = []
    for kappa in (0.24, 0.276):
        per = [full_lattice(th, kappa) for th in fields]
        rows.append({"kappa": kappa, "evenodd": False, "hasenbusch": [],
                     "variance_total": round(float(np.mean([v for v, _ in per])), 3),
                     "mu_min_per_factor": [round(min(m for _, m in per), 3)]})
        print(json.dumps(rows[-1]))
    for kappa, levels in cases:
        per = [factors(th, kappa, levels, a.L) for th in fields]
        var = np.mean([[v for v, _ in f] for f in per], axis=0)
        mumin = np.min([[m for _, m in f] for f in per], axis=0)
        rows.append({"kappa": kappa, "evenodd": True, "hasenbusch": levels, "variance_per_factor": var.round(3).tolist(),
                     "variance_total": round(float(var.sum()), 3), "mu_min_per_factor": mumin.round(3).tolist(),
                     "finite_weight_variance": bool(mumin.min() > 0.5)})
        print(json.dumps(rows[-1]))
    if a.out:
        with open(a.out, "w") as f:
            json.dump({"what": "variance of the pseudofermion part of log w over eta, mean over fields; "
                               "mu_min: the smallest eigenvalue of T X T^dag over the fields",
                       "lattice": [a.L, a.L], "fields": a.fields, "link_angle_variance": a.sigma2,
                       "script": "tools/hasenbusch_variance.py", "machine": "cpu-2core VM",
                       "rows": rows}, f, indent=1)


if __name__ == "__main__":
    main()
