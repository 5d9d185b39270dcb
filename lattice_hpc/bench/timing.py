"""Timing helpers for benchmarks (not for tests: tests never time anything)."""

from __future__ import annotations

import statistics

from ..comm import wtime


def time_pairs(fns: dict, comm, min_seconds: float = 1.0, max_reps: int = 200, min_reps: int = 5):
    """Median seconds per call of each function in ``fns``, interleaved so noise hits all alike.

    Collective: every rank runs the same calls; each call is bracketed by barriers, and the time of
    a call is the maximum over ranks.  Stops after ``min_seconds`` of timed calls or ``max_reps``
    rounds.  The stopping test uses only the reduced times, which every rank holds alike: a test on
    each rank's own clock could let one rank start another round that the others never join.
    A value of ``fns`` may be a pair ``(setup, fn)``: ``setup`` runs untimed before each call.
    """
    fns = {k: (v if isinstance(v, tuple) else (None, v)) for k, v in fns.items()}
    times = {k: [] for k in fns}
    for setup, fn in fns.values():  # warm-up (plans, datatypes, caches)
        if setup:
            setup()
        fn()
    reps = 0
    while reps < min_reps or (reps < max_reps and sum(map(sum, times.values())) < min_seconds):
        for k, (setup, fn) in fns.items():
            if setup:
                setup()
            comm.barrier()
            t0 = wtime()
            fn()
            dt = wtime() - t0
            times[k].append(comm.allreduce(dt, op="max"))
        reps += 1
    return {k: statistics.median(v) for k, v in times.items()}, reps
