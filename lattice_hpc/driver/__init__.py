"""The driver: job files, run directories and job types, called by ``lattice-hpc run``.

- :mod:`.runner`     -- the order of a start: validate, lock, resume or start, record, run.
- :mod:`.jobtype`    -- what a job type declares and implements; the measurement :class:`Schedule`.
- :mod:`.jobtypes`   -- the registry of job types by ``job.type``.
- :mod:`.quenched`   -- job type ``quenched``: heatbath + overrelaxation for U(1) and SU(N).
- :mod:`.hmc`        -- job type ``hmc``: HMC, pure gauge or two flavours of Wilson(-clover) fermions.
- :mod:`.chain`      -- the step loop every job type runs in: records, checkpoints, stops, summary.
- :mod:`.config`     -- the common job-file schema, ``--set key=value`` overrides, validation.
- :mod:`.startfield` -- ``update.start``: cold, hot, near identity, or a gauge file / checkpoint.
- :mod:`.rundir`     -- the run directory: resolved configuration, records, summary.
- :mod:`.lock`       -- the run-directory lock (one job at a time, stale-lock rule).
- :mod:`.stopping`   -- clean stops on signals, the wall-clock budget and a lost lock.
- :mod:`.files`, :mod:`.analyze` -- ``lattice-hpc measure``/``convert`` and ``analyze``.
"""

from .runner import run_job

__all__ = ["run_job"]
