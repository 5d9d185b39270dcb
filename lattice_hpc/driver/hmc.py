"""Job type ``hmc``: Hybrid Monte Carlo for the Wilson gauge action (U(1), SU(N)), with two flavours
of Wilson(-clover) fermions on 4D SU(3) (``fermions.flavours = 2``).

One step is one trajectory (:class:`lattice_hpc.hmc.HMC`).  The action terms and their levels
come from the job file (``[hmc]``, ``[fermions]``, :mod:`.config`): the gauge action on
``hmc.gauge_level`` (the finest by default), the pseudofermions on ``hmc.fermion_level``, a
Hasenbusch ratio (``fermions.hasenbusch_kappa``) on ``hmc.hasenbusch_level``.  Every trajectory
after ``update.thermalize`` (every ``update.measure_every``-th) writes a record: ``dH``,
``exp(-dH)``, acceptance, plaquettes, Polyakov loop, solver iterations, and where the time went
(``seconds``: total, integrator, each monomial's forces, and ``dslash``: the Dirac operator with
its face exchange, over all solves).  ``measure.pion_every`` adds the pion correlator, and
``measure.flow_every`` the Wilson flow (``t0``, ``E(t0)``, ``Q(t0)``).

Chain state (checkpointed): the trajectory count and the number of records.  Every random number
is keyed by the trajectory number (momenta, pseudofermions, the Metropolis draw), so the seed and
the count are the generator's whole state and a resumed chain is the uninterrupted one.
"""

from __future__ import annotations

import time

from ..analysis import mean_and_error
from ..backend import Backend
from ..errors import ConfigError
from ..fermions.kernels.base import reset_profile
from ..groups import get_group
from ..hmc import HMC, Integrator, Level, WilsonGauge
from ..rng import CounterRNG
from .quenched import _hms, start_field
from .stopping import StopControl

SUMMARY_SKIP = ("trajectory", "seconds", "monomials", "dH_parts", "nonfinite")


def build_integrator(cfg: dict) -> Integrator:
    """The nested integrator of the job file: levels, schemes, monomials."""
    h, f = cfg["hmc"], cfg["fermions"]
    nlev = len(h["steps"])
    monomials = [[] for _ in range(nlev)]
    monomials[h["gauge_level"]].append(WilsonGauge(cfg["action"]["beta"]))
    if f["flavours"] == 2:
        from ..hmc.pseudofermions import HasenbuschRatio, two_flavour_monomials

        terms = two_flavour_monomials(f["kappa"], f["csw"], f["hasenbusch_kappa"] or None,
                                      force_tol=f["force_tol"], action_tol=f["action_tol"])
        for m in terms:
            level = h["hasenbusch_level"] if isinstance(m, HasenbuschRatio) else h["fermion_level"]
            monomials[level].append(m)
    levels = [Level(ms, n, h["integrator"]) for ms, n in zip(monomials, h["steps"])]
    return Integrator(levels, h["trajectory_length"])


def run_hmc(cfg: dict, lattice, rundir, log, ckpt) -> dict:
    """Collective: run (or continue) the HMC chain described by ``cfg``; returns the summary."""
    up = cfg["update"]
    group = get_group(cfg["action"]["group"])
    backend = Backend(cfg["backend"]["name"], cfg["backend"]["precision"])
    if backend.precision != "double":
        raise ConfigError("job type hmc needs backend.precision = \"double\" (the Metropolis step "
                          "needs dH to ~1e-10); single precision is for the inner solves")
    rng = CounterRNG(up["seed"])
    if ckpt.resumed is not None:
        U = ckpt.resumed.field
        U.refresh()
        first = ckpt.resumed.state["step"]
    else:
        U = start_field(cfg, lattice, group, backend, rng)
        first = 0
    hmc = HMC(U, build_integrator(cfg), rng)
    log.info("hmc: levels %s, force evaluations per trajectory %s",
             [(lev.steps, lev.scheme, [m.name for m in lev.monomials]) for lev in hmc.integrator.levels],
             hmc.integrator.force_evaluations())
    steps = up["thermalize"] + up["measure"] * up["measure_every"]
    stopper = StopControl(lattice.comm, cfg["job"]["max_seconds"])
    t0 = time.perf_counter()
    step, saved, measured_count = first, None, 0
    try:
        while step < steps:
            rec = _trajectory(hmc, step, cfg, lattice)
            measured = step >= up["thermalize"] and (step - up["thermalize"]) % up["measure_every"] == 0
            if measured:
                measured_count += 1
                _extra_measurements(rec, U, cfg, measured_count, log)
                rundir.record(rec)
            step += 1
            done = step - first
            elapsed = time.perf_counter() - t0
            if step % cfg["output"]["log_every"] == 0 or step == steps:
                log.info("trajectory %d/%d%s dH %+.3e %s plaquette %.8f  %.2f s/traj (dslash %.0f%%)"
                         "  ETA %s", step, steps, " (thermalizing)" if step <= up["thermalize"] else "",
                         rec["dH"] if isinstance(rec["dH"], float) else float("nan"),
                         "acc" if rec["accepted"] else "REJ", rec["plaquette"], elapsed / done,
                         100 * rec["seconds"].get("dslash_fraction", 0.0), _hms(elapsed / done * (steps - step)))
            if ckpt.due(step) or step == steps:
                saved = ckpt.save(step, U, {"records": rundir.count})
            if step < steps:
                now = time.perf_counter() - t0
                reason = stopper.check(now, now / done)
                if reason:
                    if saved is None or not saved.endswith(f"{step:08d}.h5"):
                        saved = ckpt.save(step, U, {"records": rundir.count})
                    log.warning("stopping at trajectory %d/%d (%s); run the same command again to "
                                "continue", step, steps, reason)
                    break
    finally:
        stopper.close()
    records = rundir.read_records()
    summary = summarise(records)
    seconds = time.perf_counter() - t0
    summary.update({"trajectories": step, "trajectories_target": steps, "complete": step >= steps,
                    "measurements": len(records),
                    "trajectories_this_segment": step - first, "seconds": round(seconds, 3),
                    "seconds_per_trajectory": round(seconds / max(step - first, 1), 4),
                    "checkpoint": saved or (ckpt.resumed.path if ckpt.resumed else None)})
    return summary


def _trajectory(hmc, step, cfg, lattice) -> dict:
    every = cfg["hmc"]["reversibility_every"]
    rev = hmc.reversibility(step) if every and step % every == 0 else None
    reset_profile()
    rec = hmc.trajectory(step, metropolis=step >= cfg["hmc"]["no_metropolis"])
    prof = reset_profile()
    secs = rec["seconds"]
    secs["dslash"] = lattice.comm.allreduce(prof["seconds"], op="max")
    secs["dslash_wait"] = lattice.comm.allreduce(prof["wait_seconds"], op="max")
    secs["dslash_calls"] = prof["calls"]
    secs["dslash_fraction"] = secs["dslash"] / secs["total"] if secs["total"] > 0 else 0.0
    if rev is not None:
        rec["reversibility_dU"], rec["reversibility_dH"] = rev["dU"], rev["dH"]
    if lattice.ndim == 2 and hmc.U.N == 1:  # 2D U(1): the geometric charge is cheap, every record
        from ..gauge.topology import topological_charge

        rec["topological_charge"] = topological_charge(hmc.U)
    return rec


def _extra_measurements(rec, U, cfg, count, log) -> None:
    """Pion correlator and Wilson flow on the measured trajectories that ask for them."""
    meas, f = cfg["measure"], cfg["fermions"]
    if meas.get("pion_every") and count % meas["pion_every"] == 0:
        from ..fermions import WilsonDirac, pion_correlator, point_propagator

        kappa = f["kappa"]
        D = WilsonDirac(U, kappa, f["csw"])
        rec["pion"] = [float(c) for c in pion_correlator(U.lattice, point_propagator(D))]
    if meas["flow_every"] and count % meas["flow_every"] == 0:
        rec.update(flow_measurement(U, meas["flow_epsilon"], meas["flow_tmax"], log))


def flow_measurement(U, eps: float, t_max: float, log=None) -> dict:
    """Collective: Wilson flow to ``t_max``; ``t0`` (``t^2 E = 0.3``, clover ``E``) and ``E``, ``Q``
    (clover charge; geometric in 2D U(1)) interpolated linearly to ``t0``.  If ``t^2 E`` does not
    reach 0.3 by ``t_max`` the record gets ``flow_t0 = null`` and ``Q`` at ``t_max``."""
    import numpy as np

    from ..gauge.flow import FlowError, flow_observables, t0_from_history

    res = flow_observables(U, eps, t_max)
    try:
        t0 = t0_from_history(res.t, res.t2E)
    except FlowError as exc:
        if log is not None:
            log.warning("flow: %s", exc)
        return {"flow_t0": None, "flow_tmax": float(res.t[-1]), "flow_Q_tmax": float(res.Q[-1])}
    return {"flow_t0": t0, "flow_E_t0": float(np.interp(t0, res.t, res.E_clover)),
            "flow_Q_t0": float(np.interp(t0, res.t, res.Q))}


def summarise(records) -> dict:
    """``[mean, error]`` (binned jackknife) of every scalar observable of the records, the
    acceptance, and each component of list-valued ones (``pion`` -> ``pion[0]``, ...)."""
    series: dict[str, list] = {}
    for rec in records:
        for k, v in rec.items():
            if k in SUMMARY_SKIP:
                continue
            if k == "accepted":
                series.setdefault("acceptance", []).append(float(v))
            elif isinstance(v, (int, float)) and not isinstance(v, bool):
                series.setdefault(k, []).append(float(v))
            elif isinstance(v, list) and all(isinstance(x, (int, float)) for x in v):
                for i, x in enumerate(v):
                    series.setdefault(f"{k}[{i}]", []).append(float(x))
    return {k: mean_and_error(v) for k, v in series.items() if len(v) >= 2}
