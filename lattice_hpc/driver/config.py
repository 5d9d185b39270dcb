"""Job files (TOML) and ``--set section.key=value`` overrides.

Schema (defaults in brackets)::

    [job]      type ["quenched"] (quenched | hmc), name ["run"], max_seconds [0] (stop cleanly, with a checkpoint,
               before this much wall-clock time has passed; 0 = no limit; SIGTERM/SIGUSR1 also
               stop cleanly, see lattice_hpc.driver.stopping)
    [lattice]  dims (required, e.g. [8, 8, 8, 8]), grid ["auto"] (e.g. "1,1,1,2")
    [action]   group ["SU3"] (U1, SU2, SU3, SU<N>), beta (required)
    [update]   start ["hot"] (cold | hot | near_identity), heatbath [1] (sweeps per step),
               overrelax [4] (sweeps per step), thermalize [100], measure [200] (measured steps),
               measure_every [1], seed [1]   (for job type hmc a step is one trajectory)
    [hmc]      (job type hmc) trajectory_length [1.0], integrator ["omelyan"] (leapfrog | omelyan),
               steps [[10]] (steps per level, outermost first: [4, 5] nests 5 steps of the
               finer level in each of 4 of the outer one), gauge_level [-1] (level of the gauge
               action; -1 = the finest), fermion_level [0], hasenbusch_level [0] (level of the
               Hasenbusch ratio; the heavy two-flavour term goes on fermion_level),
               reversibility_every [0] (every N trajectories, also integrate back and record
               |dU| and dH of the round trip; 0 = never), no_metropolis [0] (the first N
               trajectories of the thermalization are accepted without the Metropolis test: not
               exact, only to leave a cold or hot start; N <= update.thermalize)
    [fermions] (job type hmc) flavours [0] (0: pure gauge, 2: two degenerate Wilson(-clover)
               flavours, 4D SU(3) only), kappa [0.0], csw [0.0], hasenbusch_kappa [0.0] (0: no
               Hasenbusch preconditioning; else the heavier kappa), action_tol [1e-12] (solves for
               the Metropolis step), force_tol [1e-10] (solves for the forces)
    [measure]  (job type hmc) flow_every [0] (Wilson flow every N measured trajectories: E(t),
               t0, topological charge at t0), flow_epsilon [0.02], flow_tmax [2.0],
               pion_every [0] (pion correlator at fermions.kappa, csw every N measured trajectories)
    [backend]  name ["numpy"] (numpy | cupy), precision ["double"] (double | single)
    [output]   dir ["runs/{name}"] (relative to the working directory; {name} is job.name),
               log_every [1]
    [checkpoint] every [50] (steps between checkpoints; one is always written at the end),
               keep [2] (newest checkpoints kept), precision ["auto"] (auto = the run's precision)

Resuming: a run directory that holds a checkpoint is continued from it.  The keys in
:data:`CHAIN_KEYS` define the Markov chain; changing any of them refuses to resume (the message
names them).  Other keys (the number of measurements, the process grid, output, checkpoint
intervals, the array backend) may change between segments of a run.

Every rank reads and validates the file itself, so a bad file stops every rank with the same
message; the driver then checks that the resolved configuration is identical on all ranks.
"""

from __future__ import annotations

import copy
import difflib
import hashlib
import json
import tomllib

from ..errors import ConfigError

REQUIRED = object()

SCHEMA = {
    "job": {"type": ("quenched", str), "name": ("run", str), "max_seconds": (0.0, float)},
    "lattice": {"dims": (REQUIRED, list), "grid": ("auto", str)},
    "action": {"group": ("SU3", str), "beta": (REQUIRED, float)},
    "update": {"start": ("hot", str), "heatbath": (1, int), "overrelax": (4, int),
               "thermalize": (100, int), "measure": (200, int), "measure_every": (1, int),
               "seed": (1, int)},
    "hmc": {"trajectory_length": (1.0, float), "integrator": ("omelyan", str), "steps": ([10], list),
            "gauge_level": (-1, int), "fermion_level": (0, int), "hasenbusch_level": (0, int),
            "reversibility_every": (0, int), "no_metropolis": (0, int)},
    "fermions": {"flavours": (0, int), "kappa": (0.0, float), "csw": (0.0, float),
                 "hasenbusch_kappa": (0.0, float), "action_tol": (1e-12, float),
                 "force_tol": (1e-10, float)},
    "measure": {"flow_every": (0, int), "flow_epsilon": (0.02, float), "flow_tmax": (2.0, float),
                "pion_every": (0, int)},
    "backend": {"name": ("numpy", str), "precision": ("double", str)},
    "output": {"dir": ("runs/{name}", str), "log_every": (1, int)},
    "checkpoint": {"every": (50, int), "keep": (2, int), "precision": ("auto", str)},
}

CHAIN_KEYS = {
    "job": ("type",),
    "lattice": ("dims",),
    "action": ("group", "beta"),
    "update": ("start", "heatbath", "overrelax", "thermalize", "measure_every", "seed"),
    "hmc": ("trajectory_length", "integrator", "steps", "gauge_level", "fermion_level",
            "hasenbusch_level", "no_metropolis"),
    "fermions": ("flavours", "kappa", "csw", "hasenbusch_kappa", "action_tol", "force_tol"),
    "backend": ("precision",),
}

HMC_SECTIONS = ("hmc", "fermions")

CHOICES = {
    ("update", "start"): ("cold", "hot", "near_identity"),
    ("backend", "name"): ("numpy", "cupy"),
    ("backend", "precision"): ("double", "single"),
    ("checkpoint", "precision"): ("auto", "double", "single"),
    ("hmc", "integrator"): ("leapfrog", "omelyan"),
    ("fermions", "flavours"): (0, 2),
}

NON_NEGATIVE = {("update", k) for k in ("heatbath", "overrelax", "thermalize", "seed")} | \
    {("checkpoint", "every"), ("job", "max_seconds"), ("hmc", "reversibility_every"), ("hmc", "no_metropolis"),
     ("fermions", "kappa"), ("fermions", "csw"), ("fermions", "hasenbusch_kappa"),
     ("measure", "flow_every"), ("measure", "pion_every")}
POSITIVE = {("update", "measure"), ("update", "measure_every"), ("output", "log_every"),
            ("checkpoint", "keep")}


def load_config(path, overrides=()) -> dict:
    """Read a job file, apply ``key=value`` overrides, fill defaults, validate; returns a dict."""
    try:
        with open(path, "rb") as fh:
            raw = tomllib.load(fh)
    except FileNotFoundError:
        raise ConfigError(f"job file {path}: not found") from None
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"job file {path}: not valid TOML: {exc}") from None
    for item in overrides:
        apply_override(raw, item)
    return validate(raw, str(path))


def apply_override(raw: dict, item: str) -> None:
    """Apply one ``section.key=value`` override (value parsed as TOML, else taken as a string)."""
    if "=" not in item:
        raise ConfigError(f"--set {item!r}: expected section.key=value, e.g. action.beta=5.7")
    key, value = item.split("=", 1)
    parts = key.strip().split(".")
    if len(parts) != 2:
        raise ConfigError(f"--set {item!r}: the key must be section.key, e.g. action.beta")
    try:
        parsed = tomllib.loads(f"v = {value}")["v"]
    except tomllib.TOMLDecodeError:
        parsed = value
    raw.setdefault(parts[0], {})
    if not isinstance(raw[parts[0]], dict):
        raise ConfigError(f"--set {item!r}: [{parts[0]}] is not a section")
    raw[parts[0]][parts[1]] = parsed


def _suggest(word, options):
    close = difflib.get_close_matches(word, list(options), n=1)
    return f" (did you mean {close[0]!r}?)" if close else ""


def validate(raw: dict, source: str = "job file") -> dict:
    """Check sections, keys, types and choices; return a new dict with defaults filled in."""
    out = {}
    for section in raw:
        if section not in SCHEMA:
            raise ConfigError(f"{source}: unknown section [{section}]{_suggest(section, SCHEMA)}; "
                              f"known sections: {', '.join(SCHEMA)}")
        if not isinstance(raw[section], dict):
            raise ConfigError(f"{source}: {section} must be a [section] table")
    for section, keys in SCHEMA.items():
        given = raw.get(section, {})
        for key in given:
            if key not in keys:
                raise ConfigError(f"{source}: unknown key {section}.{key}{_suggest(key, keys)}; "
                                  f"known keys of [{section}]: {', '.join(keys)}")
        out[section] = {}
        for key, (default, typ) in keys.items():
            name = f"{section}.{key}"
            if key not in given:
                if default is REQUIRED:
                    raise ConfigError(f"{source}: {name} is required")
                out[section][key] = copy.deepcopy(default)
                continue
            value = given[key]
            if typ is float and isinstance(value, int) and not isinstance(value, bool):
                value = float(value)
            if typ is str and key == "grid" and isinstance(value, list):
                value = ",".join(str(v) for v in value)
            if not isinstance(value, typ) or isinstance(value, bool):
                raise ConfigError(f"{source}: {name} = {value!r} must be of type {typ.__name__}")
            if (section, key) in CHOICES and value not in CHOICES[(section, key)]:
                raise ConfigError(f"{source}: {name} = {value!r} must be one of "
                                  f"{', '.join(CHOICES[(section, key)])}")
            if (section, key) in NON_NEGATIVE and value < 0:
                raise ConfigError(f"{source}: {name} = {value} must be >= 0")
            if (section, key) in POSITIVE and value < 1:
                raise ConfigError(f"{source}: {name} = {value} must be >= 1")
            out[section][key] = value
    dims = out["lattice"]["dims"]
    if not dims or not all(isinstance(d, int) and not isinstance(d, bool) and d > 0 for d in dims):
        raise ConfigError(f"{source}: lattice.dims = {dims!r} must be a list of positive integers")
    from ..groups import get_group

    try:
        get_group(out["action"]["group"])
    except ConfigError as exc:
        raise ConfigError(f"{source}: action.group: {exc}") from None
    if out["action"]["beta"] < 0:
        raise ConfigError(f"{source}: action.beta = {out['action']['beta']} must be >= 0")
    _validate_hmc(out, source)
    return out


def _validate_hmc(out: dict, source: str) -> None:
    """Cross-key checks of the [hmc], [fermions] and [measure] sections."""
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
    if h["trajectory_length"] <= 0:
        raise ConfigError(f"{source}: hmc.trajectory_length = {h['trajectory_length']} must be > 0")
    if f["flavours"]:
        if out["action"]["group"] != "SU3" or len(out["lattice"]["dims"]) != 4:
            raise ConfigError(f"{source}: fermions.flavours = {f['flavours']} needs a 4D SU3 lattice, "
                              f"got {out['action']['group']} in {len(out['lattice']['dims'])}D")
        if not 0 < f["kappa"] < 0.25:
            raise ConfigError(f"{source}: fermions.kappa = {f['kappa']} must be in (0, 0.25)")
        if f["hasenbusch_kappa"] and not 0 < f["hasenbusch_kappa"] < f["kappa"]:
            raise ConfigError(f"{source}: fermions.hasenbusch_kappa = {f['hasenbusch_kappa']} must "
                              f"be between 0 and fermions.kappa = {f['kappa']} (a heavier mass)")
    for key in ("action_tol", "force_tol"):
        if not 0 < f[key] < 1:
            raise ConfigError(f"{source}: fermions.{key} = {f[key]} must be in (0, 1)")
    m = out["measure"]
    if m["pion_every"] and not (0 < f["kappa"] < 0.25 and out["action"]["group"] == "SU3"
                                and len(out["lattice"]["dims"]) == 4):
        raise ConfigError(f"{source}: measure.pion_every = {m['pion_every']} needs 4D SU3 and "
                          f"fermions.kappa in (0, 0.25), got {f['kappa']}")
    if m["flow_every"] and (m["flow_epsilon"] <= 0 or m["flow_tmax"] <= m["flow_epsilon"]):
        raise ConfigError(f"{source}: measure.flow_epsilon = {m['flow_epsilon']} and "
                          f"measure.flow_tmax = {m['flow_tmax']} must satisfy 0 < epsilon < tmax")


def config_hash(cfg: dict) -> str:
    """SHA-256 of the canonical JSON of a resolved configuration."""
    return hashlib.sha256(json.dumps(cfg, sort_keys=True).encode()).hexdigest()


def chain_changes(old: dict, new: dict) -> list[str]:
    """The :data:`CHAIN_KEYS` whose values differ between two resolved configurations."""
    out = []
    for section, keys in CHAIN_KEYS.items():
        if section in HMC_SECTIONS and new.get("job", {}).get("type") != "hmc":
            continue  # not part of other job types' chains (and absent from their older runs)
        for key in keys:
            a = old.get(section, {}).get(key)
            b = new.get(section, {}).get(key)
            if a != b:
                out.append(f"{section}.{key}: {a!r} -> {b!r}")
    return out
