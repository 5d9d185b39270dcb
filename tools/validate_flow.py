#!/usr/bin/env python3
"""Validation runs of the flows (issue 12), rerunnable by anyone; writes one JSON file of results.

    python tools/validate_flow.py [--only u1_L8,u1_L16,su3] [--np 1] [--out FILE] [--report-only]

Each run is ``mpirun -n NP lattice-hpc run validation/flow/JOB.toml``; the runs are resumable
(run the script again and every run continues from its checkpoint), so a validation longer than a
session is continued in the next one.  ``--report-only`` only reads what the run directories hold.

- ``u1_L8``: 2D U(1), L = 8, beta = 2 (u1_L8_b2.toml): plaquette and <Q^2> of the flow chain
  against the exact finite-volume values (:mod:`lattice_hpc.gauge.exact_u1`), Gamma-method errors,
  within 2 sigma; acceptance (goal >= 0.5); ``u1_L8_ft``: the same for its flow trained further
  (u1_L8_b2_ft.toml, from validation/flow/models/u1_L8_b2.h5), ``u1_L8_ft2`` (u1_L8_b2_ft2.toml,
  from validation/flow/models/u1_L8_b2_ft.h5, batch 512, float32 training), ``u1_L8_ft2_chain2``
  (u1_L8_b2_ft2_chain2.toml: a second chain of that flow, another seed), ``u1_L8_ft3``
  (u1_L8_b2_ft3.toml: 4000 steps more from validation/flow/models/u1_L8_b2_ft2.h5);
- ``u1_L16``: 2D U(1), L = 16, beta = 2, 4, 6: flow chain (u1_L16_b*.toml) and HMC
  (hmc_u1_L16_b*.toml): acceptance, ESS, tau_int(Q), cost per independent Q sample (seconds per
  step times 2 tau_int; the flow with and without its training time, that of the earlier stages
  it started from included, spread over its independent samples); ``u1_L16_b6_resized``: beta 6
  with the flow trained at L = 8 first (``u1_L8_b6``: u1_L8_b6.toml, checked against the exact
  values like ``u1_L8``) and continued at L = 16 (u1_L16_b6_resized.toml); ``u1_L8_b6_ncp``:
  the same L = 8 first stage with the NCP kernel (u1_L8_b6_ncp.toml, a 1000-step diagnostic);
  every 2D U(1) flow reports its exact training KL (loss + ln Z) per 250 steps;
  ``u1_L8_sweep``: the L = 8, beta = 2 check of ``u1_L8`` for the sweep flow
  (u1_L8_b2_sweep.toml); ``u1_L16_sweep``: the same table for the flows of the sweep mask order started at the
  one-plaquette map (u1_L16_b{2,4,6}_sweep.toml: ``flow.masks = "sweep"``, ``train.init =
  "plaquette"``), with the HMC of ``u1_L16``; every row also gives the flow's and the HMC's
  deviations from the exact plaquette and <Q^2> in sigma, and whether the beta = 6 goals (tau_int
  ratio >= 100, cheaper than HMC with training) hold;
- ``su3`` (``su3_b1``: beta 1 only, with its second chain su3_4444_b1.0_planes_chain2.toml;
  ``su3_b1.25``, ``su3_b1.25_ft`` and ``su3_b2``: beta 1.25 (su3_4444_b1.25.toml and its second
  stage su3_4444_b1.25_ft.toml) or 2 alone; ``su3_b1.25_ft_chains``: the second stage's
  chains, su3_4444_b1.25_ft.toml, su3_4444_b1.25_ft_chain2.toml, su3_4444_b1.25_ft_chain3.toml
  and su3_4444_b1.25_ft_chain4.toml,
  and their combination; with ``--report-only``, a chain whose run directory is not on this
  machine is taken from the newest committed result that holds it, naming the file):
  4D SU(3), 4^4, beta = 1 and 2: flow chain (su3_4444_b1.0_planes.toml, su3_4444_b2.0.toml) against the heatbath
  (quenched_su3_4444_b*.toml), plaquette within 2 combined sigma.
"""

from __future__ import annotations

import argparse
import datetime
import json
import math
import os
import platform
import socket
import subprocess
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
VAL = os.path.join(ROOT, "validation", "flow")
sys.path.insert(0, ROOT)

import numpy as np  # noqa: E402

from lattice_hpc.analysis import gamma_method  # noqa: E402
from lattice_hpc.analysis.stats import binned_error  # noqa: E402
from lattice_hpc.flows.train import ess_per_sample  # noqa: E402
from lattice_hpc.gauge import exact_u1  # noqa: E402


def run(job: str, np_: int, report_only: bool, val: str = VAL) -> str:
    """Run (or with ``report_only`` only locate) ``val/job.toml``; returns its run directory."""
    path = os.path.join(val, job + ".toml")
    if not report_only:
        cmd = (["mpirun", "-n", str(np_)] if np_ > 1 else []) + ["lattice-hpc", "run", path]
        subprocess.run(cmd, cwd=ROOT, check=True)
    return os.path.join(val, "runs", _name(path))


def _name(path: str) -> str:
    import tomllib

    with open(path, "rb") as fh:
        return tomllib.load(fh)["job"]["name"]


def records(run_dir: str) -> list:
    try:
        with open(os.path.join(run_dir, "records.jsonl")) as fh:
            return [json.loads(ln) for ln in fh if ln.strip()]
    except FileNotFoundError:
        return []


def gamma(recs, key):
    x = np.array([r[key] for r in recs if key in r], dtype=np.float64)
    if len(x) < 20:
        return None
    g = gamma_method(x)
    # beside it, the binned jackknife's plateau (largest error over bin sizes 1, 2, 4, ... with
    # >= 16 bins): heavy-tailed weights make an independence chain stick for long stretches,
    # and a Gamma window cut early would show as blocked_error well above error
    return {"value": g.value, "error": g.error, "tau_int": g.tau_int, "dtau_int": g.dtau_int,
            "blocked_error": binned_error(x), "n": len(x)}


def seconds_per_step(recs) -> float | None:
    """Mean seconds per step over the records (records carry the seconds since the start of
    their segment; the gaps between segments are left out)."""
    if isinstance(recs[0].get("seconds"), dict):  # HMC records: the time of each trajectory
        return float(np.mean([r["seconds"]["total"] for r in recs]))
    t = np.array([r["seconds"] for r in recs], dtype=np.float64)
    s = np.array([r["step"] for r in recs], dtype=np.float64)
    dt, ds = np.diff(t), np.diff(s)
    keep = dt >= 0
    return float(dt[keep].sum() / ds[keep].sum()) if keep.any() and ds[keep].sum() > 0 else None


def training_seconds(run_dir: str) -> float | None:
    try:
        with open(os.path.join(run_dir, "training.json")) as fh:
            h = json.load(fh)
    except FileNotFoundError:
        return None
    s = np.asarray(h["seconds"], dtype=np.float64)
    # per-step durations; runs made before 2026-12-01 12:20 recorded the seconds since the start
    # of the segment instead (monotone)
    if len(s) > 10 and np.all(np.diff(s) >= 0):
        return float(s[-1])
    return float(s.sum())


#: staged flows: the runs whose trained model a run starts from (their training counts in its cost)
EARLIER_STAGES = {"u1_L8_b2_ft": ["u1_L8_b2"], "u1_L8_b2_ft2": ["u1_L8_b2_ft", "u1_L8_b2"],
                  "u1_L8_b2_ft3": ["u1_L8_b2_ft2", "u1_L8_b2_ft", "u1_L8_b2"],
                  "su3_4444_b1.25": ["su3_4444_b1.0_planes"],
                  "su3_4444_b1.25_ft": ["su3_4444_b1.25", "su3_4444_b1.0_planes"],
                  "su3_4444_b1.25_ft_chain2": ["su3_4444_b1.25_ft", "su3_4444_b1.25", "su3_4444_b1.0_planes"],
                  "su3_4444_b1.25_ft_chain3": ["su3_4444_b1.25_ft", "su3_4444_b1.25", "su3_4444_b1.0_planes"],
                  "su3_4444_b1.25_ft_chain4": ["su3_4444_b1.25_ft", "su3_4444_b1.25", "su3_4444_b1.0_planes"],
                  "su3_4444_b1.0_ft": ["su3_4444_b1.0"], "su3_4444_b2.0": ["su3_4444_b1.0_planes"],
                  "u1_L16_b6_resized": ["u1_L8_b6"]}


def flow_summary(run_dir: str) -> dict:
    recs = records(run_dir)
    out = {"run_dir": os.path.relpath(run_dir, ROOT), "measurements": len(recs)}
    earlier = EARLIER_STAGES.get(os.path.basename(run_dir), [])
    if earlier:
        out["earlier_stages"] = earlier
        out["earlier_training_seconds"] = sum(training_seconds(os.path.join(VAL, "runs", e)) or 0.0
                                              for e in earlier)
    try:  # the exact KL(q || p) of training (2D U(1)): loss + ln Z, at the end (mean of the
        # last 50 steps) and in blocks of 250 steps (how it got there; also for a training that
        # has not reached the sampling yet)
        with open(os.path.join(run_dir, "config.json")) as fh:
            cfg = json.load(fh)["config"]
        with open(os.path.join(run_dir, "training.json")) as fh:
            loss = json.load(fh)["loss"]
        if cfg["action"]["group"] == "U1" and len(cfg["lattice"]["dims"]) == 2 and loss:
            lnz = exact_u1.log_partition(cfg["action"]["beta"], int(np.prod(cfg["lattice"]["dims"])))
            out["train_kl_nats"] = float(np.mean(loss[-50:])) + lnz
            out["train_steps_done"] = len(loss)
            out["train_kl_nats_per_250_steps"] = [float(np.mean(loss[i:i + 250])) + lnz
                                                  for i in range(0, len(loss), 250)]
    except (OSError, ValueError, KeyError):
        pass
    if not recs:
        return out
    lw = np.array([r["log_w"] for r in recs if "log_w" in r])
    out.update({"acceptance": float(np.mean([r["accepted"] for r in recs if "accepted" in r])),
                "ess": ess_per_sample(lw),
                "plaquette": gamma(recs, "plaquette"), "Q2": gamma(recs, "topological_charge_sq"),
                "Q": gamma(recs, "topological_charge"),
                "seconds_per_proposal": seconds_per_step(recs),
                "training_seconds": training_seconds(run_dir)})
    return out


def u1_L8(np_, report_only, job="u1_L8_b2", beta=2.0):
    rd = run(job, np_, report_only)
    s = flow_summary(rd)
    if s["measurements"]:
        ex = {"plaquette": exact_u1.plaquette(beta, 64), "Q2": exact_u1.topological_susceptibility(beta, 64)[0]}
        for k, v in ex.items():
            g = s[k]
            s[k]["exact"] = v
            s[k]["deviation_sigma"] = (g["value"] - v) / g["error"]
        s["pass"] = bool(all(abs(s[k]["deviation_sigma"]) < 2 for k in ex)
                         and s["measurements"] >= 20000)
        s["acceptance_goal_0.5_met"] = s["acceptance"] >= 0.5
    return s


def u1_L16(np_, report_only, flows=None):
    out = {}
    flows = flows or {b: f"u1_L16_b{b}" for b in (2, 4, 6)}
    for b, job in flows.items():
        f = flow_summary(run(job, np_, report_only))
        hd = run(f"hmc_u1_L16_b{b}", np_, report_only)
        hr = records(hd)
        h = {"measurements": len(hr)}
        if hr:
            h.update({"acceptance": float(np.mean([r["accepted"] for r in hr])),
                      "plaquette": gamma(hr, "plaquette"),
                      "Q": gamma(hr, "topological_charge"),
                      "seconds_per_trajectory": seconds_per_step(hr)})
        row = {"flow": f, "hmc": h, "exact_plaquette": exact_u1.plaquette(float(b), 256),
               "exact_Q2": exact_u1.topological_susceptibility(float(b), 256)[0]}
        for k, ex in (("plaquette", row["exact_plaquette"]), ("Q2", row["exact_Q2"])):
            if f.get(k):  # the flow chain against the exact finite-volume value
                row[f"flow_{k}_deviation_sigma"] = (f[k]["value"] - ex) / f[k]["error"]
        if h.get("plaquette"):
            row["hmc_plaquette_deviation_sigma"] = ((h["plaquette"]["value"] - row["exact_plaquette"])
                                                    / h["plaquette"]["error"])
        if f.get("Q") and h.get("Q") and f.get("seconds_per_proposal") and h.get("seconds_per_trajectory"):
            cf = f["seconds_per_proposal"] * 2 * f["Q"]["tau_int"]
            ch = h["seconds_per_trajectory"] * 2 * h["Q"]["tau_int"]
            indep = f["measurements"] / (2 * f["Q"]["tau_int"])
            cft = cf + ((f["training_seconds"] or 0) + f.get("earlier_training_seconds", 0)) / indep
            row.update({"tau_int_ratio_hmc_over_flow": h["Q"]["tau_int"] / f["Q"]["tau_int"],
                        "cost_flow": cf, "cost_flow_with_training": cft, "cost_hmc": ch,
                        "hmc_over_flow": ch / cf, "hmc_over_flow_with_training": ch / cft,
                        "goal_tau_int_ratio_ge_100": h["Q"]["tau_int"] / f["Q"]["tau_int"] >= 100,
                        "goal_cheaper_than_hmc_with_training": cft < ch})
        out[f"beta{b}"] = row
    return out


#: the SU(3) flow job of each beta (beta 1: the planes mask order; su3_4444_b1.0(_ft) are the
#: earlier stripes-order flows, committed as validation_flow_su3_cpu-2core_2026-12-01.json)
SU3_FLOWS = {"1.0": "su3_4444_b1.0_planes", "1.0_chain2": "su3_4444_b1.0_planes_chain2",
             "1.25": "su3_4444_b1.25", "1.25_ft": "su3_4444_b1.25_ft",
             "1.25_ft_chain2": "su3_4444_b1.25_ft_chain2",
             "1.25_ft_chain3": "su3_4444_b1.25_ft_chain3",
             "1.25_ft_chain4": "su3_4444_b1.25_ft_chain4", "2.0": "su3_4444_b2.0"}


def stored_row(key: str, run_dir: str):
    """The newest committed result row ``key`` (``bench/results/validation_flow_*.json``) of the
    flow run ``run_dir``, for ``--report-only`` where that run directory is not on this machine
    (run directories are not committed; the row names the file it comes from), or None."""
    import glob

    rel = os.path.relpath(run_dir, ROOT)
    best = None
    for path in sorted(glob.glob(os.path.join(ROOT, "bench", "results", "validation_flow_*.json"))):
        with open(path) as fh:
            res = json.load(fh)
        for part in res.values():
            row = part.get(key) if isinstance(part, dict) else None
            if isinstance(row, dict) and row.get("flow", {}).get("run_dir") == rel \
                    and row["flow"].get("measurements"):
                if best is None or res.get("date", "") >= best[0]:
                    best = (res.get("date", ""), dict(row, stored_in=os.path.relpath(path, ROOT)))
    return None if best is None else best[1]


def stored_heatbath(beta: str):
    """The newest committed heatbath plaquette of ``quenched_su3_4444_b{beta}`` (the rows of
    every flow chain at that ``beta`` carry it), naming its file, or None."""
    import glob

    best = None
    for path in sorted(glob.glob(os.path.join(ROOT, "bench", "results", "validation_flow_*.json"))):
        with open(path) as fh:
            res = json.load(fh)
        for part in res.values():
            if not isinstance(part, dict):
                continue
            for key, row in part.items():
                hb = row.get("heatbath_plaquette") if isinstance(row, dict) else None
                if hb and (key == f"beta{beta}" or key.startswith(f"beta{beta}_")) and \
                        (best is None or res.get("date", "") >= best[0]):
                    best = (res.get("date", ""), dict(hb, stored_in=os.path.relpath(path, ROOT)))
    return None if best is None else best[1]


def su3(np_, report_only, betas=("1.0", "2.0")):
    out = {}
    for b in betas:
        rd = run(SU3_FLOWS[b], np_, report_only)
        f = flow_summary(rd)
        hr = records(run(f"quenched_su3_4444_b{b.split('_')[0]}", np_, report_only))
        hb = gamma(hr, "plaquette")
        row = {"flow": f, "heatbath_plaquette": hb}
        stored = stored_row(f"beta{b}", rd) if report_only and not f["measurements"] else None
        if stored is not None:  # this machine lacks the run directory: the committed figures
            f, row = stored["flow"], {k: v for k, v in stored.items() if k not in ("deviation_sigma", "pass")}
        if hb is None and report_only:  # the heatbath run directory is not here either
            hb = stored_heatbath(b.split("_")[0])
        row["heatbath_plaquette"] = hb
        if f.get("plaquette") and hb:
            d = f["plaquette"]["value"] - hb["value"]
            row["deviation_sigma"] = d / math.hypot(f["plaquette"]["error"], hb["error"])
            row["pass"] = abs(row["deviation_sigma"]) < 2
        out[f"beta{b}"] = row
    chains = [b for b in betas if out[f"beta{b}"].get("deviation_sigma") is not None]
    if len(chains) > 1 and len({b.split("_")[0] for b in chains}) == 1:
        # independent chains of one beta (the same flow or its stages): inverse-variance mean
        vals = [(out[f"beta{b}"]["flow"]["plaquette"]["value"], out[f"beta{b}"]["flow"]["plaquette"]["error"])
                for b in chains]
        w = np.array([1 / e ** 2 for _, e in vals])
        m = float(np.sum(w * np.array([v for v, _ in vals])) / w.sum())
        e = float(1 / math.sqrt(w.sum()))
        hb = out[f"beta{chains[0]}"]["heatbath_plaquette"]
        dev = (m - hb["value"]) / math.hypot(e, hb["error"])
        # the chains' consistency: chi^2 about the mean; where chi^2/dof > 1 their Gamma errors
        # are too small (heavy-tailed weights), and the PDG scale factor sqrt(chi^2/dof) enlarges
        # the combined error (reported beside the plain one, not in its place)
        chi2 = float(sum((v - m) ** 2 / err ** 2 for v, err in vals))
        dof = len(vals) - 1
        scale = max(1.0, math.sqrt(chi2 / dof))
        out["combined"] = {"chains": chains, "plaquette": m, "error": e, "deviation_sigma": dev,
                           "pass": abs(dev) < 2, "chi2": chi2, "dof": dof,
                           "scale_factor": scale,
                           "deviation_sigma_scaled": (m - hb["value"]) / math.hypot(scale * e, hb["error"])}
    return out


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--only", default="u1_L8,u1_L16,su3")
    p.add_argument("--np", type=int, default=1)
    p.add_argument("--out", default=None)
    p.add_argument("--report-only", action="store_true")
    a = p.parse_args()
    res = {"machine": f"{socket.gethostname()} ({platform.processor() or platform.machine()}, "
                      f"{os.cpu_count()} cores)", "date": datetime.date.today().isoformat(),
           "np": a.np}
    for part in a.only.split(","):
        res[part] = {"u1_L8": u1_L8, "u1_L8_ft": lambda n, r: u1_L8(n, r, "u1_L8_b2_ft"),
                     "u1_L8_ft2": lambda n, r: u1_L8(n, r, "u1_L8_b2_ft2"),
                     "u1_L8_ft2_chain2": lambda n, r: u1_L8(n, r, "u1_L8_b2_ft2_chain2"),
                     "u1_L8_ft3": lambda n, r: u1_L8(n, r, "u1_L8_b2_ft3"),
                     "u1_L8_b6": lambda n, r: u1_L8(n, r, "u1_L8_b6", 6.0),
                     "u1_L8_sweep": lambda n, r: u1_L8(n, r, "u1_L8_b2_sweep"),
                     "u1_L8_b6_ncp": lambda n, r: u1_L8(n, r, "u1_L8_b6_ncp", 6.0),
                     "u1_L16": u1_L16,
                     "u1_L16_b6_resized": lambda n, r: u1_L16(n, r, {6: "u1_L16_b6_resized"}),
                     "u1_L16_sweep": lambda n, r: u1_L16(n, r, {b: f"u1_L16_b{b}_sweep"
                                                                 for b in (2, 4, 6)}),
                     "su3": su3,
                     "su3_b1": lambda n, r: su3(n, r, ("1.0", "1.0_chain2")),
                     "su3_b1.25": lambda n, r: su3(n, r, ("1.25",)),
                     "su3_b1.25_ft": lambda n, r: su3(n, r, ("1.25_ft",)),
                     "su3_b1.25_ft_chains": lambda n, r: su3(n, r, ("1.25_ft", "1.25_ft_chain2",
                                                                     "1.25_ft_chain3", "1.25_ft_chain4")),
                     "su3_b2": lambda n, r: su3(n, r, ("2.0",))}[part](a.np, a.report_only)
    text = json.dumps(res, indent=1)
    print(text)
    out = a.out or os.path.join(ROOT, "bench", "results",
                                f"validation_flow_{'_'.join(a.only.split(','))}_cpu-{os.cpu_count()}core_{res['date']}.json")
    with open(out, "w") as fh:
        fh.write(text + "\n")


if __name__ == "__main__":
    main()
