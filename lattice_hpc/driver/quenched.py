"""Job type ``quenched``: heatbath + overrelaxation for the Wilson gauge action (U(1), SU(N)).

One step is ``update.heatbath`` heatbath sweeps followed by ``update.overrelax`` overrelaxation
sweeps.  After ``update.thermalize`` steps, every ``update.measure_every``-th step is measured
(plaquette total/spatial/temporal, link trace, Polyakov loop) until ``update.measure`` measurements
are taken.  The summary gives ``[mean, error]`` per observable (binned jackknife).
"""

from __future__ import annotations

import time

from ..analysis import mean_and_error
from ..backend import Backend
from ..gauge import GaugeField, measure_all
from ..groups import get_group
from ..rng import CounterRNG
from ..update import heatbath_sweep, overrelax_sweep


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


def run_quenched(cfg: dict, lattice, rundir, log) -> dict:
    """Collective: run the chain described by ``cfg`` on ``lattice``; returns the summary."""
    up = cfg["update"]
    beta = cfg["action"]["beta"]
    group = get_group(cfg["action"]["group"])
    backend = Backend(cfg["backend"]["name"], cfg["backend"]["precision"])
    rng = CounterRNG(up["seed"])
    U = start_field(cfg, lattice, group, backend, rng)
    steps = up["thermalize"] + up["measure"] * up["measure_every"]
    series: dict[str, list] = {}
    t0 = time.perf_counter()
    sweep = 0
    for step in range(steps):
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
            flat = _flatten(obs)
            for k, v in flat.items():
                series.setdefault(k, []).append(v)
            rundir.record({"step": step, "seconds": round(elapsed, 4), **flat})
        if logged:
            eta = elapsed / (step + 1) * (steps - step - 1)
            log.info("step %d/%d%s plaquette %.8f  %.3f s/step  ETA %s", step + 1, steps,
                     " (thermalizing)" if step < up["thermalize"] else "", obs["plaquette"],
                     elapsed / (step + 1), _hms(eta))
    summary = {k: mean_and_error(v) for k, v in series.items()}
    summary["steps"] = steps
    summary["measurements"] = up["measure"]
    summary["seconds"] = round(time.perf_counter() - t0, 3)
    summary["seconds_per_step"] = round(summary["seconds"] / max(steps, 1), 5)
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
