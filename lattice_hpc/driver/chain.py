"""The step loop that every job type runs in, and the summary of its records.

:func:`run_chain` does, for steps ``first .. total-1`` of a chain (numbered globally, so a
resumed segment continues the uninterrupted chain):

1. ``rec = job.step(n, m)`` with ``m`` the global measurement index of step ``n``
   (:class:`.jobtype.Schedule`); a solver that fails inside it, or a flow whose loss, gradient
   or log-weight is not finite, stops the chain with a :class:`~lattice_hpc.errors.ChainError`
   naming the step (the last checkpoint stays valid);
2. the collective stop check, after the step and before anything of it is written
   (SIGTERM/SIGUSR1, ``job.max_seconds``, a run-directory lock taken over by another job): a
   lost lock stops at once, writing nothing more; a clean stop ends the segment after 4.;
3. the record of a measured step is appended to ``records.jsonl``;
4. a checkpoint every ``checkpoint.every`` steps, at the end, and at a clean stop (field,
   ``job.state()``, ``job.arrays()``, step, record count).

Records appended after the newest checkpoint are set aside on resume and recomputed
(:mod:`.rundir`), so the records of a run cut into any number of segments, by clean stops or by
``kill -9`` at any moment, are those of the uninterrupted run.
"""

from __future__ import annotations

import time

from .. import faults
from ..analysis import mean_and_error
from ..errors import ChainError, FlowError
from ..solvers import SolverError
from .jobtype import Schedule


def run_chain(job, sched: Schedule, first: int, rundir, ckpt, stopper, log) -> dict:
    """Collective: run steps ``first .. sched.total - 1``; returns the summary of the whole run."""
    unit, units = job.unit
    total = sched.total
    log_every = job.cfg["output"]["log_every"]
    t0 = time.perf_counter()
    step, saved = first, None
    while step < total:
        m = sched.measurement(step)
        try:
            rec = job.step(step, m)
        except (SolverError, FlowError) as exc:
            last = saved or (ckpt.resumed.path if ckpt.resumed else None)
            raise ChainError(f"{unit} {step}: {exc}. The chain stops here; "
                             f"{'the last checkpoint ' + last + ' is intact' if last else 'no checkpoint was written yet'}"
                             + ("" if isinstance(exc, FlowError) else
                                " (a solver failure usually means kappa is beyond its critical "
                                "value, or the solver tolerance or iteration limit is too strict)")
                             ) from exc
        faults.point("step")
        now = faults.clock(time.perf_counter() - t0, step + 1 - first)
        # collective, before anything of this step is written: a lost lock raises here
        reason = stopper.check(now, now / (step + 1 - first))
        if m is not None:
            rundir.record(rec)
        step += 1
        if step % log_every == 0 or step == total:
            per = now / (step - first)
            log.info("%s %d/%d%s %s  %.3f s/%s  ETA %s", unit, step, total,
                     f" ({job.phase(step - 1)})" if step <= sched.thermalize else "",
                     job.progress(step - 1, rec), per, unit,
                     hms(job.remaining_seconds(step, total, per)))
        if ckpt.due(step) or step == total:
            saved = ckpt.save(step, job.field, {**job.state(), "records": rundir.count}, job.arrays())
        if reason and step < total:
            if saved is None or not saved.endswith(f"{step:08d}.h5"):
                saved = ckpt.save(step, job.field, {**job.state(), "records": rundir.count},
                                  job.arrays())
            log.warning("stopping at %s %d/%d (%s); run the same command again to continue",
                        unit, step, total, reason)
            break
    if step == first:
        log.info("the run is already complete (%d %s); reporting its summary", total, units)
    records = rundir.read_records()
    seconds = time.perf_counter() - t0
    summary = summarise(records, job.observables)
    summary.update(job.summary(records))
    summary.update({units: step, f"{units}_target": total, "complete": step >= total,
                    "measurements": len(records), f"{units}_this_segment": step - first,
                    "seconds": round(seconds, 3),
                    f"seconds_per_{unit}": round(seconds / max(step - first, 1), 5),
                    "checkpoint": saved or (ckpt.resumed.path if ckpt.resumed else None)})
    return summary


def summarise(records, observables) -> dict:
    """``[mean, error]`` (binned jackknife) of each observable of the records (``accepted`` as
    ``acceptance``), per component for lists (``pion`` -> ``pion[0]``, ...); a series of one
    measurement gets ``[value, null]``."""
    wanted = set(observables)
    series: dict[str, list] = {}
    for rec in records:
        for k, v in rec.items():
            if k not in wanted:
                continue
            if k == "accepted":
                series.setdefault("acceptance", []).append(float(v))
            elif isinstance(v, (int, float)) and not isinstance(v, bool):
                series.setdefault(k, []).append(float(v))
            elif isinstance(v, list) and all(isinstance(x, (int, float)) for x in v):
                for i, x in enumerate(v):
                    series.setdefault(f"{k}[{i}]", []).append(float(x))
    return {k: mean_and_error(v) if len(v) >= 2 else [v[0], None] for k, v in series.items()}


def hms(seconds: float) -> str:
    s = int(round(seconds))
    return f"{s // 3600}h{s % 3600 // 60:02d}m{s % 60:02d}s" if s >= 3600 else f"{s // 60}m{s % 60:02d}s"
