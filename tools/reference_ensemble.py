#!/usr/bin/env python3
"""The reference ensemble of issue 5: run jobs/hmc_su3_nf2_wilson_b1.0_k0.1_4x4x4x4.toml and write
its observables with Gamma-method errors and tau_int to a results file.

    python tools/reference_ensemble.py [--np 1] [--workdir runs] [--out FILE]

Observables: plaquette, Polyakov loop (real part and modulus), the pion correlator at every t
(``pion[1]`` and ``pion[2]`` are the ones the flow sampler is compared with), acceptance and
``exp(-dH)``.  The results file holds the job file's text, the run's summary and the analysis, so
it says exactly what made it.
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import subprocess
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
JOB = os.path.join(ROOT, "jobs", "hmc_su3_nf2_wilson_b1.0_k0.1_4x4x4x4.toml")
OBS = ["plaquette", "polyakov_re", "polyakov_abs", "pion[0]", "pion[1]", "pion[2]", "pion[3]",
       "accepted", "exp_minus_dH", "dH"]


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--np", type=int, default=1)
    ap.add_argument("--workdir", default=os.path.join(ROOT, "runs"))
    ap.add_argument("--out", default=os.path.join(ROOT, "bench", "results",
                                                  "reference_ensemble_nf2_b1.0_k0.1_4x4x4x4.json"))
    args = ap.parse_args()
    run_dir = os.path.join(args.workdir, "reference_ensemble")
    env = dict(os.environ, OMP_NUM_THREADS="1")
    launcher = ["mpirun", "-n", str(args.np)] if args.np > 1 else []
    cli = [sys.executable, "-m", "lattice_hpc.cli"]
    run = subprocess.run(launcher + cli + ["run", JOB, "--set", f'output.dir="{run_dir}"'],
                         capture_output=True, text=True, env=env)
    if run.returncode:
        sys.stderr.write(run.stderr[-4000:])
        return run.returncode
    summary = json.loads(run.stdout)
    ana = subprocess.run(cli + ["analyze", run_dir, "--json"], capture_output=True, text=True, env=env)
    if ana.returncode:
        sys.stderr.write(ana.stderr[-4000:])
        return ana.returncode
    analysis = json.loads(ana.stdout)["observables"]
    with open(JOB) as fh:
        job_text = fh.read()
    result = {"ensemble": "Nf=2 Wilson, beta=1.0, kappa=0.1, 4^4, HMC", "date": datetime.date.today().isoformat(),
              "job_file": os.path.relpath(JOB, ROOT), "job_text": job_text, "ranks": args.np,
              "trajectories": summary["trajectories"], "measurements": summary["measurements"],
              "seconds_per_trajectory": summary["seconds_per_trajectory"],
              "observables": {k: analysis[k] for k in OBS if k in analysis},
              "note": "errors: Gamma method (Wolff, hep-lat/0306017, S = 1.5); tau_int in trajectories"}
    os.makedirs(os.path.dirname(args.out), exist_ok=True)
    with open(args.out, "w") as fh:
        json.dump(result, fh, indent=1)
        fh.write("\n")
    print(json.dumps(result["observables"], indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
