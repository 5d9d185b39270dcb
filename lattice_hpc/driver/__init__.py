"""The driver: job files, run directories and job types, called by ``lattice-hpc run``.

- :mod:`.config`   -- the job-file schema, ``--set key=value`` overrides, validation.
- :mod:`.rundir`   -- the run directory: resolved configuration, per-sweep records, summary.
- :mod:`.quenched` -- job type ``quenched``: heatbath + overrelaxation for U(1) and SU(N).
- :mod:`.hmc`      -- job type ``hmc``: HMC, pure gauge or two flavours of Wilson(-clover) fermions.
- :mod:`.runner`   -- dispatch from a job file to its job type.
"""

from .runner import run_job

__all__ = ["run_job"]
