"""Job type ``hmc``: Hybrid Monte Carlo for the Wilson gauge action (U(1), SU(N)), with two flavours
of Wilson(-clover) fermions on 4D SU(3), or of Wilson fermions in the 2D U(1) Schwinger model
(``fermions.flavours = 2``; ``kappa`` below 0.5 there, the interacting critical value at beta = 2
being about 0.276).

One step is one trajectory (:class:`lattice_hpc.hmc.HMC`).  The action terms and their levels
come from the job file (``[hmc]``, ``[fermions]``, :mod:`.config`): the gauge action on
``hmc.gauge_level`` (the finest by default), the pseudofermions on ``hmc.fermion_level``, a
Hasenbusch ratio (``fermions.hasenbusch_kappa``) on ``hmc.hasenbusch_level``.  Every trajectory
after ``update.thermalize`` (every ``update.measure_every``-th) writes a record: ``dH``,
``exp(-dH)``, acceptance, plaquettes, Polyakov loop, solver iterations, and where the time went
(``seconds``: total, integrator, each monomial's forces, and ``dslash``: the Dirac operator with
its face exchange, over all solves; with the counts ``halo_calls``, ``halo_messages`` and
``halo_bytes`` of the other halo exchanges, of links and forces).  ``measure.pion_every`` adds the pion correlator, and
``measure.flow_every`` the Wilson flow (``t0``, ``E(t0)``, ``Q(t0)``).

The measurement schedules ``measure.pion_every`` and ``measure.flow_every`` count measured
trajectories from the start of the chain (the ``k``-th, ``2k``-th, ... measurement, globally), so
a resumed run measures exactly what the uninterrupted one does, however short its segments.

Chain state (checkpointed): the trajectory count and the number of records.  Every random number
is keyed by the trajectory number (momenta, pseudofermions, the Metropolis draw), so the seed and
the count are the generator's whole state and a resumed chain is the uninterrupted one.  The
loop, checkpoints and clean stops are the driver's (:mod:`.chain`); a solver that fails inside a
trajectory stops the chain with an error naming the trajectory.

Keys (beyond :data:`.config.COMMON`), defaults in brackets::

    [hmc]      trajectory_length [1.0], integrator ["omelyan"] (leapfrog | omelyan), steps [[10]]
               (steps per level, outermost first: [4, 5] nests 5 steps of the finer level in each
               of 4 of the outer one), gauge_level [-1] (level of the gauge action; -1 = the
               finest), fermion_level [0], hasenbusch_level [0] (level of the Hasenbusch ratio;
               the heavy two-flavour term goes on fermion_level), reversibility_every [0] (every
               N trajectories, also integrate back and record |dU| and dH of the round trip; 0 =
               never), no_metropolis [0] (the first N trajectories of the thermalization are
               accepted without the Metropolis test: not exact, only to leave a cold or hot start;
               N <= update.thermalize)
    [fermions] flavours [0] (0: pure gauge, 2: two degenerate Wilson(-clover) flavours, 4D SU(3),
               or Wilson in 2D U(1)), kappa [0.0], csw [0.0], hasenbusch_kappa [0.0] (0: no Hasenbusch
               preconditioning; else the heavier kappa), action_tol [1e-12] (solves for the
               Metropolis step), force_tol [1e-10] (solves for the forces)
    [measure]  flow_every [0] (Wilson flow every N-th measurement: E(t), t0, topological charge
               at t0), flow_epsilon [0.02], flow_tmax [2.0], pion_every [0] (pion correlator at
               fermions.kappa, csw every N-th measurement), condensate_every [0] (every N-th
               measurement, ``condensate`` = (1/V) Tr D^{-1} in kappa normalization, i.e.
               -<psibar psi> per flavour, from condensate_noise [4] Z2 noise vectors keyed by
               the trajectory)
"""

from __future__ import annotations

from ..comm import halo as halo_profile
from ..errors import ConfigError
from ..fermions.kernels.base import reset_profile
from ..hmc import HMC, Integrator, Level, WilsonGauge
from ..rng import CounterRNG
from .config import Key
from .jobtype import JobType, Schedule


class HMCJob(JobType):
    name = "hmc"
    unit = ("trajectory", "trajectories")
    schema = {
        "hmc": {"trajectory_length": Key(1.0, float, ">0"),
                "integrator": Key("omelyan", str, ("leapfrog", "omelyan")),
                "steps": Key([10], list), "gauge_level": Key(-1, int), "fermion_level": Key(0, int),
                "hasenbusch_level": Key(0, int), "reversibility_every": Key(0, int, ">=0"),
                "no_metropolis": Key(0, int, ">=0")},
        "fermions": {"flavours": Key(0, int, (0, 2)), "kappa": Key(0.0, float, ">=0"),
                     "csw": Key(0.0, float, ">=0"), "hasenbusch_kappa": Key(0.0, float, ">=0"),
                     "action_tol": Key(1e-12, float, "(0,1)"), "force_tol": Key(1e-10, float, "(0,1)")},
        "measure": {"flow_every": Key(0, int, ">=0"), "flow_epsilon": Key(0.02, float),
                    "flow_tmax": Key(2.0, float), "pion_every": Key(0, int, ">=0"),
                    "condensate_every": Key(0, int, ">=0"), "condensate_noise": Key(4, int, ">0")},
    }
    chain_keys = {"hmc": ("trajectory_length", "integrator", "steps", "gauge_level",
                          "fermion_level", "hasenbusch_level", "no_metropolis"),
                  "fermions": ("flavours", "kappa", "csw", "hasenbusch_kappa", "action_tol",
                               "force_tol")}
    observables = ("dH", "exp_minus_dH", "accepted", "plaquette", "plaquette_spatial",
                   "plaquette_temporal", "link_trace", "polyakov_re", "polyakov_im",
                   "polyakov_abs", "topological_charge", "pion", "condensate", "flow_t0", "flow_E_t0",
                   "flow_Q_t0", "flow_tmax", "flow_Q_tmax", "reversibility_dU", "reversibility_dH")

    @classmethod
    def check(cls, cfg: dict, source: str) -> None:
        check_hmc(cfg, source)

    def start(self, field) -> None:
        self.field = field
        self._setup()

    def resume(self, ckpt) -> None:
        self.field = ckpt.field
        self.field.refresh()
        self._setup()

    def _setup(self) -> None:
        self.hmc = HMC(self.field, build_integrator(self.cfg), CounterRNG(self.cfg["update"]["seed"]))
        self.log.info("hmc: levels %s, force evaluations per trajectory %s",
                      [(lev.steps, lev.scheme, [m.name for m in lev.monomials])
                       for lev in self.hmc.integrator.levels],
                      self.hmc.integrator.force_evaluations())

    def step(self, n: int, m: int | None) -> dict | None:
        rec = _trajectory(self.hmc, n, self.cfg, self.lattice)
        self._last = rec
        if m is None:
            return None
        _extra_measurements(rec, self.field, self.cfg, m, self.log, n)
        return rec

    def progress(self, n: int, rec: dict | None) -> str:
        rec = self._last
        dH = rec["dH"] if isinstance(rec["dH"], float) else float("nan")
        return (f"dH {dH:+.3e} {'acc' if rec['accepted'] else 'REJ'} plaquette {rec['plaquette']:.8f}"
                f" (dslash {100 * rec['seconds'].get('dslash_fraction', 0.0):.0f}%)")


def check_hmc(out: dict, source: str) -> None:
    """Cross-key checks of the [hmc], [fermions] and [measure] sections."""
    if out["backend"]["precision"] != "double":
        raise ConfigError(f"{source}: job type hmc needs backend.precision = \"double\" (the "
                          "Metropolis step needs dH to ~1e-10); single precision is for the inner "
                          "solves")
    h, f = out["hmc"], out["fermions"]
    steps = h["steps"]
    if not steps or not all(isinstance(n, int) and not isinstance(n, bool) and n >= 1 for n in steps):
        raise ConfigError(f"{source}: hmc.steps = {steps!r} must be a list of integers >= 1, "
                          "one per level, outermost first")
    for key in ("gauge_level", "fermion_level", "hasenbusch_level"):
        if not -len(steps) <= h[key] < len(steps):
            raise ConfigError(f"{source}: hmc.{key} = {h[key]} is not a level of hmc.steps = {steps}")
    if h["no_metropolis"] > out["update"]["thermalize"]:
        raise ConfigError(f"{source}: hmc.no_metropolis = {h['no_metropolis']} must not exceed "
                          f"update.thermalize = {out['update']['thermalize']}: trajectories without "
                          "the accept step are not exact and must not be measured")
    group, nd = out["action"]["group"], len(out["lattice"]["dims"])
    schwinger = (group, nd) == ("U1", 2)
    kmax = 0.5 if schwinger else 0.25
    if f["flavours"]:
        if (group, nd) not in (("SU3", 4), ("U1", 2)):
            raise ConfigError(f"{source}: fermions.flavours = {f['flavours']} needs a 4D SU3 lattice "
                              f"or a 2D U1 one (the Schwinger model), got {group} in {nd}D")
        if not 0 < f["kappa"] < kmax:
            raise ConfigError(f"{source}: fermions.kappa = {f['kappa']} must be in (0, {kmax})")
        if schwinger and f["csw"]:
            raise ConfigError(f"{source}: fermions.csw = {f['csw']}: the clover term is implemented "
                              "for 4D SU3 only (the Schwinger model runs with Wilson fermions)")
        if f["hasenbusch_kappa"] and not 0 < f["hasenbusch_kappa"] < f["kappa"]:
            raise ConfigError(f"{source}: fermions.hasenbusch_kappa = {f['hasenbusch_kappa']} must "
                              f"be between 0 and fermions.kappa = {f['kappa']} (a heavier mass)")
    m = out["measure"]
    for key in ("pion_every", "condensate_every"):
        if m[key] and not (0 < f["kappa"] < kmax and (group, nd) in (("SU3", 4), ("U1", 2))):
            raise ConfigError(f"{source}: measure.{key} = {m[key]} needs 4D SU3 or 2D U1 and "
                              f"fermions.kappa in (0, {kmax}), got {group} in {nd}D and "
                              f"kappa {f['kappa']}")
    if m["flow_every"] and (m["flow_epsilon"] <= 0 or m["flow_tmax"] <= m["flow_epsilon"]):
        raise ConfigError(f"{source}: measure.flow_epsilon = {m['flow_epsilon']} and "
                          f"measure.flow_tmax = {m['flow_tmax']} must satisfy 0 < epsilon < tmax")


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
        for mono in terms:
            level = h["hasenbusch_level"] if isinstance(mono, HasenbuschRatio) else h["fermion_level"]
            monomials[level].append(mono)
    levels = [Level(ms, n, h["integrator"]) for ms, n in zip(monomials, h["steps"])]
    return Integrator(levels, h["trajectory_length"])


def _trajectory(hmc, step, cfg, lattice) -> dict:
    every = cfg["hmc"]["reversibility_every"]
    rev = hmc.reversibility(step) if every and step % every == 0 else None
    reset_profile()
    halo_profile.reset_profile()
    rec = hmc.trajectory(step, metropolis=step >= cfg["hmc"]["no_metropolis"])
    prof = reset_profile()
    halos = halo_profile.reset_profile()
    secs = rec["seconds"]
    # halo exchanges of the trajectory (links, forces; not the Dirac faces): counts per rank, the
    # network part of the performance model's non-Dirac time
    secs["halo_calls"] = halos["calls"]
    secs["halo_messages"] = lattice.comm.allreduce(halos["messages"], op="max")
    secs["halo_bytes"] = lattice.comm.allreduce(halos["bytes"], op="max")
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


def _extra_measurements(rec, U, cfg, m, log, n=0) -> None:
    """Pion correlator, chiral condensate and Wilson flow on the measurements that ask for them
    (``m``: the global measurement index, :meth:`.jobtype.Schedule.due`; ``n``: the trajectory,
    which keys the condensate's noise)."""
    meas, f = cfg["measure"], cfg["fermions"]
    if Schedule.due(m, meas["condensate_every"]):
        from ..fermions import WilsonDirac, chiral_condensate

        D = WilsonDirac(U, f["kappa"], f["csw"])
        res = chiral_condensate(D, meas["condensate_noise"], CounterRNG(cfg["update"]["seed"]),
                                purpose=("condensate", int(n)))
        rec["condensate"] = res.mean
    if Schedule.due(m, meas["pion_every"]):
        from ..fermions import WilsonDirac, pion_correlator, point_propagator

        kappa = f["kappa"]
        D = WilsonDirac(U, kappa, f["csw"])
        rec["pion"] = [float(c) for c in pion_correlator(U.lattice, point_propagator(D))]
    if Schedule.due(m, meas["flow_every"]):
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
