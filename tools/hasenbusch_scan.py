#!/usr/bin/env python3
"""Cost of Nf = 2 HMC trajectories with and without Hasenbusch preconditioning at equal
acceptance, from the energy violation of trial trajectories (issue 5).

    python tools/hasenbusch_scan.py --kappa 0.22 --heavy 0.15 0.19 --plain 8 10 \
        --hasenbusch 4,2 6,2 [--dims 4,4,4,4] [--beta 1.0] [--trials 8] [--out FILE]
        [--start CHECKPOINT] [--thermalize 10] [--gauge-steps 2]

A hot start at ``beta`` (or the field of ``--start``, a checkpoint of a run) is thermalized with
``--thermalize`` plain trajectories (8 outer steps); then, for each
integrator setting, ``--trials`` trajectories are integrated from it (:meth:`HMC.energy_violation`,
no accept step) and the figures are: ``rms_dH``, the acceptance it predicts for Gaussian dH
(``erfc(rms / (2 sqrt 2))``, Gupta et al., Phys. Lett. B 242 (1990) 437), the seconds and CG
iterations per trajectory.  Plain: ``[n, 2]`` (the fermions with n Omelyan steps, the gauge action
nested ``--gauge-steps`` times); Hasenbusch ``m,k``: the ratio with m steps, the heavy term with k
nested steps, the gauge action nested below that.  All in one process, one after another.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import numpy as np  # noqa: E402

from lattice_hpc.comm import self_comm  # noqa: E402
from lattice_hpc.gauge import GaugeField  # noqa: E402
from lattice_hpc.geometry import Lattice, parse_dims  # noqa: E402
from lattice_hpc.groups import get_group  # noqa: E402
from lattice_hpc.hmc import (HMC, HasenbuschRatio, Integrator, Level, WilsonGauge,  # noqa: E402
                             two_flavour_monomials)
from lattice_hpc.rng import CounterRNG  # noqa: E402


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--dims", default="4,4,4,4")
    ap.add_argument("--beta", type=float, default=1.0)
    ap.add_argument("--kappa", type=float, required=True)
    ap.add_argument("--heavy", type=float, nargs="+", required=True)
    ap.add_argument("--plain", type=int, nargs="+", required=True)
    ap.add_argument("--hasenbusch", nargs="+", required=True, help="m,k pairs")
    ap.add_argument("--trials", type=int, default=8)
    ap.add_argument("--seed", type=int, default=7)
    ap.add_argument("--start", help="checkpoint to start from (instead of a hot start)")
    ap.add_argument("--thermalize", type=int, default=10)
    ap.add_argument("--gauge-steps", type=int, default=2)
    ap.add_argument("--out")
    a = ap.parse_args()
    lat = Lattice(parse_dims(a.dims), (1,) * len(parse_dims(a.dims)), comm=self_comm())
    rng = CounterRNG(a.seed)
    if a.start:
        from lattice_hpc.io import read_checkpoint

        U = read_checkpoint(a.start, lat).field
    else:
        U = GaugeField.hot(lat, get_group("SU3"), rng)
    U.refresh()
    gauge = lambda: Level([WilsonGauge(a.beta)], a.gauge_steps)  # noqa: E731

    def plain(n):
        return Integrator([Level(two_flavour_monomials(a.kappa), n), gauge()], 1.0)

    def hasen(kh, m, k):
        ms = two_flavour_monomials(a.kappa, hasenbusch_kappa=kh)
        ratio = [x for x in ms if isinstance(x, HasenbuschRatio)]
        rest = [x for x in ms if not isinstance(x, HasenbuschRatio)]
        return Integrator([Level(ratio, m), Level(rest, k), gauge()], 1.0)

    hmc = HMC(U, plain(8), rng)
    for t in range(a.thermalize):
        hmc.trajectory(10_000 + t)
    settings = [(f"plain {n}", plain(n)) for n in a.plain]
    for kh in a.heavy:
        for mk in a.hasenbusch:
            m, k = map(int, mk.split(","))
            settings.append((f"hasenbusch kappa_h={kh} steps {m},{k}", hasen(kh, m, k)))
    rows = []
    for name, integ in settings:
        h = HMC(U, integ, rng)
        dhs, secs, its = [], [], []
        for t in range(a.trials):
            t0 = time.perf_counter()
            dhs.append(h.energy_violation(t))
            secs.append(time.perf_counter() - t0)
            its.append(sum(m.stats.get("iterations", 0) for m in h.monomials if hasattr(m, "stats")))
        rms = float(np.sqrt(np.mean(np.square(dhs))))
        rows.append({"setting": name, "rms_dH": rms,
                     "predicted_acceptance": math.erfc(rms / (2 * math.sqrt(2))),
                     "seconds_per_trajectory": float(np.mean(secs)),
                     "cg_iterations_per_trajectory": float(np.mean(its))})
        print(json.dumps(rows[-1]), file=sys.stderr, flush=True)
    out = {"dims": a.dims, "beta": a.beta, "kappa": a.kappa, "trials": a.trials, "start": a.start,
           "thermalize": a.thermalize, "gauge_steps": a.gauge_steps, "rows": rows,
           "command": " ".join(sys.argv)}
    text = json.dumps(out, indent=1)
    if a.out:
        with open(a.out, "w") as fh:
            fh.write(text + "\n")
    print(text)


if __name__ == "__main__":
    main()
