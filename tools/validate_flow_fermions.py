#!/usr/bin/env python3
"""Validation runs of the flows with dynamical fermions (issue 14), rerunnable by anyone; writes
one JSON file of results.

    python tools/validate_flow_fermions.py [--only nf2_4d,conditionals,schwinger_L8,schwinger_L16,
                                           schwinger_L16_ft] [--np 1]
                                           [--out FILE] [--report-only]

Each run is ``lattice-hpc run validation/flow_fermions/JOB.toml`` (``mpirun -n NP`` with
``--np``); the runs are resumable, so running the script again continues them.
``--report-only`` only reads what the run directories hold (and the stored reweighting results).

- ``nf2_4d``: 4D SU(3), Nf=2 Wilson, 4^4, beta = 1, kappa = 0.1 (su3_nf2_4444_b1.0_k0.1.toml,
  its independent replica su3_nf2_4444_b1.0_k0.1_chain2.toml and seven more chains of chain2's
  flow with their own seeds, su3_nf2_4444_b1.0_k0.1_chain{3,...,9}.toml, pseudofermion route with the
  triangular conditional; each chain and their inverse-variance combination, with chi^2 and
  the PDG scale factor; a chain whose run directory is not on this machine comes, under
  ``--report-only``, from the newest committed result holding it) against the HMC reference ensemble
  and a second, longer HMC ensemble (hmc_su3_nf2_4444_b1.0_k0.1_long.toml) and both combined
  (bench/results/reference_ensemble_nf2_b1.0_k0.1_4x4x4x4.json): plaquette, Polyakov loop,
  pion C(1) and C(2) within 2 combined sigma; acceptance, ESS, and the cost per independent
  sample of the plaquette (seconds per step times 2 tau_int) of both; and the pure-gauge check
  of |P| (``pure_gauge_polyakov``): a chain of the beta = 1 flow
  (validation/flow/su3_4444_b1.0_planes_chain3.toml), the heatbath
  (validation/flow/quenched_su3_4444_b1.0.toml) and importance reweighting of 5000 fresh
  proposals of that flow (tools/reweight_flow.py, stored as
  validation/flow/runs/reweight_su3_4444_b1.0_planes.json);
- ``conditionals``: the pseudofermion conditionals of phi given U on the same gauge proposals
  (one sampling seed): L=8 Schwinger at kappa = 0.276 with pure-gauge proposals (pf_*.toml: one
  triangular factor, Hasenbusch [0.2, 0.25], Hasenbusch + learned) and the 4D point with its
  fermion-trained flow (chain2's first 4000 proposals, triangular, against
  su3_nf2_4444_b1.0_k0.1_learned.toml): acceptance, ESS, var log w_fermion per factor;
- ``schwinger_L8`` / ``schwinger_L16``: the Schwinger model, Nf=2 Wilson, beta = 2, kappa = 0.24
  and 0.276: flow chain (flow_schwinger_L*_b2_k*.toml, exact determinant) against HMC
  (hmc_schwinger_L*_b2_k*.toml): plaquette, <Q^2>, condensate, tau_int(Q), cost per independent Q
  sample; and a third estimate, independent of both chains: importance reweighting of fresh
  proposals of the pure-gauge flow each flow chain started from by ``exp(-S_g - log q)
  det(D^dag D)`` with dense determinants (tools/reweight_flow.py --kappa; stored as
  runs/reweight_L*_b2_k*.json).  Each pair's difference is given in combined sigma;
- ``schwinger_L16_ft``: L=16, kappa = 0.276 with the fermion-trained flow against three HMC
  ensembles (500 and 2000 trajectories at 6 Omelyan steps, 2000 at 12), with the health of each
  HMC's molecular dynamics: ``<exp(-dH)>`` (1 for exact MD; short of 1 by about the fraction of
  trajectories that blow up, whose time reverses a finite chain never visits), the fraction
  with ``dH > 5`` and the largest ``dH``.

Gamma-method errors throughout (:func:`lattice_hpc.analysis.gamma_method`).
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import platform
import socket
import subprocess
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
VAL = os.path.join(ROOT, "validation", "flow_fermions")
sys.path.insert(0, ROOT)
sys.path.insert(0, os.path.join(ROOT, "tools"))

import numpy as np  # noqa: E402

import validate_flow  # noqa: E402
from validate_flow import gamma, records, seconds_per_step, training_seconds  # noqa: E402
from lattice_hpc.flows.train import ess_per_sample  # noqa: E402

REFERENCE = os.path.join(ROOT, "bench", "results", "reference_ensemble_nf2_b1.0_k0.1_4x4x4x4.json")
KAPPAS = ("0.24", "0.276")
#: the pure-gauge stages each Schwinger flow started from (their training counts in its cost)
EARLIER = {"8": ["u1_L8_b2", "u1_L8_b2_ft", "u1_L8_b2_ft2", "u1_L8_b2_ft3"], "16": ["u1_L16_b2"]}
MODEL = {"8": "validation/flow/models/u1_L8_b2_ft3.h5", "16": "validation/flow/models/u1_L16_b2.h5"}


def run(job: str, np_: int, report_only: bool) -> str:
    return validate_flow.run(job, np_, report_only, VAL)


def _with_derived(recs):
    """Records with ``pion[t]`` from the correlator lists and ``Q2`` from ``Q``."""
    out = []
    for r in recs:
        r = dict(r)
        if isinstance(r.get("pion"), list):
            for t, c in enumerate(r["pion"]):
                r[f"pion[{t}]"] = c
        if "topological_charge" in r:
            r["Q2"] = r["topological_charge"] ** 2
        out.append(r)
    return out


def _sigma(a, b):
    """``(a - b) / sqrt(ea^2 + eb^2)`` of two ``{"value", "error"}`` entries."""
    if not a or not b:
        return None
    return (a["value"] - b["value"]) / float(np.hypot(a["error"], b["error"]))


def chain(run_dir: str, keys) -> dict:
    recs = _with_derived(records(run_dir))
    out = {"run_dir": os.path.relpath(run_dir, ROOT), "measurements": len(recs)}
    if not recs:
        return out
    acc = [r["accepted"] for r in recs if "accepted" in r]
    if acc:  # (a heatbath's records have none)
        out["acceptance"] = float(np.mean(acc))
    sec = seconds_per_step(recs)
    out["seconds_per_step"] = sec
    for k in keys:
        out[k] = gamma(recs, k)
    dH = np.array([r["dH"] for r in recs if "dH" in r])
    if len(dH):  # HMC: the health of the molecular dynamics (Creutz: <exp(-dH)> = 1)
        e = np.exp(-np.maximum(dH, -700.0))
        out["exp_minus_dH"] = {"value": float(e.mean()), "error": float(e.std(ddof=1) / np.sqrt(len(e)))}
        out["fraction_dH_above_5"], out["dH_max"] = float((dH > 5).mean()), float(dH.max())
    lw = np.array([r["log_w"] for r in recs if "log_w" in r])
    if len(lw):
        out["ess"] = ess_per_sample(lw)
        lwf = np.array([r["log_w_fermion"] for r in recs if "log_w_fermion" in r])
        if len(lwf) > 1:
            out["log_w_var"], out["log_w_fermion_var"] = float(lw.var(ddof=1)), float(lwf.var(ddof=1))
        out["training_seconds"] = training_seconds(run_dir)
    return out


def _cost(c: dict, key: str, extra_seconds: float = 0.0):
    """Seconds per independent sample of ``key``: seconds per step times ``2 tau_int``, plus
    ``extra_seconds`` (training) spread over the chain's independent samples."""
    g = c.get(key)
    if not g or not c.get("seconds_per_step"):
        return None
    indep = c["measurements"] / (2 * g["tau_int"])
    return c["seconds_per_step"] * 2 * g["tau_int"] + extra_seconds / indep


#: the independent 4D Nf=2 chains (the same pipeline, other seeds), combined in the report
NF2_CHAINS = ("su3_nf2_4444_b1.0_k0.1", "su3_nf2_4444_b1.0_k0.1_chain2", "su3_nf2_4444_b1.0_k0.1_chain3",
              "su3_nf2_4444_b1.0_k0.1_chain4", "su3_nf2_4444_b1.0_k0.1_chain5", "su3_nf2_4444_b1.0_k0.1_chain6",
              "su3_nf2_4444_b1.0_k0.1_chain7", "su3_nf2_4444_b1.0_k0.1_chain8", "su3_nf2_4444_b1.0_k0.1_chain9")
#: the chains whose flow another chain's training made (its training counts in their cost)
NF2_EARLIER = {"su3_nf2_4444_b1.0_k0.1_chain%d" % n: ("su3_nf2_4444_b1.0_k0.1_chain2",) for n in range(3, 10)}
#: a second HMC ensemble at that point, 8000 trajectories with another seed
HMC_LONG = "hmc_su3_nf2_4444_b1.0_k0.1_long"


#: the pure-gauge check of |P|: a chain of the beta = 1 flow the fermion flows start from, the
#: heatbath, and importance reweighting of fresh proposals of that flow (tools/reweight_flow.py)
FLOW_VAL = os.path.join(ROOT, "validation", "flow")
PURE_CHAIN, PURE_HEATBATH = "su3_4444_b1.0_planes_chain3", "quenched_su3_4444_b1.0"
PURE_MODEL = "validation/flow/models/su3_4444_b1.0_planes.h5"
PURE_REWEIGHT = os.path.join(FLOW_VAL, "runs", "reweight_su3_4444_b1.0_planes.json")
#: heatbath fields reweighted by the dense det(D^dag D) (tools/reweight_quenched_det.py)
DET_REWEIGHT = os.path.join(VAL, "runs", "reweight_quenched_det_b1.0_k0.1.json")
DET_ARGS = ["--beta", "1", "--kappa", "0.1", "--configs", "1000", "--every", "2", "--thermalize", "200",
            "--seed", "91"]


def tool_result(path: str, tool: str, args, report_only: bool):
    """The JSON result ``path`` of ``tools/TOOL ARGS --out PATH``, run first if the file is
    missing (not under ``report_only``); None if there is none."""
    if not report_only and not os.path.exists(path):
        subprocess.run([sys.executable, os.path.join(ROOT, "tools", tool), *args, "--out", path],
                       cwd=ROOT, check=True, stdout=subprocess.DEVNULL)
    try:
        with open(path) as fh:
            return json.load(fh)
    except FileNotFoundError:
        return None


def det_reweighting(report_only, heatbath):
    """The fermions' exact effect at the 4D point: heatbath fields reweighted by the dense
    ``det(D^dag D)`` (:mod:`tools.reweight_quenched_det`), the shift ``<O>_Nf=2 - <O>_0`` of each
    observable, and the Nf=2 value as the longer heatbath's value plus that shift (errors in
    quadrature).  Under ``--report-only`` without the result: the newest committed one, or None."""
    rw = tool_result(DET_REWEIGHT, "reweight_quenched_det.py", DET_ARGS, report_only)
    if rw is None:
        return _stored("nf2_4d", "det_reweighting")
    out = {"result": rw, "job": "tools/reweight_quenched_det.py " + " ".join(DET_ARGS), "nf2_estimate": {}}
    for k in ("plaquette", "polyakov_re", "polyakov_abs"):
        hb = (heatbath or {}).get(k)
        if hb and k in rw:
            d, e = rw[k]["shift"]
            out["nf2_estimate"][k] = {"value": hb["value"] + d, "error": float(np.hypot(hb["error"], e))}
    return out


def pure_gauge_polyakov(np_, report_only):
    """The Polyakov loop of the beta = 1 pure-gauge flow against the heatbath: its chain
    (``PURE_CHAIN``), and the same flow's fresh proposals reweighted by ``exp(-S - log q)``, with
    their mean under ``q`` (what the flow itself samples).  At kappa = 0.1 the determinant moves
    ``|P|`` by far less than the errors here (its leading coupling is linear in ``Re P``), so
    this separates the gauge flow's sampling of ``|P|`` from the fermions'.  Under
    ``--report-only`` without the run directories: the newest committed figures, or None."""
    keys = ("plaquette", "polyakov_re", "polyakov_abs")
    c = chain(validate_flow.run(PURE_CHAIN, np_, report_only, FLOW_VAL), keys)
    hb = chain(validate_flow.run(PURE_HEATBATH, np_, report_only, FLOW_VAL), keys)
    rw = tool_result(PURE_REWEIGHT, "reweight_flow.py",
                     [PURE_MODEL, "--beta", "1", "--samples", "5000", "--batch", "100"], report_only)
    if not c["measurements"] or not hb["measurements"]:
        return _stored("nf2_4d", "pure_gauge_polyakov")
    out = {"flow_chain": c, "heatbath": hb, "reweighting": rw, "compare": {}}
    for k in keys:
        rwk = {"value": rw[k]["reweighted"], "error": rw[k]["error"]} if rw and k in rw else None
        out["compare"][k] = {"chain_minus_heatbath_sigma": _sigma(c.get(k), hb.get(k)),
                             "reweighting_minus_heatbath_sigma": _sigma(rwk, hb.get(k)),
                             "mean_under_q": rw[k]["mean_under_q"] if rw and k in rw else None}
    return out


#: fresh proposals of chain2's fermion-trained flow reweighted (tools/reweight_flow.py) to the
#: pure-gauge target and, with the pseudofermion estimate of the determinant, to the Nf=2 one
NF2_MODEL = "validation/flow_fermions/models/su3_nf2_4444_b1.0_k0.1_chain2.h5"
NF2_REWEIGHT = {"pure_gauge": (os.path.join(VAL, "runs", "reweight_su3_nf2_chain2_model_pure_gauge.json"),
                               ["--samples", "5000", "--seed", "79"]),
                "pseudofermion": (os.path.join(VAL, "runs", "reweight_su3_nf2_chain2_model_pf.json"),
                                  ["--samples", "5000", "--kappa", "0.1", "--seed", "80"]),
                "pseudofermion_20k": (os.path.join(VAL, "runs", "reweight_su3_nf2_chain2_model_pf_20k.json"),
                                      ["--samples", "20000", "--kappa", "0.1", "--seed", "81"])}


def fermion_flow_reweighting(report_only, pure, det):
    """Importance reweighting of 5000 fresh proposals of the fermion-trained 4D flow: to the
    pure-gauge target (against the heatbath) and to the Nf=2 target with the chains' own
    pseudofermion weights (against the determinant reweighting; again with 20000 proposals of
    another seed, ``pseudofermion_20k``), each with its offline
    independence chain over the same proposals: the weights checked without the chains'
    Metropolis dynamics.  Under ``--report-only`` without the results: the committed ones."""
    out = {}
    refs = {"pure_gauge": (pure or {}).get("heatbath") or {}, "pseudofermion": (det or {}).get("nf2_estimate") or {}}
    refs["pseudofermion_20k"] = refs["pseudofermion"]
    for name, (path, args) in NF2_REWEIGHT.items():
        rw = tool_result(path, "reweight_flow.py",
                         [NF2_MODEL, "--beta", "1", "--batch", "100", *args], report_only)
        if rw is None:
            out[name] = _stored("nf2_4d", "fermion_flow_reweighting", name)
            continue
        row = {"result": rw, "compare": {}}
        for k in ("plaquette", "polyakov_re", "polyakov_abs"):
            ref = refs[name].get(k)
            row["compare"][k] = {"reference": ref,
                                 "reweighted_minus_reference_sigma": _sigma(
                                     {"value": rw[k]["reweighted"], "error": rw[k]["error"]}, ref)}
        out[name] = row
    return out


def _stored(*keys: str, ok=bool):
    """The newest committed ``res[keys[0]][keys[1]]...`` of
    ``bench/results/validation_flow_fermions_*.json`` for which ``ok`` holds (default: not
    empty), naming its file; or None.  Run directories are not committed: this is what
    ``--report-only`` shows for a run that is not on this machine."""
    def candidates(res):
        v = res
        for k in keys:
            v = v.get(k) if isinstance(v, dict) else None
        return [v] if isinstance(v, dict) and ok(v) else []
    return _newest(candidates)


def _measured(c) -> bool:
    return bool(c.get("measurements"))


def _newest(candidates):
    """The newest entry (by the result's date, then file name) that ``candidates(res)`` yields
    from the committed ``bench/results/validation_flow_fermions_*.json``, with ``stored_in``
    naming its file; or None."""
    import glob

    best = None
    for path in sorted(glob.glob(os.path.join(ROOT, "bench", "results", "validation_flow_fermions_*.json"))):
        with open(path) as fh:
            res = json.load(fh)
        for c in candidates(res):
            if best is None or res.get("date", "") >= best[0]:
                best = (res.get("date", ""), dict(c, stored_in=os.path.relpath(path, ROOT)))
    return None if best is None else best[1]


def stored_chain(run_dir: str):
    """The newest committed figures of the 4D chain of ``run_dir``, for ``--report-only`` where
    the run directory is not on this machine (run directories are not committed); or None."""
    rel = os.path.relpath(run_dir, ROOT)

    def candidates(res):
        part = res.get("nf2_4d") or {}
        return [c for c in [part.get("flow")] + list((part.get("chains") or {}).values())
                if isinstance(c, dict) and c.get("run_dir") == rel and c.get("measurements")]
    return _newest(candidates)


def combine(entries):
    """Inverse-variance mean of independent ``{"value", "error"}`` entries, with ``chi2`` about
    it and the PDG scale factor ``max(1, sqrt(chi2/dof))`` (heavy-tailed weights make the
    chains' Gamma errors optimistic; the scaled error is reported beside the plain one)."""
    vals = [(e["value"], e["error"]) for e in entries if e]
    if not vals:
        return None
    w = np.array([1 / e ** 2 for _, e in vals])
    m = float(np.sum(w * np.array([v for v, _ in vals])) / w.sum())
    err = float(1 / np.sqrt(w.sum()))
    chi2 = float(sum((v - m) ** 2 / e ** 2 for v, e in vals))
    dof = len(vals) - 1
    return {"value": m, "error": err, "chi2": chi2, "dof": dof,
            "scale_factor": max(1.0, float(np.sqrt(chi2 / dof))) if dof else 1.0}


def nf2_4d(np_, report_only):
    keys = ("plaquette", "polyakov_re", "polyakov_abs", "pion[1]", "pion[2]")
    chains = {}
    for name in NF2_CHAINS:
        rd = run(name, np_, report_only)
        c = chain(rd, keys)
        if not c["measurements"] and report_only:
            c = stored_chain(rd) or c
        chains[name] = c
    with open(REFERENCE) as fh:
        ref = json.load(fh)
    h = {"measurements": ref["measurements"], "seconds_per_step": ref["seconds_per_trajectory"],
         "reference": os.path.relpath(REFERENCE, ROOT)}
    for k in keys:
        o = ref["observables"][k]
        h[k] = {"value": o["mean"], "error": o["error"], "tau_int": o["tau_int"]}
    # the second, longer HMC ensemble (another seed), and both HMC ensembles combined
    h2 = chain(run(HMC_LONG, np_, report_only), keys)
    if report_only and not h2["measurements"]:
        h2 = _stored("nf2_4d", "hmc_long", ok=_measured) or h2
    done = {n: c for n, c in chains.items() if c.get("measurements")}
    rows = {}
    for k in keys:
        comb = combine([c.get(k) for c in done.values()])
        hmc_all = combine([h[k], h2.get(k)]) if h2.get(k) else None
        row = {"hmc": h[k], "hmc_long": h2.get(k), "hmc_combined": hmc_all,
               "hmc_long_minus_hmc_sigma": _sigma(h2.get(k), h[k]),
               "chains": {n: {"flow": c.get(k), "deviation_sigma": _sigma(c.get(k), h[k])}
                          for n, c in done.items()},
               "combined": comb, "deviation_sigma": _sigma(comb, h[k]),
               "deviation_sigma_vs_hmc_long": _sigma(comb, h2.get(k)),
               "deviation_sigma_vs_hmc_combined": _sigma(comb, hmc_all)}
        if comb:  # the replicas' spread as the error (PDG scale factor): see combine()
            scaled = dict(comb, error=comb["error"] * comb["scale_factor"])
            row["deviation_sigma_scaled"] = _sigma(scaled, h[k])
            row["deviation_sigma_scaled_vs_hmc_combined"] = _sigma(scaled, hmc_all)
        rows[k] = row
    pure = pure_gauge_polyakov(np_, report_only)
    det = det_reweighting(report_only, (pure or {}).get("heatbath"))
    if det and det.get("nf2_estimate"):  # the chains and HMC against the exact reweighting
        for k, est in det["nf2_estimate"].items():
            if k in rows:
                rows[k]["det_reweighting"] = est
                rows[k]["combined_minus_det_reweighting_sigma"] = _sigma(rows[k]["combined"], est)
                rows[k]["hmc_combined_minus_det_reweighting_sigma"] = _sigma(rows[k]["hmc_combined"], est)
    out = {"chains": chains, "hmc": h, "hmc_long": h2, "compare": rows,
           "pure_gauge_polyakov": pure, "det_reweighting": det,
           "fermion_flow_reweighting": fermion_flow_reweighting(report_only, pure, det)}
    if done:
        pure_training = training_seconds(os.path.join(ROOT, "validation", "flow", "runs", "su3_4444_b1.0_planes")) or 0
        ch = _cost(h, "plaquette")
        costs = {}
        for n, c in done.items():
            cf = _cost(c, "plaquette")
            earlier = sum((chains.get(e) or {}).get("training_seconds") or 0 for e in NF2_EARLIER.get(n, ()))
            cft = _cost(c, "plaquette", (c.get("training_seconds") or 0) + earlier + pure_training)
            costs[n] = {"flow": cf, "flow_with_training": cft, "hmc": ch,
                        "hmc_over_flow": ch / cf if cf else None,
                        "hmc_over_flow_with_training": ch / cft if cft else None}
        out["cost_per_independent_plaquette"] = costs
        total = sum(c["measurements"] for c in done.values())
        out["measurements_combined"] = total
        out["pass"] = bool(total >= 20000 and all(
            r["deviation_sigma"] is not None and abs(r["deviation_sigma"]) < 2 for r in rows.values()))
        if h2.get("measurements"):
            out["pass_vs_hmc_combined"] = bool(total >= 20000 and all(
                r["deviation_sigma_vs_hmc_combined"] is not None
                and abs(r["deviation_sigma_vs_hmc_combined"]) < 2 for r in rows.values()))
        # with the replicas' spread as the chains' error (more than one chain)
        if len(done) > 1:
            out["pass_scaled"] = bool(total >= 20000 and all(
                abs(r.get("deviation_sigma_scaled") or 99) < 2 for r in rows.values()))
            if h2.get("measurements"):
                out["pass_scaled_vs_hmc_combined"] = bool(total >= 20000 and all(
                    abs(r.get("deviation_sigma_scaled_vs_hmc_combined") or 99) < 2 for r in rows.values()))
    return out


def reweight(L: str, kappa: str, report_only: bool, samples: int) -> dict | None:
    return tool_result(os.path.join(VAL, "runs", f"reweight_L{L}_b2_k{kappa}.json"), "reweight_flow.py",
                       [MODEL[L], "--beta", "2", "--kappa", kappa, "--samples", str(samples)], report_only)


def schwinger(L: str, np_, report_only):
    keys = ("plaquette", "Q2", "topological_charge", "condensate")
    out = {}
    for kappa in KAPPAS:
        f = chain(run(f"flow_schwinger_L{L}_b2_k{kappa}", np_, report_only), keys)
        h = chain(run(f"hmc_schwinger_L{L}_b2_k{kappa}", np_, report_only), keys)
        rw = reweight(L, kappa, report_only, 20000 if L == "8" else 5000)
        if report_only:  # runs not on this machine: their newest committed figures
            part = f"schwinger_L{L}"
            f = f if f["measurements"] else _stored(part, f"kappa{kappa}", "flow", ok=_measured) or f
            h = h if h["measurements"] else _stored(part, f"kappa{kappa}", "hmc", ok=_measured) or h
            rw = rw or _stored(part, f"kappa{kappa}", "reweighting")
        rwv = {}
        if rw:
            rwv = {"plaquette": {"value": rw["plaquette"]["reweighted"], "error": rw["plaquette"]["error"]},
                   "Q2": {"value": rw["Q2"]["reweighted"], "error": rw["Q2"]["error"]}}
        rows = {}
        for k in keys:
            rows[k] = {"flow": f.get(k), "hmc": h.get(k), "reweighting": rwv.get(k),
                       "flow_minus_hmc_sigma": _sigma(f.get(k), h.get(k)),
                       "flow_minus_reweighting_sigma": _sigma(f.get(k), rwv.get(k)),
                       "hmc_minus_reweighting_sigma": _sigma(h.get(k), rwv.get(k))}
        row = {"flow": f, "hmc": h, "reweighting": rw, "compare": rows}
        if f.get("topological_charge") and h.get("topological_charge"):
            earlier = sum(training_seconds(os.path.join(ROOT, "validation", "flow", "runs", e)) or 0
                          for e in EARLIER[L])
            cf = _cost(f, "topological_charge")
            cft = _cost(f, "topological_charge", (f.get("training_seconds") or 0) + earlier)
            ch = _cost(h, "topological_charge")
            row["cost_per_independent_Q"] = {
                "flow": cf, "flow_with_training": cft, "hmc": ch, "hmc_over_flow": ch / cf,
                "hmc_over_flow_with_training": ch / cft,
                "tau_int_Q_hmc_over_flow": h["topological_charge"]["tau_int"] / f["topological_charge"]["tau_int"]}
        out[f"kappa{kappa}"] = row
    return out


def schwinger_L16_ft(np_, report_only):
    """L = 16, kappa = 0.276 with the fermion-trained flow (flow_schwinger_L16_b2_k0.276_ft.toml)
    against the HMC ensembles (hmc_schwinger_L16_b2_k0.276.toml, 500 trajectories,
    hmc_schwinger_L16_b2_k0.276_long.toml, 2000, and hmc_schwinger_L16_b2_k0.276_tuned.toml, 2000
    at half the step size) and their combination, with the flow chain
    that had no fermion training and the reweighting of the pure-gauge flow beside them."""
    keys = ("plaquette", "Q2", "topological_charge", "condensate")
    f = chain(run("flow_schwinger_L16_b2_k0.276_ft", np_, report_only), keys)
    h2 = chain(run("hmc_schwinger_L16_b2_k0.276_long", np_, report_only), keys)
    h3 = chain(run("hmc_schwinger_L16_b2_k0.276_tuned", np_, report_only), keys)
    h = chain(run("hmc_schwinger_L16_b2_k0.276", np_, True), keys)
    if report_only:
        f = f if f["measurements"] else _stored("schwinger_L16_ft", "flow", ok=_measured) or f
        h2 = h2 if h2["measurements"] else _stored("schwinger_L16_ft", "hmc_long", ok=_measured) or h2
        h3 = h3 if h3["measurements"] else _stored("schwinger_L16_ft", "hmc_tuned", ok=_measured) or h3
    h = h if h["measurements"] else _stored("schwinger_L16", "kappa0.276", "hmc", ok=_measured) or h
    f0 = _stored("schwinger_L16", "kappa0.276", "flow", ok=_measured)
    rw = _stored("schwinger_L16", "kappa0.276", "reweighting")
    rows = {}
    for k in keys:
        hs = [e for e in (h.get(k), h2.get(k), h3.get(k)) if e]
        hc = combine(hs) if len(hs) > 1 else None
        rw_k = ({"value": rw[k]["reweighted"], "error": rw[k]["error"]}
                if rw and isinstance(rw.get(k), dict) else None)
        rows[k] = {"flow": f.get(k), "flow_untrained": (f0 or {}).get(k), "hmc": h.get(k),
                   "hmc_long": h2.get(k), "hmc_combined": hc, "reweighting_untrained_flow": rw_k,
                   "flow_minus_hmc_combined_sigma": _sigma(f.get(k), hc),
                   "hmc_tuned": h3.get(k), "hmc_long_minus_hmc_sigma": _sigma(h2.get(k), h.get(k)),
                   "hmc_tuned_minus_hmc_long_sigma": _sigma(h3.get(k), h2.get(k))}
    out = {"flow": f, "hmc": h, "hmc_long": h2, "hmc_tuned": h3, "compare": rows}
    if f.get("topological_charge") and h2.get("topological_charge"):
        earlier = sum(training_seconds(os.path.join(ROOT, "validation", "flow", "runs", e)) or 0
                      for e in EARLIER["16"])
        cf, ch = _cost(f, "topological_charge"), _cost(h2, "topological_charge")
        cft = _cost(f, "topological_charge", (f.get("training_seconds") or 0) + earlier)
        out["cost_per_independent_Q"] = {"flow": cf, "flow_with_training": cft, "hmc_long": ch,
                                         "hmc_over_flow": ch / cf if cf else None,
                                         "hmc_over_flow_with_training": ch / cft if cft else None}
        if h3.get("topological_charge"):
            out["cost_per_independent_Q"]["hmc_tuned"] = _cost(h3, "topological_charge")
    return out


#: pseudofermion-route chains on the same gauge proposals (one sampling seed), differing in the
#: conditional of phi: one triangular factor, three Hasenbusch factors, Hasenbusch + learned
PF_L8 = ("pf_schwinger_L8_b2_k0.276", "pf_hasenbusch_schwinger_L8_b2_k0.276",
         "pf_learned_schwinger_L8_b2_k0.276")
#: the 4D point's chain2 flow with the triangular conditional (chain2's first 4000 proposals) and
#: with the learned one, the same gauge proposals
PF_4D = ("su3_nf2_4444_b1.0_k0.1_chain2", "su3_nf2_4444_b1.0_k0.1_learned")


def conditionals(np_, report_only):
    """The pseudofermion conditionals compared on the same gauge proposals: acceptance, ESS,
    ``var log w_fermion`` (and per Hasenbusch factor), the plaquette, and the learned
    conditional's parameters (``conditional.json``)."""
    out = {}
    for name, limit in [(n, None) for n in PF_L8] + [(PF_4D[0], 4000), (PF_4D[1], None)]:
        rd = run(name, np_, report_only) if name != PF_4D[0] else os.path.join(VAL, "runs", name)
        recs = records(rd)[:limit] if limit else records(rd)
        c = {"run_dir": os.path.relpath(rd, ROOT), "measurements": len(recs)}
        if recs:
            lw = np.array([r["log_w"] for r in recs])
            lwf = np.array([r["log_w_fermion"] for r in recs])
            c.update({"acceptance": float(np.mean([r["accepted"] for r in recs])),
                      "ess": ess_per_sample(lw), "log_w_var": float(lw.var(ddof=1)),
                      "log_w_fermion_var": float(lwf.var(ddof=1)),
                      # the spread of the typical weights, robust to the near-singular outliers
                      "log_w_fermion_iqr": float(np.subtract(*np.percentile(lwf, [75, 25]))),
                      "plaquette": gamma(recs, "plaquette")})
            facs = [r["log_w_fermion_factors"] for r in recs if "log_w_fermion_factors" in r]
            if len(facs) > 1:
                c["log_w_fermion_var_factors"] = [float(v) for v in np.var(facs, axis=0, ddof=1)]
            try:
                with open(os.path.join(rd, "conditional.json")) as fh:
                    cj = json.load(fh)
                c["conditional"] = {"theta": cj["theta"], "seconds": cj["seconds"],
                                    "steps": len(cj["history"])}
            except FileNotFoundError:
                pass
        out[name + ("_first4000" if limit else "")] = c
    return out


PARTS = {"nf2_4d": nf2_4d, "conditionals": conditionals, "schwinger_L8": lambda n, r: schwinger("8", n, r),
         "schwinger_L16": lambda n, r: schwinger("16", n, r), "schwinger_L16_ft": schwinger_L16_ft}


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--only", default=",".join(PARTS))
    ap.add_argument("--np", type=int, default=1)
    ap.add_argument("--out", default=None)
    ap.add_argument("--report-only", action="store_true")
    a = ap.parse_args()
    out = {"date": datetime.date.today().isoformat(), "host": socket.gethostname(),
           "machine": f"{platform.machine()}, {os.cpu_count()} cores (no GPU)", "ranks": a.np,
           "script": "tools/validate_flow_fermions.py"}
    for part in a.only.split(","):
        if part not in PARTS:
            sys.exit(f"--only: unknown part {part!r} (parts: {', '.join(PARTS)})")
        out[part] = PARTS[part](a.np, a.report_only)
    text = json.dumps(out, indent=1, default=float)
    print(text)
    if a.out:
        with open(a.out, "w") as fh:
            fh.write(text + "\n")


if __name__ == "__main__":
    main()
