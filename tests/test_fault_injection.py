"""Kill a job at random moments, many times, and check that the finished run is the uninterrupted
one: records (every key but the timings) and the final field, bit for bit, for both job types
(2D U(1) heatbath, 2D U(1) HMC with a Wilson-flow schedule) on one rank and on two.

Each segment is ended by ``kill -9``, at one of these moments, drawn at random (seeded, so a
failure can be replayed):

- during a step (``LATTICE_HPC_FAULT=kill:step:K``: after the update, before its record);
- during a checkpoint write (``kill:checkpoint-write:K``: the field data are in the temporary file);
- during a record append (``kill:record-append:K``: half the line is in ``records.jsonl``);
- at a random time from outside (SIGKILL to the whole process group, mpirun included), which
  lands wherever the job is: start-up, reading the checkpoint, a step, an I/O operation.

Every kill leaves the run-directory lock of a dead process behind, which the next segment takes
over (same host, process gone).  After at least 20 kills the job runs to its end undisturbed.
"""

import json
import os
import random
import signal
import subprocess
import sys
import time

import numpy as np
import pytest

from helpers import U1_QUENCHED_JOB, final_field, run_cli, run_records as records

# 2D U(1) heatbath, 8 x 8 (tests/helpers.py), with frequent checkpoints
QUENCHED = U1_QUENCHED_JOB.replace("{log}", "100") + "[checkpoint]\nevery = 10\nkeep = 2\n"

HMC_U1 = """
[job]
type = "hmc"
name = "fi"
[lattice]
dims = [8, 8]
[action]
group = "U1"
beta = 2.0
[update]
start = "hot"
thermalize = 2
measure = {measure}
seed = 31
[hmc]
steps = [4]
[measure]
flow_every = 3
flow_epsilon = 0.05
flow_tmax = 0.2
[checkpoint]
every = 10
keep = 2
[output]
dir = "{dir}"
log_every = 100
"""

POINTS = ("step", "checkpoint-write", "record-append", "external")


def _count(path):
    try:
        with open(path, "rb") as fh:
            return fh.read().count(b"\n")
    except FileNotFoundError:
        return 0


def killed_segment(job, run_dir, np_, point, rng):
    """Run one segment and kill it at ``point``; True if it was killed (not run to its end).

    An external kill comes either at a random time after the start (mostly start-up and resume)
    or a random fraction of a second after the segment's first new record (the step loop)."""
    cmd = [sys.executable, "-m", "lattice_hpc.cli", "run", job]
    if np_:
        cmd = ["mpirun", "-n", str(np_)] + cmd
    env = dict(os.environ, OMP_NUM_THREADS="1")
    if point != "external":
        k = rng.randint(1, 4) if point == "checkpoint-write" else rng.randint(1, 20)
        env["LATTICE_HPC_FAULT"] = f"kill:{point}:{k}"
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env,
                            start_new_session=True)
    if point == "external":
        records = os.path.join(run_dir, "records.jsonl")
        if rng.random() < 0.3:
            delay = rng.uniform(0.2, 1.5)
        else:
            before, deadline = _count(records), time.time() + 60
            while proc.poll() is None and _count(records) <= before and time.time() < deadline:
                time.sleep(0.005)
            delay = rng.uniform(0.0, 0.15)
        try:
            proc.wait(timeout=delay)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
    out, err = proc.communicate(timeout=300)
    if proc.returncode == 0:
        return False
    assert b"Traceback" not in err, err.decode()[-3000:]
    return True


@pytest.mark.parametrize("np_,template,measure,seed",
                         [(None, QUENCHED, 1500, 1), (2, QUENCHED, 1500, 3),
                          (None, HMC_U1, 1200, 4), (2, HMC_U1, 1200, 2)],
                         ids=["quenched-1rank", "quenched-2ranks", "hmc-1rank", "hmc-2ranks"])
def test_twenty_random_kills_leave_the_uninterrupted_run(tmp_path, np_, template, measure, seed):
    ref_job = tmp_path / "ref.toml"
    ref_job.write_text(template.format(measure=measure, dir=(tmp_path / "ref").as_posix()))
    ref = run_cli(["run", str(ref_job)], np=np_)
    assert ref.returncode == 0, ref.stderr[-2000:]
    job = tmp_path / "job.toml"
    job.write_text(template.format(measure=measure, dir=(tmp_path / "run").as_posix()))
    rng = random.Random(seed)
    kills = {p: 0 for p in POINTS}
    segments = 0
    while sum(kills.values()) < 20:
        point = rng.choice(POINTS)
        segments += 1
        if not killed_segment(str(job), str(tmp_path / "run"), np_, point, rng):
            pytest.fail(f"the run ended after {kills} kills: make the job longer")
        kills[point] += 1
    assert all(kills[p] > 0 for p in POINTS), kills
    final = run_cli(["run", str(job)], np=np_)
    assert final.returncode == 0, final.stderr[-2000:]
    assert json.loads(final.stdout)["complete"]
    run_dir, ref_dir = str(tmp_path / "run"), str(tmp_path / "ref")
    assert records(run_dir) == records(ref_dir)
    links, state = final_field(run_dir)
    ref_links, ref_state = final_field(ref_dir)
    assert np.array_equal(links, ref_links) and state == ref_state
    assert not os.path.exists(os.path.join(run_dir, "lock"))
    leftovers = [n for n in os.listdir(os.path.join(run_dir, "checkpoints")) if n.startswith(".")]
    assert not leftovers, leftovers
    print(f"kills: {kills} in {segments} segments")
