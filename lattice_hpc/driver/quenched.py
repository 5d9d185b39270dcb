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
uninterrupted one.  The loop, checkpoints and clean stops are the driver's (:mod:`.chain`).
"""

from __future__ import annotations

import time

from ..gauge import measure_all, plaquette
from ..rng import CounterRNG
from ..update import heatbath_sweep, overrelax_sweep
from .config import Key
from .jobtype import JobType


class QuenchedJob(JobType):
    name = "quenched"
    schema = {"update": {"heatbath": Key(1, int, ">=0"), "overrelax": Key(4, int, ">=0")}}
    chain_keys = {"update": ("heatbath", "overrelax")}
    observables = ("plaquette", "plaquette_spatial", "plaquette_temporal", "link_trace",
                   "polyakov_re", "polyakov_im", "polyakov_abs")

    def start(self, field) -> None:
        self.field, self.sweep = field, 0
        self._setup()

    def resume(self, ckpt) -> None:
        self.field, self.sweep = ckpt.field, ckpt.state["sweep"]
        self.field.refresh()
        self._setup()

    def _setup(self):
        self.rng = CounterRNG(self.cfg["update"]["seed"])
        self.beta = self.cfg["action"]["beta"]
        self.t0 = time.perf_counter()

    def step(self, n: int, m: int | None) -> dict | None:
        up, U = self.cfg["update"], self.field
        for _ in range(up["heatbath"]):
            heatbath_sweep(U, self.beta, self.rng, self.sweep)
            self.sweep += 1
        for _ in range(up["overrelax"]):
            overrelax_sweep(U, self.beta)
        if m is None:
            return None
        return {"step": n, "seconds": round(time.perf_counter() - self.t0, 4),
                **flatten(measure_all(U))}

    def state(self) -> dict:
        return {"sweep": self.sweep}

    def progress(self, n: int, rec: dict | None) -> str:
        p = rec["plaquette"] if rec else plaquette(self.field)["plaquette"]
        return f"plaquette {p:.8f}"


def flatten(obs: dict) -> dict:
    """Observables of :func:`lattice_hpc.gauge.measure_all` as flat record entries."""
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
