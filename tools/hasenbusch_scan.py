#!/usr/bin/env python3
"""Cost of Nf = 2 HMC trajectories with and without Hasenbusch preconditioning at equal
acceptance, from the energy violation of trial trajectories on an ensemble (issue 5).

    python tools/hasenbusch_scan.py --kappa 0.22 --heavy 0.15 0.19 --plain 8 10 \
        --hasenbusch 4,2 6,2 [--dims 4,4,4,4] [--beta 1.0] [--configs 4] [--separation 5]
        [--trials 8] [--target 0.85] [--out FILE] [--start CHECKPOINT] [--thermalize 10]
        [--gauge-steps 2] [--force-tol 1e-10]

**Ensemble.**  A hot start at ``beta`` (or the field of ``--start``, a checkpoint of a run) is
thermalized with ``--thermalize`` plain HMC trajectories (10 Omelyan steps, Metropolis test);
then ``--configs`` configurations are kept, ``--separation`` trajectories apart.

**Trials.**  For each integrator setting and each kept configuration, ``--trials`` trajectories are
integrated (:meth:`HMC.energy_violation`: momenta and pseudofermions drawn, no accept step, the
links restored).  The trial numbers are the same for every setting, so every setting sees the same
momenta on the same configurations.  Per setting:

- ``acceptance``: the mean Metropolis probability ``<min(1, exp(-dH))>``, the acceptance rate the
  setting would have in a run, with its standard error;
- ``rms_dH`` and ``predicted_acceptance = erfc(rms / (2 sqrt 2))``, the acceptance of a Gaussian
  ``dH`` (Gupta, Kilcup and Sharpe, Phys. Rev. D 38 (1988) 1278; Gupta et al., Phys. Lett. B 242
  (1990) 437), as a cross-check;
- the cost per trajectory: CG iterations (each is one application of ``D_hat^dag D_hat``; exact
  and independent of the machine's load) and seconds, both split by monomial, with the force
  evaluations per level.

Settings: plain ``n``: ``[fermions: n steps, gauge: --gauge-steps]``; Hasenbusch ``m,k`` at
``kappa_h``: ``[ratio det(D^dag D)/det(W^dag W): m steps, heavy det(W^dag W): k steps, gauge]``
(Omelyan on every level, each level nested inside every step of the one above).

**Comparison.**  For each Hasenbusch setting, ``comparison.pairs`` names the cheapest plain
setting whose acceptance is at least as high, and the ratios of their costs (iterations and
seconds; below 1: Hasenbusch is cheaper at no lower acceptance); ``cheapest_at_target`` names the
cheapest setting of each kind that reaches ``--target``.  All runs are in one process.
"""

from __future__ import annotations

import argparse
import datetime
import json
import math
import os
import platform
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import numpy as np  # noqa: E402

from lattice_hpc.comm import self_comm  # noqa: E402
from lattice_hpc.gauge import GaugeField  # noqa: E402
from lattice_hpc.gauge.observables import plaquette  # noqa: E402
from lattice_hpc.geometry import Lattice, parse_dims  # noqa: E402
from lattice_hpc.groups import get_group  # noqa: E402
from lattice_hpc.hmc import (HMC, HasenbuschRatio, Integrator, Level, WilsonGauge,  # noqa: E402
                             two_flavour_monomials)
from lattice_hpc.rng import CounterRNG  # noqa: E402


def _mean_err(x):
    x = np.asarray(x, dtype=float)
    return float(x.mean()), float(x.std(ddof=1) / math.sqrt(len(x))) if len(x) > 1 else math.nan


def summarize(name, dhs, its, secs, per_monomial, evals) -> dict:
    """One setting's figures from its trial ``dH``, iterations and seconds."""
    dhs = np.asarray(dhs, dtype=float)
    weight = np.exp(-np.clip(dhs, -700, 700))
    acc, acc_err = _mean_err(np.minimum(1.0, weight))
    rms = float(np.sqrt(np.mean(dhs ** 2)))
    # error of the rms from that of the mean square (delta method)
    ms_err = float(np.std(dhs ** 2, ddof=1) / math.sqrt(len(dhs)))
    rms_err = ms_err / (2 * rms) if rms > 0 else math.nan
    return {"setting": name, "trials": len(dhs), "acceptance": acc, "acceptance_err": acc_err,
            "rms_dH": rms, "rms_dH_err": rms_err,
            "predicted_acceptance": math.erfc(rms / (2 * math.sqrt(2))),
            "mean_exp_minus_dH": float(np.mean(weight)),
            "cg_iterations_per_trajectory": float(np.mean(its)),
            "seconds_per_trajectory": float(np.mean(secs)),
            "per_monomial": per_monomial, "force_evaluations_per_level": evals,
            "dH": [float(x) for x in dhs]}


def compare(rows, target) -> dict:
    """Hasenbusch against plain at equal acceptance (see the module docstring)."""
    plain = [r for r in rows if r["setting"].startswith("plain")]
    hasen = [r for r in rows if not r["setting"].startswith("plain")]
    pairs = []
    for h in hasen:
        ok = [p for p in plain if p["acceptance"] >= h["acceptance"]]
        if not ok:
            pairs.append({"hasenbusch": h["setting"], "plain": None,
                          "note": "no plain setting reaches this acceptance"})
            continue
        p = min(ok, key=lambda r: r["cg_iterations_per_trajectory"])
        pairs.append({"hasenbusch": h["setting"], "acceptance": h["acceptance"],
                      "plain": p["setting"], "plain_acceptance": p["acceptance"],
                      "iterations_ratio": h["cg_iterations_per_trajectory"]
                      / p["cg_iterations_per_trajectory"],
                      "seconds_ratio": h["seconds_per_trajectory"] / p["seconds_per_trajectory"]})
    best = {}
    for kind, group in (("plain", plain), ("hasenbusch", hasen)):
        ok = [r for r in group if r["acceptance"] >= target]
        best[kind] = (min(ok, key=lambda r: r["cg_iterations_per_trajectory"])["setting"]
                      if ok else None)
    return {"pairs": pairs, "target": target, "cheapest_at_target": best}


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--dims", default="4,4,4,4")
    ap.add_argument("--beta", type=float, default=1.0)
    ap.add_argument("--kappa", type=float, required=True)
    ap.add_argument("--heavy", type=float, nargs="+", required=True)
    ap.add_argument("--plain", type=int, nargs="+", required=True)
    ap.add_argument("--hasenbusch", nargs="+", required=True, help="m,k pairs")
    ap.add_argument("--configs", type=int, default=1)
    ap.add_argument("--separation", type=int, default=5)
    ap.add_argument("--trials", type=int, default=8, help="trials per configuration")
    ap.add_argument("--target", type=float, default=0.85)
    ap.add_argument("--seed", type=int, default=7)
    ap.add_argument("--start", help="checkpoint to start from (instead of a hot start)")
    ap.add_argument("--thermalize", type=int, default=10)
    ap.add_argument("--gauge-steps", type=int, default=2)
    ap.add_argument("--force-tol", type=float, default=1e-10)
    ap.add_argument("--out")
    a = ap.parse_args()
    dims = parse_dims(a.dims)
    lat = Lattice(dims, (1,) * len(dims), comm=self_comm())
    rng = CounterRNG(a.seed)
    if a.start:
        from lattice_hpc.io import read_checkpoint

        U = read_checkpoint(a.start, lat).field
    else:
        U = GaugeField.hot(lat, get_group("SU3"), rng)
    U.refresh()
    gauge = lambda: Level([WilsonGauge(a.beta)], a.gauge_steps)  # noqa: E731

    def plain(n):
        return Integrator([Level(two_flavour_monomials(a.kappa, force_tol=a.force_tol), n),
                           gauge()], 1.0)

    def hasen(kh, m, k):
        ms = two_flavour_monomials(a.kappa, hasenbusch_kappa=kh, force_tol=a.force_tol)
        ratio = [x for x in ms if isinstance(x, HasenbuschRatio)]
        rest = [x for x in ms if not isinstance(x, HasenbuschRatio)]
        return Integrator([Level(ratio, m), Level(rest, k), gauge()], 1.0)

    # the ensemble: a plain chain with the Metropolis test
    chain = HMC(U, plain(10), rng)
    t_chain = 10_000
    for _ in range(a.thermalize):
        chain.trajectory(t_chain)
        t_chain += 1
    configs, plaqs = [], []
    for c in range(a.configs):
        if c:
            for _ in range(a.separation):
                chain.trajectory(t_chain)
                t_chain += 1
        configs.append(U.copy())
        plaqs.append(plaquette(U)["plaquette"])
    print(json.dumps({"ensemble_plaquettes": plaqs}), file=sys.stderr, flush=True)

    settings = [(f"plain {n}", plain(n)) for n in a.plain]
    for kh in a.heavy:
        for mk in a.hasenbusch:
            m, k = map(int, mk.split(","))
            settings.append((f"hasenbusch kappa_h={kh} steps {m},{k}", hasen(kh, m, k)))
    rows = []
    for name, integ in settings:
        dhs, secs, its = [], [], []
        per = {}
        for c, cfg in enumerate(configs):
            U.links[...] = cfg.links
            U.refresh()
            h = HMC(U, integ, rng)
            for t in range(a.trials):
                t0 = time.perf_counter()
                dhs.append(h.energy_violation(1000 * c + t))  # the HMC resets the monomials' stats
                secs.append(time.perf_counter() - t0)
                solved = [m for m in h.monomials if "iterations" in getattr(m, "stats", {})]
                its.append(sum(m.stats["iterations"] for m in solved))
                for m in solved:
                    d = per.setdefault(m.name, {"iterations": 0.0, "solver_seconds": 0.0})
                    d["iterations"] += m.stats["iterations"]
                    d["solver_seconds"] += m.stats["solver_seconds"]
        n = len(dhs)
        per = {k: {q: v / n for q, v in d.items()} for k, d in per.items()}
        rows.append(summarize(name, dhs, its, secs, per, integ.force_evaluations()))
        short = {k: v for k, v in rows[-1].items() if k not in ("dH", "per_monomial")}
        print(json.dumps(short), file=sys.stderr, flush=True)
    out = {"dims": a.dims, "beta": a.beta, "kappa": a.kappa, "configs": a.configs,
           "separation": a.separation, "trials_per_config": a.trials, "start": a.start,
           "thermalize": a.thermalize, "gauge_steps": a.gauge_steps, "force_tol": a.force_tol,
           "ensemble_plaquettes": plaqs, "rows": rows, "comparison": compare(rows, a.target),
           "command": " ".join(sys.argv), "date": datetime.date.today().isoformat(),
           "machine": f"{platform.machine()}, {os.cpu_count()} cores, 1 process, "
                      f"OMP_NUM_THREADS={os.environ.get('OMP_NUM_THREADS', 'unset')}"}
    text = json.dumps(out, indent=1)
    if a.out:
        with open(a.out, "w") as fh:
            fh.write(text + "\n")
    print(json.dumps(out["comparison"], indent=1))


if __name__ == "__main__":
    main()
