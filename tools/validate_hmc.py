#!/usr/bin/env python3
"""Validation runs of the HMC (issue 5), rerunnable by anyone; writes one JSON file of results.

    python tools/validate_hmc.py [--only u1,su3,hasenbusch] [--np 2] [--out FILE] [--workdir DIR]

- ``u1``: 2D U(1) HMC at beta = 2 and 4, L = 16 (jobs/hmc_u1_*): plaquette and topological
  susceptibility of the geometric charge against their exact finite-volume values
  (:mod:`lattice_hpc.gauge.exact_u1`), errors from the Gamma method;
- ``su3``: quenched SU(3) at beta = 5.7, 8^4: HMC (jobs/hmc_su3_b5.7_8x8x8x8.toml) against the
  heatbath chain (jobs/quenched_su3_b5.7_8x8x8x8.toml), plaquette within 2 combined errors;
- ``hasenbusch``: Nf = 2 Wilson at a light mass (jobs/hmc_su3_nf2_*_light*.toml) with and without
  Hasenbusch preconditioning: acceptance and cost (seconds and CG iterations per trajectory) of
  each; Hasenbusch must be cheaper at an acceptance not lower (within 2 combined errors), and the
  two plaquettes must agree (both algorithms are exact).

Every run goes through ``mpirun -n NP lattice-hpc run JOB`` into a fresh run directory (with
``--reuse``, the run already there is continued), and the comparisons read the run's
records.jsonl.  A comparison passes when the difference is within 2 standard errors (combined in
quadrature with the other side's, if any).
"""

from __future__ import annotations

import argparse
import datetime
import json
import math
import os
import shutil
import subprocess
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
sys.path.insert(0, ROOT)

from lattice_hpc.analysis import gamma_method  # noqa: E402
from lattice_hpc.gauge import exact_u1  # noqa: E402


REUSE = False  # --reuse: continue the runs found in the work directory instead of starting afresh


def run(job, workdir, name, np_, sets=()):
    out = os.path.join(workdir, name)
    if not REUSE:
        shutil.rmtree(out, ignore_errors=True)
    cmd = ["mpirun", "-n", str(np_), sys.executable, "-m", "lattice_hpc.cli", "run",
           os.path.join(ROOT, "jobs", job), "--set", f'output.dir="{out}"']
    for s in sets:
        cmd += ["--set", s]
    env = dict(os.environ, OMP_NUM_THREADS="1")
    print("+", " ".join(cmd), file=sys.stderr, flush=True)
    proc = subprocess.run(cmd, capture_output=True, text=True, env=env)
    if proc.returncode:
        sys.stderr.write(proc.stderr[-4000:])
        raise SystemExit(f"{job} failed with status {proc.returncode}")
    with open(os.path.join(out, "records.jsonl")) as fh:
        records = [json.loads(line) for line in fh]
    return json.loads(proc.stdout), records


def series(records, key):
    return [float(r[key]) for r in records]


def compare(name, measured, err, reference, ref_err=0.0) -> dict:
    sigma = math.hypot(err, ref_err)
    dev = (measured - reference) / sigma if sigma > 0 else math.inf
    return {"quantity": name, "measured": measured, "error": err, "reference": reference,
            "reference_error": ref_err, "deviation_sigma": dev, "pass": abs(dev) <= 2.0}


def validate_u1(workdir, np_) -> list:
    out = []
    for beta in (2.0, 4.0):
        job = f"hmc_u1_b{beta}_16x16.toml"
        summary, recs = run(job, workdir, f"u1_b{beta}", np_)
        V = 16 * 16
        p = gamma_method(series(recs, "plaquette"))
        q2 = gamma_method([q * q / V for q in series(recs, "topological_charge")])
        tq = gamma_method(series(recs, "topological_charge"))
        out.append({**compare(f"U(1) beta={beta} L=16 plaquette", p.value, p.error,
                              exact_u1.plaquette(beta, V)), "tau_int": p.tau_int})
        out.append({**compare(f"U(1) beta={beta} L=16 chi_t", q2.value, q2.error,
                              exact_u1.topological_susceptibility(beta, V)[1]),
                    "tau_int": q2.tau_int, "tau_int_Q": tq.tau_int,
                    "acceptance": summary["acceptance"][0], "trajectories": len(recs)})
    return out


def validate_su3(workdir, np_) -> list:
    hs, hrec = run("hmc_su3_b5.7_8x8x8x8.toml", workdir, "su3_hmc", np_)
    qs, qrec = run("quenched_su3_b5.7_8x8x8x8.toml", workdir, "su3_heatbath", np_)
    h = gamma_method(series(hrec, "plaquette"))
    q = gamma_method(series(qrec, "plaquette"))
    return [{**compare("SU(3) beta=5.7 8^4 plaquette: HMC vs heatbath", h.value, h.error, q.value, q.error),
             "tau_int_hmc": h.tau_int, "tau_int_heatbath": q.tau_int,
             "acceptance": hs["acceptance"][0], "seconds_per_trajectory": hs["seconds_per_trajectory"]}]


def validate_hasenbusch(workdir, np_) -> list:
    """Plain against Hasenbusch at a light mass: both are exact, so their plaquettes must agree;
    Hasenbusch passes when it costs fewer CG iterations per trajectory at an acceptance that is
    not lower beyond 2 combined standard errors (acceptance: the mean Metropolis probability
    ``min(1, exp(-dH))`` of the measured trajectories, errors from the Gamma method)."""
    runs = {}
    for tag, job in (("plain", "hmc_su3_nf2_wilson_light.toml"),
                     ("hasenbusch", "hmc_su3_nf2_wilson_light_hasenbusch.toml")):
        s, recs = run(job, workdir, f"nf2_{tag}", np_)
        secs = [r["seconds"]["total"] for r in recs]
        its = [sum(m.get("iterations", 0) for m in r.get("monomials", {}).values()) for r in recs]
        prob = gamma_method([min(1.0, r["exp_minus_dH"]) for r in recs])
        plaq = gamma_method(series(recs, "plaquette"))
        dsl = [r["seconds"]["dslash_fraction"] for r in recs]
        runs[tag] = {"run": tag, "job": job, "acceptance": s["acceptance"],
                     "metropolis_probability": prob.value, "metropolis_probability_err": prob.error,
                     "seconds_per_trajectory": sum(secs) / len(secs),
                     "cg_iterations_per_trajectory": sum(its) / len(its),
                     "dslash_fraction": sum(dsl) / len(dsl), "plaquette": plaq.value,
                     "plaquette_err": plaq.error, "plaquette_tau_int": plaq.tau_int,
                     "trajectories": len(recs)}
    p, h = runs["plain"], runs["hasenbusch"]
    sigma = math.hypot(p["metropolis_probability_err"], h["metropolis_probability_err"])
    acc_dev = (h["metropolis_probability"] - p["metropolis_probability"]) / sigma
    ratio = h["cg_iterations_per_trajectory"] / p["cg_iterations_per_trajectory"]
    cost = {"quantity": "Hasenbusch / plain cost per trajectory at equal acceptance",
            "cg_iterations_ratio": ratio,
            "seconds_ratio": h["seconds_per_trajectory"] / p["seconds_per_trajectory"],
            "acceptance_difference_sigma": acc_dev, "pass": ratio < 1.0 and acc_dev >= -2.0}
    same = compare("Nf=2 plaquette: Hasenbusch vs plain", h["plaquette"], h["plaquette_err"],
                   p["plaquette"], p["plaquette_err"])
    return [p, h, cost, same]


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--only", default="u1,su3,hasenbusch")
    ap.add_argument("--np", type=int, default=2)
    ap.add_argument("--workdir", default=os.path.join(ROOT, "runs", "validation"))
    ap.add_argument("--out", default=None)
    ap.add_argument("--reuse", action="store_true",
                    help="continue the runs already in the work directory (a complete run is only "
                         "read; exact restart makes the chain the same as an uninterrupted one)")
    args = ap.parse_args()
    global REUSE
    REUSE = args.reuse
    parts = {"u1": validate_u1, "su3": validate_su3, "hasenbusch": validate_hasenbusch}
    results = {"date": datetime.date.today().isoformat(), "ranks": args.np, "machine": os.uname().nodename}
    for key in args.only.split(","):
        results[key] = parts[key](args.workdir, args.np)
        print(json.dumps({key: results[key]}, indent=1), file=sys.stderr, flush=True)
    text = json.dumps(results, indent=1)
    if args.out:
        with open(args.out, "w") as fh:
            fh.write(text + "\n")
    print(text)
    checks = [c for v in results.values() if isinstance(v, list) for c in v if "pass" in c]
    return 0 if all(c["pass"] for c in checks) else 1


if __name__ == "__main__":
    sys.exit(main())
