#!/usr/bin/env python3
"""Exactness check of a trained flow by importance reweighting, independent of the chain.

    python tools/reweight_flow.py MODEL.h5 --beta B [--kappa K] [--samples N] [--seed S] [--out FILE]

Draws ``N`` fresh proposals ``U = f(z)`` of the flow (prior counter purpose ``("reweight",)``,
so they are not the chain's), and estimates ``<O>_p = sum w O / sum w`` with ``w = exp(-S -
log q)`` (the delta-method error of the ratio), for the plaquette and ``Q^2``, against the exact
finite-volume values (:mod:`lattice_hpc.gauge.exact_u1`).  It also runs an independence
Metropolis chain over the same proposals (NumPy's generator for the uniforms).  With ``--kappa``
the target is the Schwinger model with two Wilson flavours (issue 14): ``w = exp(-S - log q)
det(D^dag D)`` with the dense determinant (:func:`lattice_hpc.fermions.dense.
logdet_normal_dense`, antiperiodic in time), an estimate independent of every chain and of the
pseudofermions, against which the flow and HMC chains are compared (there is no exact value
then; the pure-gauge ones are printed for reference).  If the
reweighted values agree with the exact ones, ``log q`` is the density of the proposals; a chain
of the application that disagrees while this agrees points at the chain (or at its error
estimate), one that agrees with both at neither.  One process, float64.

A 4D SU(N) flow is checked against its pure-gauge target: the plaquette, the real part and the
modulus of the Polyakov loop ``(1/N) Tr prod_t U_t`` (spatial average), reweighted and under
``q``, with the offline chain's values beside them, to be compared with the heatbath.  With
``--kappa`` (4D SU(3)) the target has two Wilson flavours and each proposal's weight carries the
unbiased pseudofermion estimate of ``det(D^dag D)``, ``exp(-phi^dag (D^dag D)^-1 phi + eta^dag
eta)`` with ``phi = M_0^dag eta`` (the triangular conditional of the flow chains, own counters),
so that the reweighting checks the chains' weights without their Metropolis dynamics.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import sys

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def main() -> int:
    import torch

    from lattice_hpc.comm import self_comm
    from lattice_hpc.flows.fermions import gauge_field
    from lattice_hpc.flows.geometry import FlowLattice
    from lattice_hpc.gauge.observables import polyakov_loop
    from lattice_hpc.flows.mcmc import weigh
    from lattice_hpc.flows.model import GaugeFlow
    from lattice_hpc.flows.modelfile import read_model
    from lattice_hpc.flows.prior import haar_sample
    from lattice_hpc.gauge import exact_u1
    from lattice_hpc.geometry import Lattice
    from lattice_hpc.groups import get_group
    from lattice_hpc.rng import CounterRNG

    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("model")
    ap.add_argument("--beta", type=float, required=True)
    ap.add_argument("--kappa", type=float, default=0.0,
                    help="two Wilson flavours at this kappa (0: pure gauge)")
    ap.add_argument("--samples", type=int, default=20000)
    ap.add_argument("--seed", type=int, default=78)
    ap.add_argument("--batch", type=int, default=250)
    ap.add_argument("--out", default=None)
    a = ap.parse_args()
    torch.set_num_threads(1)
    comm = self_comm()
    arch, weights, _ = read_model(a.model, comm)
    u1_2d = arch["group"] == "U1" and len(arch["dims"]) == 2
    if not u1_2d and (arch["group"] == "U1" or len(arch["dims"]) != 4):
        sys.exit(f"{a.model}: a {arch['group']} {len(arch['dims'])}D flow; this check is for "
                 f"2D U(1) and 4D SU(N)")
    if a.kappa and not u1_2d and arch["group"] != "SU3":
        sys.exit(f"--kappa: two Wilson flavours are for the 2D Schwinger model and 4D SU(3); "
                 f"{a.model} is a 4D {arch['group']} flow")
    lat = Lattice(tuple(arch["dims"]), (1,) * len(arch["dims"]), comm=comm)
    fl = FlowLattice(lat, "cpu", "double")
    flow = GaugeFlow(fl, arch, 0)
    flow.load_state_dict({k: torch.as_tensor(v) for k, v in weights.items()})
    group, rng = get_group(arch["group"]), CounterRNG(a.seed)
    fermion = None
    if a.kappa and not u1_2d:  # 4D: the pseudofermion estimate of det(D^dag D), its own counters
        from lattice_hpc.flows.determinant import FermionDeterminant

        fermion = FermionDeterminant(lat, group, a.kappa, "pseudofermion", CounterRNG(a.seed + 1),
                                     CounterRNG(a.seed + 2))
    lws, obs_all = [], {}
    with torch.no_grad():
        for j in range(a.samples // a.batch):
            z = haar_sample(fl, group, rng, ("reweight",), range(j * a.batch, (j + 1) * a.batch))
            U, log_q = flow.sample(z)
            lw, obs = weigh(fl, group, U, log_q, a.beta)
            if fermion is not None:
                lw = lw + fermion.proposal_terms(U, j * a.batch)
            elif a.kappa:
                from lattice_hpc.fermions.dense import logdet_normal_dense

                links = torch.exp(1j * U).numpy()[..., None, None]  # (B, 2, L_t, L_x, 1, 1)
                lw = lw + logdet_normal_dense(links, a.kappa)
            if u1_2d:
                obs = {"plaquette": obs["plaquette"], "Q2": obs["topological_charge_sq"]}
            else:
                p = np.array([polyakov_loop(gauge_field(lat, group, u.numpy())) for u in U])
                obs = {"plaquette": obs["plaquette"], "polyakov_re": p.real, "polyakov_abs": np.abs(p)}
            lws.append(lw)
            for k, v in obs.items():
                obs_all.setdefault(k, []).append(v)
    lw = np.concatenate(lws)
    series = {k: np.concatenate(v) for k, v in obs_all.items()}
    w = np.exp(lw - lw.max())
    V = int(np.prod(arch["dims"]))
    exact = {"plaquette": exact_u1.plaquette(a.beta, V),
             "Q2": exact_u1.topological_susceptibility(a.beta, V)[0]} if u1_2d else {}
    out = {"model": a.model, "beta": a.beta, "kappa": a.kappa, "samples": int(len(lw)), "seed": a.seed,
           "ess": float(w.sum() ** 2 / (w * w).sum() / len(w)),
           "log_w_mean": float(lw.mean()), "log_w_std": float(lw.std())}
    for name, o in series.items():
        m = float((w * o).sum() / w.sum())
        err = float(math.sqrt(((w * (o - m)) ** 2).sum()) / w.sum())
        out[name] = {"reweighted": m, "error": err, "mean_under_q": float(o.mean())}
        if name not in exact:
            continue
        if a.kappa:
            out[name]["pure_gauge_exact"] = exact[name]
        else:
            out[name].update({"exact": exact[name], "deviation_sigma": (m - exact[name]) / err})
    gen = np.random.default_rng(a.seed)
    cur_lw, cur, chain, acc = lw[0], 0, [], 0
    for i in range(1, len(lw)):
        if math.log(gen.random()) < lw[i] - cur_lw:
            cur_lw, cur, acc = lw[i], i, acc + 1
        chain.append(cur)
    out["offline_chain"] = {"acceptance": acc / len(chain),
                            **{k: float(np.mean(o[chain])) for k, o in series.items()}}
    text = json.dumps(out, indent=1)
    print(text)
    if a.out:
        with open(a.out, "w") as fh:
            fh.write(text + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
