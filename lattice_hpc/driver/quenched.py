"""Job type ``quenched``: heatbath + overrelaxation for the Wilson gauge action (U(1), SU(N)).

One step is ``update.heatbath`` heatbath sweeps followed by ``update.overrelax`` overrelaxation
sweeps.  After ``update.thermalize`` steps, every ``update.measure_every``-th step is measured
(plaquette total/spatial/temporal, link trace, Polyakov loop) until ``update.measure`` measurements
are taken.  The summary gives ``[mean, error]`` per observable (binned jackknife) over all
records of the run, across resumed segments.

Chain state (checkpointed every ``checkpoint.every`` steps and at the end): ``step`` (steps done),
``sweep`` (heatbath sweeps done: the RNG counter of the next sweep) and ``records`` (records
written).  Heatbath sweep ``s`` draws from the purpose ``("heatbath", s, ...)`` of the counter-based
generator, so the seed and ``sweep`` are the generator's whole state and a resumed chain is the
uninterrupted one.  SIGTERM/SIGUSR1 or ``job.max_seconds`` stop the segment cleanly (checkpoint,
partial summary) before the wall-clock limit of a batch job (:mod:`.stopping`).
"""

from __future__ import annotations

import time

from ..analysis import mean_and_error
from ..backend import Backend
from ..gauge import GaugeField, measure_all
from ..groups import get_group
from ..rng import CounterRNG
from ..update import heatbath_sweep, overrelax_sweep
from .stopping import StopControl


def start_field(cfg, lattice, group, backend, rng):
    start = cfg["update"]["start"]
    if start == "cold":
        U = GaugeField.cold(lattice, group, backend)
    elif start == "hot":
        U = GaugeField.hot(lattice, group, rng, backend)
    else:
        U = GaugeField.near_identity(lattice, group, rng, 0.2, backend)
    U.refresh()
    return U


def run_quenched(cfg: dict, lattice, rundir, log, ckpt) -> dict:
    """Collective: run (or continue) the chain described by ``cfg``; returns the summary."""
    up = cfg["update"]
    beta = cfg["action"]["beta"]
    group = get_group(cfg["action"]["group"])
    backend = Backend(cfg["backend"]["name"], cfg["backend"]["precision"])
    rng = CounterRNG(up["seed"])
    if ckpt.resumed is not None:
        U = ckpt.resumed.field
        U.refresh()
        first, sweep = ckpt.resumed.state["step"], ckpt.resumed.state["sweep"]
    else:
        U = start_field(cfg, lattice, group, backend, rng)
        first, sweep = 0, 0
    steps = up["thermalize"] + up["measure"] * up["measure_every"]
    stopper = StopControl(lattice.comm, cfg["job"]["max_seconds"])
    t0 = time.perf_counter()
    step = first
    saved = None
    try:
        while step < steps:
            for _ in range(up["heatbath"]):
                heatbath_sweep(U, beta, rng, sweep)
                sweep += 1
            for _ in range(up["overrelax"]):
                overrelax_sweep(U, beta)
            measured = step >= up["thermalize"] and (step - up["thermalize"]) % up["measure_every"] == 0
            logged = (step + 1) % cfg["output"]["log_every"] == 0 or step == steps - 1
            obs = measure_all(U) if measured or logged else None
            elapsed = time.perf_counter() - t0
            if measured:
                rundir.record({"step": step, "seconds": round(elapsed, 4), **_flatten(obs)})
            step += 1
            done = step - first
            if logged:
                eta = elapsed / done * (steps - step)
                log.info("step %d/%d%s plaquette %.8f  %.3f s/step  ETA %s", step, steps,
                         " (thermalizing)" if step <= up["thermalize"] else "", obs["plaquette"],
                         elapsed / done, _hms(eta))
            if ckpt.due(step) or step == steps:
                saved = ckpt.save(step, U, {"sweep": sweep, "records": rundir.count})
            if step < steps:
                now = time.perf_counter() - t0
                reason = stopper.check(now, now / done)
                if reason:
                    if saved is None or not saved.endswith(f"{step:08d}.h5"):
                        saved = ckpt.save(step, U, {"sweep": sweep, "records": rundir.count})
                    log.warning("stopping at step %d/%d (%s); run the same command again to continue",
                                step, steps, reason)
                    break
    finally:
        stopper.close()
    if saved is None and first == steps:  # nothing to do: the run was already complete
        log.info("the run is already complete (%d steps); reporting its summary", steps)
    series: dict[str, list] = {}
    for rec in rundir.read_records():
        for k, v in rec.items():
            if k not in ("step", "seconds"):
                series.setdefault(k, []).append(v)
    summary = {k: mean_and_error(v) for k, v in series.items()}
    seconds = time.perf_counter() - t0
    summary.update({"steps": step, "steps_target": steps, "complete": step >= steps,
                    "measurements": len(series.get("plaquette", [])),
                    "steps_this_segment": step - first, "seconds": round(seconds, 3),
                    "seconds_per_step": round(seconds / max(step - first, 1), 5),
                    "checkpoint": saved or (ckpt.resumed.path if ckpt.resumed else None)})
    return summary


def _flatten(obs: dict) -> dict:
    out = {}
    for k, v in obs.items():
        if v is None:
            continue
        if k == "polyakov":
            out["polyakov_re"], out["polyakov_im"] = v
            out["polyakov_abs"] = (v[0] ** 2 + v[1] ** 2) ** 0.5
        else:
            out[k] = v
    return out


def _hms(seconds: float) -> str:
    s = int(round(seconds))
    return f"{s // 3600}h{s % 3600 // 60:02d}m{s % 60:02d}s" if s >= 3600 else f"{s // 60}m{s % 60:02d}s"
