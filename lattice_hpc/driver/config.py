"""Job files (TOML) and ``--set section.key=value`` overrides: schema and validation.

The schema has a common part (:data:`COMMON`), which every job type reads, and a part owned by
each job type (its class attribute ``schema``, :mod:`.jobtypes`).  Defaults in brackets::

    [job]      type ["quenched"] (quenched | hmc), name ["run"], max_seconds [0] (stop cleanly, with
               a checkpoint, before this much wall-clock time has passed; 0 = no limit;
               SIGTERM/SIGUSR1 also stop cleanly, see lattice_hpc.driver.stopping)
    [lattice]  dims (required, e.g. [8, 8, 8, 8]), grid ["auto"] (e.g. "1,1,1,2")
    [action]   group ["SU3"] (U1, SU2, SU3, SU<N>), beta (required)
    [update]   start ["hot"] (cold | hot | near_identity | PATH: a gauge file of any format that
               `lattice-hpc measure` reads, or a checkpoint of another run), thermalize [100],
               measure [200] (measured steps), measure_every [1], seed [1]
    [backend]  name ["numpy"] (numpy | cupy), precision ["double"] (double | single)
    [output]   dir ["runs/{name}"] (relative to the working directory; {name} is job.name),
               log_every [1]
    [checkpoint] every [50] (steps between checkpoints; one is always written at the end),
               keep [2] (newest checkpoints kept), precision ["auto"] (auto = the run's precision)

Job type ``quenched`` adds ``[update]`` heatbath [1] and overrelax [4] (sweeps per step); job type
``hmc`` adds the sections ``[hmc]``, ``[fermions]`` and ``[measure]`` (:mod:`.hmc`).  A key that
belongs to another job type is refused with a message that says so.

Validation happens in full before anything is written: types, finite floats (``nan`` and ``inf``
are refused with the key named), ranges and choices, then the job type's cross-key checks.

Resuming: the keys that define the Markov chain are :data:`COMMON_CHAIN_KEYS` plus the job type's
``chain_keys``; changing any of them refuses to resume (the message names them).  Other keys (the
number of measurements, the process grid, output, checkpoint intervals, the array backend) may
change between segments of a run.

Every rank reads and validates the file itself, so a bad file stops every rank with the same
message; the driver then checks that the resolved configuration is identical on all ranks.
"""

from __future__ import annotations

import copy
import difflib
import hashlib
import json
import math
import tomllib
from dataclasses import dataclass

from ..errors import ConfigError

REQUIRED = object()
START_KINDS = ("cold", "hot", "near_identity")


@dataclass(frozen=True)
class Key:
    """One job-file key: default (or :data:`REQUIRED`), type, and a check of its value.

    ``check`` is ``None``, ``">=0"``, ``">=1"``, ``">0"``, ``"(0,1)"`` or a tuple of choices.
    Floats are always checked to be finite.  ``before``: for a key added to the schema with a
    default that differs from what runs did before it existed, the value those runs had (the
    resume check reads a key missing from an old run's configuration as ``before``).
    """

    default: object
    type: type
    check: object = None
    before: object = REQUIRED


COMMON = {
    "job": {"type": Key("quenched", str), "name": Key("run", str), "max_seconds": Key(0.0, float, ">=0")},
    "lattice": {"dims": Key(REQUIRED, list), "grid": Key("auto", str)},
    "action": {"group": Key("SU3", str), "beta": Key(REQUIRED, float, ">=0")},
    "update": {"start": Key("hot", str), "thermalize": Key(100, int, ">=0"),
               "measure": Key(200, int, ">=1"), "measure_every": Key(1, int, ">=1"),
               "seed": Key(1, int, ">=0")},
    "backend": {"name": Key("numpy", str, ("numpy", "cupy")),
                "precision": Key("double", str, ("double", "single"))},
    "output": {"dir": Key("runs/{name}", str), "log_every": Key(1, int, ">=1")},
    "checkpoint": {"every": Key(50, int, ">=0"), "keep": Key(2, int, ">=1"),
                   "precision": Key("auto", str, ("auto", "double", "single"))},
}

#: keys that define the Markov chain of every job type
COMMON_CHAIN_KEYS = {
    "job": ("type",),
    "lattice": ("dims",),
    "action": ("group", "beta"),
    "update": ("start", "thermalize", "measure_every", "seed"),
    "backend": ("precision",),
}


def load_config(path, overrides=()) -> dict:
    """Read a job file, apply ``key=value`` overrides, fill defaults, validate; returns a dict."""
    try:
        with open(path, "rb") as fh:
            raw = tomllib.load(fh)
    except FileNotFoundError:
        raise ConfigError(f"job file {path}: not found") from None
    except IsADirectoryError:
        raise ConfigError(f"job file {path}: is a directory, not a TOML file") from None
    except OSError as exc:
        raise ConfigError(f"job file {path}: cannot be read ({exc.strerror or exc})") from None
    except UnicodeDecodeError as exc:
        raise ConfigError(f"job file {path}: not UTF-8 text (byte {exc.start}): is it a job "
                          "file?") from None
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


def schema_of(job_type) -> dict:
    """The full schema of a job type: :data:`COMMON` merged with its own sections and keys."""
    out = {s: dict(keys) for s, keys in COMMON.items()}
    for section, keys in job_type.schema.items():
        out.setdefault(section, {}).update(keys)
    return out


def _owner(section: str, key: str | None, job_types) -> list[str]:
    return [name for name, cls in job_types.items()
            if section in cls.schema and (key is None or key in cls.schema[section])]


def validate(raw: dict, source: str = "job file") -> dict:
    """Check sections, keys, types, finiteness, ranges and choices, then the job type's cross-key
    checks; return a new dict with defaults filled in (only the sections of the job type)."""
    from .jobtypes import JOB_TYPES

    for section in raw:
        if not isinstance(raw[section], dict):
            raise ConfigError(f"{source}: {section} must be a [section] table")
    kind = raw.get("job", {}).get("type", COMMON["job"]["type"].default)
    if kind not in JOB_TYPES:
        raise ConfigError(f"{source}: job.type = {kind!r} is not a known job type; "
                          f"known: {', '.join(JOB_TYPES)}")
    job_type = JOB_TYPES[kind]
    schema = schema_of(job_type)
    for section in raw:
        if section not in schema:
            owners = _owner(section, None, JOB_TYPES)
            if owners:
                raise ConfigError(f"{source}: section [{section}] does not apply to job type "
                                  f"{kind!r} (it belongs to job type {' and '.join(owners)})")
            raise ConfigError(f"{source}: unknown section [{section}]{_suggest(section, schema)}; "
                              f"known sections: {', '.join(schema)}")
    out = {}
    for section, keys in schema.items():
        given = raw.get(section, {})
        for key in given:
            if key not in keys:
                owners = _owner(section, key, JOB_TYPES)
                if owners:
                    raise ConfigError(f"{source}: {section}.{key} does not apply to job type "
                                      f"{kind!r} (it belongs to job type {' and '.join(owners)}); "
                                      "remove it")
                raise ConfigError(f"{source}: unknown key {section}.{key}{_suggest(key, keys)}; "
                                  f"known keys of [{section}]: {', '.join(keys)}")
        out[section] = {}
        for key, spec in keys.items():
            name = f"{section}.{key}"
            if key not in given:
                if spec.default is REQUIRED:
                    raise ConfigError(f"{source}: {name} is required")
                out[section][key] = copy.deepcopy(spec.default)
                continue
            out[section][key] = check_value(name, given[key], spec, source)
    dims = out["lattice"]["dims"]
    if not dims or not all(isinstance(d, int) and not isinstance(d, bool) and d > 0 for d in dims):
        raise ConfigError(f"{source}: lattice.dims = {dims!r} must be a list of positive integers")
    from ..groups import get_group

    try:
        get_group(out["action"]["group"])
    except ConfigError as exc:
        raise ConfigError(f"{source}: action.group: {exc}") from None
    if not out["update"]["start"].strip():
        raise ConfigError(f"{source}: update.start is empty; give cold, hot, near_identity or the "
                          "path of a gauge file")
    job_type.check(out, source)
    return out


def check_value(name: str, value, spec: Key, source: str):
    """The validated value of key ``name`` (ints become floats where a float is expected)."""
    typ = spec.type
    if typ is float and isinstance(value, int) and not isinstance(value, bool):
        value = float(value)
    if typ is str and name == "lattice.grid" and isinstance(value, list):
        value = ",".join(str(v) for v in value)
    if not isinstance(value, typ) or (isinstance(value, bool) and typ is not bool):
        raise ConfigError(f"{source}: {name} = {value!r} must be of type {typ.__name__}")
    if typ is float and not math.isfinite(value):
        raise ConfigError(f"{source}: {name} = {value!r} must be a finite number")
    check = spec.check
    if isinstance(check, tuple) and value not in check:
        raise ConfigError(f"{source}: {name} = {value!r} must be one of "
                          f"{', '.join(map(str, check))}")
    bad = {">=0": lambda v: v < 0, ">=1": lambda v: v < 1, ">0": lambda v: v <= 0,
           "(0,1)": lambda v: not 0 < v < 1}
    if isinstance(check, str) and bad[check](value):
        rule = {">=0": ">= 0", ">=1": ">= 1", ">0": "> 0", "(0,1)": "in (0, 1)"}[check]
        raise ConfigError(f"{source}: {name} = {value} must be {rule}")
    return value


def config_hash(cfg: dict) -> str:
    """SHA-256 of the canonical JSON of a resolved configuration."""
    return hashlib.sha256(json.dumps(cfg, sort_keys=True).encode()).hexdigest()


def chain_keys_of(job_type) -> dict:
    """``{section: keys}`` that define the chain of ``job_type``: common keys and its own."""
    out = {s: tuple(k) for s, k in COMMON_CHAIN_KEYS.items()}
    for section, keys in job_type.chain_keys.items():
        out[section] = out.get(section, ()) + tuple(keys)
    return out


def chain_changes(old: dict, new: dict) -> list[str]:
    """The chain keys (of ``new``'s job type) whose values differ between two configurations
    (a key missing from ``old``, added to the schema later, counts as its default)."""
    from .jobtypes import JOB_TYPES

    kind = new.get("job", {}).get("type")
    if old.get("job", {}).get("type") != kind:
        return [f"job.type: {old.get('job', {}).get('type')!r} -> {kind!r}"]
    out = []
    schema = schema_of(JOB_TYPES[kind])
    for section, keys in chain_keys_of(JOB_TYPES[kind]).items():
        for key in keys:
            # a key added after ``old`` was written has the value that ``old`` ran with: its default
            spec = schema.get(section, {}).get(key)
            default = None if spec is None or spec.default is REQUIRED else spec.default
            if spec is not None and spec.before is not REQUIRED:
                default = spec.before
            a = old.get(section, {}).get(key, default)
            b = new.get(section, {}).get(key)
            if a != b:
                out.append(f"{section}.{key}: {a!r} -> {b!r}")
    return out
