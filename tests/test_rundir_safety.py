"""Run directories that cannot be corrupted, end to end through ``lattice-hpc run`` (serial and
under ``mpirun -n 2``):

- a second job on a run directory that a running job holds is refused before it touches a file;
  a lock left by ``kill -9`` is taken over; ``--force-unlock`` takes over a foreign lock;
- a checkpoint that cannot be read (an I/O error on every rank or on one) stops the job with
  status 2 and leaves the checkpoints, records and configuration as they were;
- ``pion_every`` / ``flow_every`` keyed to the global measurement: a chain cut into segments
  shorter than the interval writes the records of the uninterrupted chain, bit for bit;
- NaN and infinite floats are refused naming the key; a failure found after the lock is taken
  (a corrupt start file) leaves no ``config.json``; a job file that is a directory or not UTF-8
  text gets a message; a solver that fails inside a trajectory names the trajectory;
- ``update.start = PATH`` continues from exactly the field in the file (NERSC, a checkpoint),
  recorded with its SHA-256 and field checksum;
- chain keys and observables belong to the job type.
"""

import hashlib
import json
import os
import signal
import subprocess
import sys
import time

import numpy as np
import pytest

from helpers import SU3_QUENCHED_JOB, final_field as _final, run_cli, run_records as records, untimed


def final_field(run_dir):
    return _final(run_dir)[0]


DATA = os.path.join(os.path.dirname(__file__), "data")

QUENCHED = SU3_QUENCHED_JOB

HMC = """
[job]
type = "hmc"
name = "h"
[lattice]
dims = [4, 4, 4, 4]
[action]
group = "SU3"
beta = 5.5
[update]
start = "{start}"
thermalize = 1
measure = {measure}
seed = 13
[hmc]
steps = [3]
[fermions]
kappa = 0.1
[measure]
pion_every = 2
flow_every = 3
flow_epsilon = 0.05
flow_tmax = 0.15
[checkpoint]
every = 2
[output]
dir = "{dir}"
"""


def write_job(tmp_path, name, template=QUENCHED, **kw):
    vals = {"start": "hot", "measure": 6, "heatbath": 1, "overrelax": 1,
            "dir": (tmp_path / name).as_posix(), **kw}
    path = tmp_path / f"{name}.toml"
    path.write_text(template.format(**vals))
    return str(path)


def run(job, *sets, np=None, env=None, ok=True, extra=()):
    args = ["run", job, *extra]
    for s in sets:
        args += ["--set", s]
    proc = run_cli(args, np=np, env=env)
    if ok:
        assert proc.returncode == 0, proc.stderr[-3000:]
    return proc


def launch(job, *sets, np=None):
    """Start ``lattice-hpc run JOB`` in the background (its own process group, so that a kill
    reaches mpirun and every rank)."""
    cmd = [sys.executable, "-m", "lattice_hpc.cli", "run", job]
    for item in sets:
        cmd += ["--set", item]
    if np:
        cmd = ["mpirun", "-n", str(np)] + cmd
    return subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            env=dict(os.environ, OMP_NUM_THREADS="1"), start_new_session=True)


def snapshot(run_dir):
    """Every file of a run directory (names and bytes)."""
    out = {}
    for root, _dirs, files in os.walk(run_dir):
        for f in files:
            p = os.path.join(root, f)
            out[os.path.relpath(p, run_dir)] = open(p, "rb").read()
    return out


# -- the lock ---------------------------------------------------------------------------------
@pytest.mark.parametrize("np_", [None, 2])
def test_a_second_job_on_a_held_run_directory_is_refused_and_touches_nothing(tmp_path, np_):
    job = write_job(tmp_path, "a", measure=100000)
    run_dir = tmp_path / "a"
    first = subprocess.Popen([sys.executable, "-m", "lattice_hpc.cli", "run", job, "--set",
                              "checkpoint.every=0"], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                             text=True, env=dict(os.environ, OMP_NUM_THREADS="1"))
    try:
        deadline = time.time() + 120
        while time.time() < deadline and not (run_dir / "records.jsonl").exists():
            time.sleep(0.05)
        lock = json.loads((run_dir / "lock").read_text())
        assert lock["pid"] == first.pid
        second = run(job, np=np_, ok=False)
        assert second.returncode == 2
        assert "locked by another job" in second.stderr and f"pid {first.pid}" in second.stderr
        assert "--force-unlock" in second.stderr
        if np_:
            assert second.stderr.count("locked by another job") >= 2  # every rank says it
        assert json.loads((run_dir / "lock").read_text()) == lock
        history = (run_dir / "history.jsonl").read_text().splitlines()
        assert len(history) == 1  # the refused job logged no start
    finally:
        first.send_signal(signal.SIGTERM)
        out, err = first.communicate(timeout=120)
    assert first.returncode == 0, err[-2000:]
    summary = json.loads(out)
    assert summary["complete"] is False
    assert [r["step"] for r in records(str(run_dir))] == list(range(summary["steps"]))
    assert not (run_dir / "lock").exists()  # released at the end


@pytest.mark.parametrize("np_", [None, 2])
def test_a_lock_left_by_kill_9_is_taken_over_and_force_unlock_takes_a_foreign_one(tmp_path, np_):
    job = write_job(tmp_path, "k", measure=100000)
    run_dir = tmp_path / "k"
    proc = launch(job, np=np_)
    deadline = time.time() + 120
    while time.time() < deadline and not (run_dir / "records.jsonl").exists():
        time.sleep(0.05)
    holder = json.loads((run_dir / "lock").read_text())["pid"]  # rank 0 of the job
    os.killpg(proc.pid, signal.SIGKILL)
    proc.communicate()
    assert json.loads((run_dir / "lock").read_text())["pid"] == holder
    again = run(job, "update.measure=3", np=np_)
    assert "taking over the lock" in again.stderr and str(holder) in again.stderr
    assert not (run_dir / "lock").exists()
    # a fresh lock of a job on another host: refused, then taken over with --force-unlock
    foreign = {"host": "elsewhere-n17", "pid": 1, "pid_start": None, "job_id": "999.pbs",
               "started": "2026-12-01T00:00:00", "token": "f" * 32}
    (run_dir / "lock").write_text(json.dumps(foreign))
    refused = run(job, "update.measure=4", np=np_, ok=False)
    assert refused.returncode == 2 and "elsewhere-n17" in refused.stderr and "999.pbs" in refused.stderr
    forced = run(job, "update.measure=4", np=np_, extra=["--force-unlock"])
    assert "elsewhere-n17" in forced.stderr
    assert json.loads(forced.stdout)["steps"] == 4
    assert not (run_dir / "lock").exists()


@pytest.mark.parametrize("np_", [None, 2])
def test_a_job_whose_lock_is_taken_over_stops_at_once_and_writes_nothing_more(tmp_path, np_):
    """Another job took the lock (``--force-unlock``) while this one ran: it stops before it
    writes its next record or checkpoint, and leaves the other job's lock alone."""
    job = write_job(tmp_path, "lost", measure=100000)
    run_dir = tmp_path / "lost"
    proc = launch(job, "checkpoint.every=1", np=np_)
    def has_checkpoint():
        ck = run_dir / "checkpoints"
        return ck.is_dir() and any(n.endswith(".h5") for n in os.listdir(ck))

    deadline = time.time() + 120
    while time.time() < deadline and not has_checkpoint():
        time.sleep(0.05)
    foreign = json.dumps({"host": "elsewhere-n17", "pid": 1, "token": "e" * 32})
    (run_dir / "lock.new").write_text(foreign)
    os.replace(run_dir / "lock.new", run_dir / "lock")  # what a take-over does, atomically
    n_records = len(records(str(run_dir)))
    n_ckpts = sorted(os.listdir(run_dir / "checkpoints"))
    out, err = proc.communicate(timeout=120)
    assert proc.returncode == 2 and "lock was taken over by another job" in err
    assert (run_dir / "lock").read_text() == foreign
    # at most the step that was past its check when the lock changed hands
    assert len(records(str(run_dir))) <= n_records + 1
    assert len(set(os.listdir(run_dir / "checkpoints")) - set(n_ckpts)) <= 1
    assert not (run_dir / "summary.json").exists()


# -- I/O errors are not corruption ------------------------------------------------------------
@pytest.mark.parametrize("np_,fault", [(None, "eio:checkpoint-read"), (2, "eio:checkpoint-read"),
                                       (2, "eacces:checkpoint-read@1")])
def test_an_unreadable_checkpoint_stops_the_job_and_leaves_the_run_intact(tmp_path, np_, fault):
    job = write_job(tmp_path, "u", measure=4)
    run_dir = str(tmp_path / "u")
    run(job, np=np_)
    before = snapshot(run_dir)
    proc = run(job, "update.measure=8", np=np_, env={"LATTICE_HPC_FAULT": fault}, ok=False)
    assert proc.returncode == 2, proc.stderr[-2000:]
    assert "could not be read" in proc.stderr and "ckpt_00000004.h5" in proc.stderr
    assert snapshot(run_dir) == before  # nothing renamed, discarded or rewritten
    out = json.loads(run(job, "update.measure=8", np=np_).stdout)  # the file system is back
    assert out["steps_this_segment"] == 4 and out["steps"] == 8


# -- measurement schedules keyed to the global trajectory --------------------------------------
@pytest.mark.parametrize("np_", [None, 2])
def test_pion_and_flow_schedules_survive_segments_shorter_than_their_interval(tmp_path, np_):
    whole = write_job(tmp_path, "whole", HMC, measure=7)
    run(whole, np=np_)
    ref = records(str(tmp_path / "whole"))
    assert [("pion" in r, "flow_t0" in r or "flow_Q_tmax" in r) for r in ref] == \
        [(m % 2 == 1, m % 3 == 2) for m in range(7)]
    parts = write_job(tmp_path, "parts", HMC, measure=7)
    segments = 0
    while True:  # a segment of one trajectory each: shorter than both intervals
        out = json.loads(run(parts, "job.max_seconds=1e-6", np=np_).stdout)
        segments += 1
        if out["complete"]:
            break
    assert segments == 8
    assert records(str(tmp_path / "parts")) == ref  # bit for bit, including pion and flow
    assert np.array_equal(final_field(str(tmp_path / "parts")), final_field(str(tmp_path / "whole")))


# -- validation before anything is written ----------------------------------------------------
@pytest.mark.parametrize("np_", [None, 2])
@pytest.mark.parametrize("override,key", [("action.beta=nan", "action.beta"),
                                          ("hmc.trajectory_length=inf", "hmc.trajectory_length"),
                                          ("fermions.kappa=-inf", "fermions.kappa")])
def test_nan_and_inf_are_refused_naming_the_key(tmp_path, np_, override, key):
    job = write_job(tmp_path, "n", HMC)
    proc = run(job, override, np=np_, ok=False)
    assert proc.returncode == 2
    assert f"{key} = " in proc.stderr and "must be a finite number" in proc.stderr
    assert not (tmp_path / "n").exists()


def test_nan_in_the_job_file_itself_is_refused(tmp_path):
    job = write_job(tmp_path, "n2")
    text = open(job).read().replace("beta = 5.7", "beta = nan")
    open(job, "w").write(text)
    proc = run(job, ok=False)
    assert proc.returncode == 2 and "action.beta = nan must be a finite number" in proc.stderr


@pytest.mark.parametrize("np_", [None, 2])
def test_a_failure_after_the_lock_leaves_no_config_and_the_corrected_job_runs(tmp_path, np_):
    good = open(os.path.join(DATA, "chroma_4x4x4x4.nersc"), "rb").read()
    bad = tmp_path / "bad.nersc"
    bad.write_bytes(good[:-5] + bytes([good[-5] ^ 1]) + good[-4:])  # checksum mismatch in the data
    job = write_job(tmp_path, "late", start=bad.as_posix(), measure=2)
    proc = run(job, np=np_, ok=False)
    assert proc.returncode == 2 and "checksum" in proc.stderr and "bad.nersc" in proc.stderr
    left = set(os.listdir(tmp_path / "late")) if (tmp_path / "late").exists() else set()
    assert left <= {"checkpoints"} and not any(os.scandir(tmp_path / "late" / "checkpoints")) \
        if left else True
    fixed = run(job, f"update.start={os.path.join(DATA, 'chroma_4x4x4x4.nersc')}", np=np_)
    assert json.loads(fixed.stdout)["complete"]


def test_precision_single_for_hmc_is_refused_before_anything_is_written(tmp_path):
    job = write_job(tmp_path, "s", HMC)
    proc = run(job, 'backend.precision="single"', ok=False)
    assert proc.returncode == 2 and "backend.precision" in proc.stderr
    assert not (tmp_path / "s").exists()


@pytest.mark.parametrize("kind", ["directory", "binary"])
def test_a_job_file_that_is_a_directory_or_not_text_gets_a_message(tmp_path, kind):
    path = tmp_path / "job.toml"
    if kind == "directory":
        path.mkdir()
    else:
        path.write_bytes(b"\xff\xfe\x00[job]\x80\x81")
    proc = run(str(path), ok=False)
    assert proc.returncode == 2 and "Traceback" not in proc.stderr
    assert "job.toml" in proc.stderr and ("directory" in proc.stderr or "UTF-8" in proc.stderr)


@pytest.mark.parametrize("np_", [None, 2])
def test_a_solver_failure_inside_a_trajectory_names_the_trajectory(tmp_path, np_):
    job = write_job(tmp_path, "solver", HMC, measure=2)
    proc = run(job, "fermions.flavours=2", "fermions.force_tol=1e-30", "measure.pion_every=0",
               "measure.flow_every=0", np=np_, ok=False)
    assert proc.returncode == 2 and "Traceback" not in proc.stderr
    assert "trajectory 0:" in proc.stderr and "The chain stops here" in proc.stderr
    assert not (tmp_path / "solver" / "lock").exists()


# -- starting from a file ---------------------------------------------------------------------
@pytest.mark.parametrize("np_", [None, 2])
def test_a_chain_started_from_a_file_continues_from_exactly_that_field(tmp_path, np_):
    from lattice_hpc.comm import self_comm
    from lattice_hpc.io import read_gauge

    src = os.path.join(DATA, "chroma_4x4x4x4.nersc")
    job = write_job(tmp_path, "f", start=src, measure=2, heatbath=0, overrelax=0)
    out = json.loads(run(job, np=np_).stdout)
    cfg = read_gauge(src, self_comm())
    expect = run_cli(["measure", src])
    assert out["plaquette"][0] == json.loads(expect.stdout)["plaquette"]
    stored = final_field(str(tmp_path / "f"))  # no update: the field is the file's, bit for bit
    links = cfg.field.lattice.view(cfg.field.links, 1, None, lead=1)
    assert np.array_equal(stored, links)
    meta = json.loads((tmp_path / "f" / "config.json").read_text())
    assert meta["start"]["sha256"] == hashlib.sha256(open(src, "rb").read()).hexdigest()
    assert meta["start"]["format"] == "nersc" and meta["start"]["field_checksum"].startswith("lhpc1 ")


@pytest.mark.parametrize("np_", [None, 2])
def test_hmc_started_from_another_runs_checkpoint_is_the_chain_of_that_field(tmp_path, np_):
    """Thermalize with the heatbath, continue with HMC: the first trajectory of the HMC job is the
    trajectory that an HMC set up in-process on the checkpoint's field computes."""
    from lattice_hpc.backend import Backend
    from lattice_hpc.comm import self_comm
    from lattice_hpc.driver.config import load_config
    from lattice_hpc.driver.hmc import HMCJob
    from lattice_hpc.geometry import Lattice
    from lattice_hpc.io import read_checkpoint
    from lattice_hpc.log import get_logger

    run(write_job(tmp_path, "therm", measure=2), np=np_)
    ckpt = str(tmp_path / "therm" / "checkpoints" / "ckpt_00000002.h5")
    job = write_job(tmp_path, "hmc", HMC, start=ckpt, measure=2)
    run(job, "measure.pion_every=0", "measure.flow_every=0", "update.thermalize=0", np=np_)
    got = records(str(tmp_path / "hmc"))
    cfg = load_config(job, ["measure.pion_every=0", "measure.flow_every=0", "update.thermalize=0"])
    lat = Lattice([4, 4, 4, 4], (1, 1, 1, 1), comm=self_comm())
    field = read_checkpoint(ckpt, lat).field
    field.refresh()
    ref = HMCJob(cfg, lat, Backend("numpy", "double"), get_logger(self_comm()))
    ref.start(field)
    first = untimed(json.loads(json.dumps(ref.step(0, 0))))
    if np_ is None:
        assert got[0] == first  # bit for bit
    else:  # the same trajectory, up to the rounding of the reductions
        assert got[0]["accepted"] == first["accepted"] and abs(got[0]["dH"] - first["dH"]) < 1e-9
        assert abs(got[0]["plaquette"] - first["plaquette"]) < 1e-12
    meta = json.loads((tmp_path / "hmc" / "config.json").read_text())
    assert meta["start"]["format"] == "hdf5" and meta["start"]["path"] == os.path.abspath(ckpt)


@pytest.mark.parametrize("np_", [None, 2])
def test_a_start_file_of_another_lattice_is_refused_before_anything_is_written(tmp_path, np_):
    src = os.path.join(DATA, "pyquda_4x4x4x8_weak.lime")
    job = write_job(tmp_path, "wrong", start=src)
    proc = run(job, np=np_, ok=False)
    assert proc.returncode == 2 and "update.start" in proc.stderr and "4,4,4,8" in proc.stderr
    assert not (tmp_path / "wrong").exists()


# -- each job type owns its chain keys and observables -----------------------------------------
@pytest.mark.parametrize("np_", [None, 2])
def test_job_types_own_their_keys_and_observables(tmp_path, np_):
    job = write_job(tmp_path, "own", HMC, measure=10)
    run(job, "measure.pion_every=0", "measure.flow_every=0", np=np_)
    # a key of another job type is refused, naming the job type it belongs to
    proc = run(job, "update.heatbath=3", np=np_, ok=False)
    assert proc.returncode == 2 and "update.heatbath does not apply to job type 'hmc'" in proc.stderr
    # an old run directory whose config.json holds the quenched keys still resumes
    path = tmp_path / "own" / "config.json"
    meta = json.loads(path.read_text())
    meta["config"]["update"].update(heatbath=7, overrelax=9)
    path.write_text(json.dumps(meta))
    out = json.loads(run(job, "measure.pion_every=0", "measure.flow_every=0",
                         "update.measure=11", np=np_).stdout)
    assert out["trajectories"] == 12
    # analyze lists physics, not bookkeeping
    res = json.loads(run_cli(["analyze", str(tmp_path / "own"), "--json"]).stdout)
    names = set(res["observables"]) | set(res.get("skipped", {}))
    assert {"plaquette", "dH", "accepted"} <= names
    assert not any(n.startswith(("seconds", "monomials", "dH_parts", "nonfinite", "trajectory"))
                   for n in names), names


@pytest.mark.parametrize("np_", [None, 2])
def test_a_resumed_run_does_not_need_its_start_file_any_more(tmp_path, np_):
    src = tmp_path / "start.nersc"
    src.write_bytes(open(os.path.join(DATA, "chroma_4x4x4x4.nersc"), "rb").read())
    job = write_job(tmp_path, "gone", start=src.as_posix(), measure=2)
    run(job, np=np_)
    src.unlink()
    out = json.loads(run(job, "update.measure=4", np=np_).stdout)
    assert out["steps"] == 4 and out["steps_this_segment"] == 2
    history = [json.loads(h) for h in (tmp_path / "gone" / "history.jsonl").read_text().splitlines()]
    assert history[1]["start"] == history[0]["start"]  # the provenance is carried over
