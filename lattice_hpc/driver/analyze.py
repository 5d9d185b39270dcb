"""``lattice-hpc analyze RUN_DIR``: Gamma-method and binned-jackknife errors of a run's records.

Reads ``RUN_DIR/records.jsonl`` (:mod:`.rundir`: one JSON object per measurement, appended across
resumed segments; thermalization steps are not recorded by the job types) and, for every
observable, prints the mean, its Gamma-method error (:func:`lattice_hpc.analysis.gamma_method`,
Wolff's automatic window with parameter ``--S``), ``tau_int +- dtau_int`` in units of the
measurement spacing, the window ``W``, the binned-jackknife error that the run's own summary
reports (:func:`lattice_hpc.analysis.binned_error`) and the number of measurements ``N``.

Which keys are observables:
- a number (or a boolean, as 0/1) is one observable, named by its key;
- a list is analysed per component, ``pion[0]``, ``pion[1]``, ... (a complex ``[re, im]`` pair
  likewise), a dictionary per entry, ``name.key``; strings and ``null`` are skipped;
- the job type of the run (``config.json``) says which record keys are observables
  (:attr:`lattice_hpc.driver.jobtype.JobType.observables`): bookkeeping such as solver
  iterations, force counts, refreshes and timings is not analysed; for records without a known
  job type, the keys of :data:`BOOKKEEPING` (``step``, ``trajectory``, ``time``, ``seconds``, ...)
  are left out and everything else is analysed.
A record flagged as thermalization (``"thermalizing": true``, ``"thermalization": true`` or
``"thermalized": false``) is dropped; ``--skip N`` then discards the first ``N`` of the remaining
records.  An observable missing from some records is analysed over the records that hold it.
``--observables a,b`` selects by full name (``pion[2]``) or by key (``pion``: every component).
Without it, an observable with fewer than :data:`lattice_hpc.analysis.MIN_LENGTH` measurements
(one measured every k-th record) is left out with a warning and listed under ``"skipped"``.

Output (rank 0 only; the command runs serially, every rank does the same work under ``mpirun``):
a table on stdout, or with ``--json`` one JSON object ``{"run_dir": ..., "records": ...,
"skip": ..., "S": ..., "observables": {name: {"mean", "error", "error_of_error", "tau_int",
"dtau_int", "window", "jackknife_error", "n"}}}`` (plus ``"warnings"`` for an observable whose
analysis warned).  Warnings and progress go to stderr.  A missing run directory or records file,
an unreadable record, an unknown observable, a NaN, or a requested series (or, without
``--observables``, every series) shorter than :data:`lattice_hpc.analysis.MIN_LENGTH` is a :class:`lattice_hpc.errors.ConfigError` naming the
path or the observable (exit status 2).
"""

from __future__ import annotations

import json
import math
import os
import sys
import warnings

import numpy as np

from ..analysis import MIN_LENGTH, binned_error, gamma_method
from ..errors import ConfigError
from ..log import get_logger

#: record keys that describe the measurement rather than measure something
BOOKKEEPING = frozenset({"step", "steps", "trajectory", "traj", "sweep", "sweeps", "time",
                         "seconds", "date", "segment", "rank", "config", "configuration",
                         "thermalizing", "thermalization", "thermalized", "measured"})


def read_records(run_dir: str) -> tuple[str, list[dict]]:
    """``(path, records)`` of ``run_dir/records.jsonl``.

    An unterminated last line (a record being written by a running job) is ignored; any other
    line that is not a JSON object is an error naming the file and the line.
    """
    if not os.path.isdir(run_dir):
        raise ConfigError(f"{run_dir}: no such run directory")
    path = os.path.join(run_dir, "records.jsonl")
    try:
        with open(path) as fh:
            text = fh.read()
    except FileNotFoundError:
        raise ConfigError(f"{path}: not found (is {run_dir} a run directory of lattice-hpc run?)")
    except OSError as exc:
        raise ConfigError(f"{path}: unreadable ({exc})")
    lines = text.split("\n")
    records = []
    for lineno, line in enumerate(lines, 1):
        if not line.strip():
            continue
        try:
            rec = json.loads(line)
        except ValueError as exc:
            if lineno == len(lines):  # no newline after it: still being written
                continue
            raise ConfigError(f"{path}:{lineno}: not a JSON record ({exc})")
        if not isinstance(rec, dict):
            raise ConfigError(f"{path}:{lineno}: a record must be a JSON object, got {type(rec).__name__}")
        records.append(rec)
    return path, records


def _is_thermalization(rec: dict) -> bool:
    return rec.get("thermalizing") is True or rec.get("thermalization") is True \
        or rec.get("thermalized") is False


def _leaves(name: str, value):
    """``(name, float)`` for every number in ``value`` (lists by index, dictionaries by key)."""
    if isinstance(value, (bool, int, float)):
        yield name, float(value)
    elif isinstance(value, list):
        for i, item in enumerate(value):
            yield from _leaves(f"{name}[{i}]", item)
    elif isinstance(value, dict):
        for key, item in value.items():
            yield from _leaves(f"{name}.{key}", item)


def job_observables(run_dir: str) -> frozenset | None:
    """The observable record keys of the run's job type (from ``config.json``), or ``None``."""
    from .jobtypes import JOB_TYPES

    try:
        with open(os.path.join(run_dir, "config.json")) as fh:
            kind = json.load(fh)["config"]["job"]["type"]
    except (OSError, ValueError, KeyError, TypeError):
        return None
    return frozenset(JOB_TYPES[kind].observables) if kind in JOB_TYPES else None


def observable_series(records: list[dict], observables=None) -> dict[str, tuple[list[int], list[float]]]:
    """Per observable (in order of first appearance): record indices and values.  Only the keys
    in ``observables`` count, if given; else every key not in :data:`BOOKKEEPING`."""
    series: dict[str, tuple[list[int], list[float]]] = {}
    for i, rec in enumerate(records):
        for key, value in rec.items():
            if key in BOOKKEEPING if observables is None else key not in observables:
                continue
            for name, x in _leaves(key, value):
                idx, vals = series.setdefault(name, ([], []))
                idx.append(i)
                vals.append(x)
    return series


def _select(names: list[str], wanted: str | None, path: str) -> list[str]:
    if wanted is None:
        return names
    chosen: list[str] = []
    for req in (w.strip() for w in wanted.split(",")):
        if not req:
            continue
        hits = [n for n in names if n == req or n.startswith(req + "[") or n.startswith(req + ".")]
        if not hits:
            raise ConfigError(f"{path}: unknown observable {req!r}; the records hold "
                              f"{', '.join(names) if names else 'no observables'}")
        chosen += [n for n in hits if n not in chosen]
    if not chosen:
        raise ConfigError(f"--observables {wanted!r} names no observable")
    return chosen


def analyze_run(run_dir: str, observables: str | None = None, skip: int = 0, S: float = 1.5,
                log=None) -> dict:
    """The analysis of ``run_dir`` as the JSON-ready dictionary described in the module docstring."""
    if skip < 0:
        raise ConfigError(f"--skip {skip} must be >= 0")
    if not (S > 0 and math.isfinite(S)):
        raise ConfigError(f"--S {S} must be positive (Wolff recommends 1 <= S <= 2)")
    path, records = read_records(run_dir)
    total = len(records)
    order = [i for i, r in enumerate(records) if not _is_thermalization(r)]
    dropped = total - len(order)
    order = order[skip:]  # indices into records of the analysed ones
    series = observable_series([records[i] for i in order], job_observables(run_dir))
    names = _select(list(series), observables, path)
    if log is not None:
        log.info("%s: %d records%s, %d skipped, %d observables", path, total,
                 f" ({dropped} flagged as thermalization)" if dropped else "", min(skip, total - dropped),
                 len(names))
    short = {n: len(series[n][1]) for n in names if len(series[n][1]) < MIN_LENGTH}
    if short and (observables is not None or len(short) == len(names)):
        name, count = next(iter(short.items()))
        raise ConfigError(f"{path}: observable {name!r} has {count} measurements after "
                          f"--skip {skip}; the Gamma method needs at least {MIN_LENGTH}")
    if short and log is not None:  # sparse ones (measured every k-th record) in the default list
        log.warning("%s: skipping observables with fewer than %d measurements: %s", path,
                    MIN_LENGTH, ", ".join(f"{n} ({c})" for n, c in short.items()))
    out = {}
    for name in names:
        if name in short:
            continue
        idx, vals = series[name]
        x = np.asarray(vals, dtype=np.float64)
        bad = np.flatnonzero(~np.isfinite(x))
        if len(bad):
            raise ConfigError(f"{path}: observable {name!r} is {x[bad[0]]} in record "
                              f"{order[idx[bad[0]]] + 1} (counting from 1)")
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            try:
                g = gamma_method(x, S)
            except ValueError as exc:
                raise ConfigError(f"{path}: observable {name!r}: {exc}")
        entry = {"mean": g.value, "error": g.error, "error_of_error": g.error_of_error,
                 "tau_int": g.tau_int, "dtau_int": g.dtau_int, "window": g.window,
                 "jackknife_error": binned_error(x), "n": g.n}
        notes = [str(w.message).replace("the series", name, 1) for w in caught]
        if notes:
            entry["warnings"] = notes
            if log is not None:
                for note in notes:
                    log.warning("%s", note)
        out[name] = entry
    result = {"run_dir": os.path.abspath(run_dir), "records": total, "skip": skip, "S": S,
              "observables": out}
    if short:
        result["skipped"] = short
    return result


def format_table(result: dict) -> str:
    """The analysis as a text table, one observable per line."""
    head = ["observable", "mean", "error", "tau_int +- dtau", "W", "jackknife", "N"]
    rows = [head]
    for name, e in result["observables"].items():
        rows.append([name, f"{e['mean']:.10g}", f"{e['error']:.4g}",
                     f"{e['tau_int']:.3g} +- {e['dtau_int']:.2g}", str(e["window"]),
                     f"{e['jackknife_error']:.4g}", str(e["n"])])
    widths = [max(len(r[k]) for r in rows) for k in range(len(head))]
    lines = ["  ".join(c.ljust(w) if k == 0 else c.rjust(w) for k, (c, w) in enumerate(zip(r, widths)))
             for r in rows]
    lines.insert(1, "-" * len(lines[0]))
    return "\n".join(lines)


def analyze(args, comm) -> dict | None:
    """``lattice-hpc analyze``: returns the JSON result (``--json``) or prints the table on rank 0."""
    log = get_logger(comm)
    result = analyze_run(args.run_dir, args.observables, args.skip, args.S, log)
    if args.json:
        return result
    if comm.rank == 0:
        print(f"# {result['run_dir']}: {result['records']} records, skip {result['skip']}, "
              f"S = {result['S']}; tau_int in units of the measurement spacing")
        print(format_table(result))
        sys.stdout.flush()
    return None
