"""The end of a chain of batch segments (called by the batch script after each segment).

    python -m lattice_hpc.batch.chain after RUN_DIR RC

When the run is complete (its ``summary.json`` says so), the segments still queued, listed in
``RUN_DIR/batch/jobs.json`` by :mod:`.submit`, are cancelled (``qdel`` / ``scancel``), the last
first (cancelling a segment releases the one that depends on it).  A segment that stopped for any
other reason leaves the chain alone: stopped by its time budget or killed, the next one resumes
from the last checkpoint; failed (status 2 also means a file system that did not answer or a run
directory locked by another job: a passing condition), the next one tries again.  Bad input is
refused by ``lattice-hpc submit`` before anything is queued.  Always exits 0; what it did goes to
stderr.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys

CANCEL = {"pbs": "qdel", "slurm": "scancel"}
JOB_ID = ("PBS_JOBID", "SLURM_JOB_ID")


def is_complete(run_dir: str) -> bool:
    """Whether the latest segment's ``summary.json`` says the run is complete."""
    try:
        with open(os.path.join(run_dir, "summary.json")) as fh:
            return bool(json.load(fh).get("complete"))
    except (OSError, ValueError):
        return False


def jobs_file(run_dir: str) -> str:
    return os.path.join(run_dir, "batch", "jobs.json")


def _base(job_id: str) -> str:
    return str(job_id).split(".")[0]  # PBS ids carry the server: 123.pbs01


def earlier_segment(run_dir: str, holder, me) -> bool:
    """Whether batch job ``holder`` is a segment of this run's chain (``RUN_DIR/batch/jobs.json``)
    submitted before job ``me``: the scheduler started ``me`` only after ``holder`` ended
    (``afterany``), so a lock ``holder`` left behind, killed at its wall-clock limit, is stale."""
    if not holder or not me:
        return False
    try:
        with open(jobs_file(run_dir)) as fh:
            ids = [_base(j) for j in json.load(fh).get("jobs", [])]
    except (OSError, ValueError, AttributeError):
        return False
    h, m = _base(holder), _base(me)
    return h in ids and m in ids and ids.index(h) < ids.index(m)


def after(run_dir: str, rc: int) -> list[str]:
    """Cancel the queued segments if the run is complete, whatever the segment's status ``rc``;
    returns the job ids cancelled."""
    if not is_complete(run_dir):
        return []
    try:
        with open(jobs_file(run_dir)) as fh:
            info = json.load(fh)
    except (OSError, ValueError):
        return []
    me = {os.environ.get(v, "") for v in JOB_ID} - {""}
    rest = [j for j in info.get("jobs", []) if j not in me and j.split(".")[0] not in
            {m.split(".")[0] for m in me}]
    cmd = CANCEL.get(info.get("scheduler", ""))
    if not rest or cmd is None:
        return []
    sys.stderr.write(f"lattice-hpc: the run is complete: cancelling the queued segments "
                     f"{' '.join(rest)}\n")
    for j in reversed(rest):  # the last first; one at a time: an ended one fails only its own call
        subprocess.run([cmd, j], check=False)
    return rest


def main(argv=None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if len(argv) != 3 or argv[0] != "after":
        sys.stderr.write("usage: python -m lattice_hpc.batch.chain after RUN_DIR RC\n")
        return 2
    after(argv[1], int(argv[2]) if argv[2].lstrip("-").isdigit() else 1)
    return 0


if __name__ == "__main__":
    sys.exit(main())
