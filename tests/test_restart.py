"""Exact restart of ``lattice-hpc run`` end to end (subprocesses, serial and under mpirun).

- ten steps uninterrupted == five steps, a stop, five resumed steps: bitwise on the same grid, to
  1e-12 in the plaquette when resuming 1 -> 2 and 2 -> 4 ranks;
- a job killed (SIGKILL) while writing a checkpoint resumes from the previous one and ends with
  the uninterrupted final field; records are appended, never lost;
- changed chain parameters and foreign checkpoints are refused with messages that name them.
"""

import json
import os
import shutil
import subprocess
import sys

import numpy as np
import pytest

JOB = """
[job]
name = "r"
[lattice]
dims = [4, 4, 4, 4]
[action]
beta = 5.7
[update]
start = "hot"
thermalize = 0
measure = {measure}
overrelax = 2
seed = 7
[checkpoint]
every = 2
keep = 2
[output]
dir = "{dir}"
"""


def _cli(args, np_=None, env=None, timeout=240):
    cmd = [sys.executable, "-m", "lattice_hpc.cli"] + args
    if np_:
        cmd = ["mpirun", "-n", str(np_)] + cmd
    e = dict(os.environ, OMP_NUM_THREADS="1")
    e.update(env or {})
    return subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, env=e)


def _job(tmp_path, name, measure=10):
    path = tmp_path / f"{name}.toml"
    path.write_text(JOB.format(measure=measure, dir=(tmp_path / name).as_posix()))
    return str(path)


def _run(job, *sets, np_=None, env=None, ok=True):
    args = ["run", job]
    for s in sets:
        args += ["--set", s]
    proc = _cli(args, np_, env)
    if ok:
        assert proc.returncode == 0, proc.stderr[-3000:]
    return proc


def _final_links(run_dir, step=10):
    import h5py

    with h5py.File(os.path.join(run_dir, "checkpoints", f"ckpt_{step:08d}.h5"), "r") as f:
        return f["gauge/links"][...], json.loads(f["chain"].attrs["state"])


def _assert_same_records(a, b, exact=True):
    """Same steps and observables: bitwise (same grid) or to 1e-12 (reduction order differs)."""
    assert [r["step"] for r in a] == [r["step"] for r in b]
    for r, q in zip(a, b):
        assert r.keys() == q.keys()
        for k in r:
            assert (r[k] == q[k]) if exact else abs(r[k] - q[k]) < 1e-12, (k, r[k], q[k])


def _records(run_dir):
    with open(os.path.join(run_dir, "records.jsonl")) as fh:
        recs = [json.loads(ln) for ln in fh if ln.strip()]
    for r in recs:
        r.pop("seconds")
    return recs


@pytest.fixture(scope="module")
def uninterrupted(tmp_path_factory):
    """Ten steps in one go on one rank (the reference chain)."""
    tmp = tmp_path_factory.mktemp("ref")
    job = _job(tmp, "ref")
    out = json.loads(_run(job).stdout)
    assert out["complete"] and out["steps"] == 10 and out["measurements"] == 10
    return str(tmp / "ref"), out


def test_five_stop_five_is_bitwise_the_uninterrupted_chain(tmp_path, uninterrupted):
    ref_dir, ref_out = uninterrupted
    job = _job(tmp_path, "a")
    first = json.loads(_run(job, "update.measure=5").stdout)
    assert first["steps"] == 5 and first["complete"]
    second = json.loads(_run(job).stdout)  # measure = 10: continues the same chain
    assert second["steps"] == 10 and second["steps_this_segment"] == 5
    links, state = _final_links(str(tmp_path / "a"))
    ref_links, ref_state = _final_links(ref_dir)
    assert np.array_equal(links, ref_links) and state == ref_state
    assert _records(str(tmp_path / "a")) == _records(ref_dir)  # appended, not overwritten
    assert second["plaquette"] == ref_out["plaquette"]
    history = (tmp_path / "a" / "history.jsonl").read_text().splitlines()
    assert [json.loads(h)["step"] for h in history] == [0, 5]
    # running the finished job again changes nothing and reports the same summary
    again = json.loads(_run(job).stdout)
    assert again["plaquette"] == ref_out["plaquette"] and again["steps_this_segment"] == 0


def test_resume_on_more_ranks_continues_the_chain(tmp_path, uninterrupted):
    ref_dir, _ = uninterrupted
    ref = _records(ref_dir)
    for a, b in [(1, 2), (2, 4)]:
        job = _job(tmp_path, f"g{a}{b}")
        _run(job, "update.measure=5", np_=a if a > 1 else None)
        out = json.loads(_run(job, np_=b).stdout)
        assert out["steps"] == 10
        recs = _records(str(tmp_path / f"g{a}{b}"))
        assert [r["step"] for r in recs] == list(range(10))
        for r, q in zip(recs, ref):
            assert abs(r["plaquette"] - q["plaquette"]) < 1e-12
        history = [json.loads(h) for h in (tmp_path / f"g{a}{b}" / "history.jsonl").read_text().splitlines()]
        assert [h["mpi_size"] for h in history] == [a, b]


@pytest.mark.parametrize("ranks", [None, 2])
def test_sigkill_during_checkpoint_write_resumes_from_the_previous_one(tmp_path, uninterrupted, ranks):
    ref_dir, _ = uninterrupted
    job = _job(tmp_path, "k")
    run_dir = str(tmp_path / "k")
    # the third checkpoint write (after step 6) is killed half way, after the field data went out
    killed = _run(job, np_=ranks, env={"LATTICE_HPC_FAULT": "checkpoint-write:3"}, ok=False)
    assert killed.returncode != 0
    names = sorted(os.listdir(os.path.join(run_dir, "checkpoints")))
    assert names[1:] == ["ckpt_00000002.h5", "ckpt_00000004.h5"]
    assert len(names) == 3 and names[0].startswith(".ckpt_00000006.h5.partial-")
    assert len(_records(run_dir)) == 6  # steps 0..5 were recorded before the kill
    out = json.loads(_run(job, np_=ranks).stdout)
    assert out["steps"] == 10 and out["steps_this_segment"] == 6
    links, state = _final_links(run_dir)
    ref_links, ref_state = _final_links(ref_dir)
    assert np.array_equal(links, ref_links) and state == ref_state
    _assert_same_records(_records(run_dir), _records(ref_dir), exact=ranks is None)
    discarded = (tmp_path / "k" / "records.discarded.jsonl").read_text().splitlines()
    assert [json.loads(d)["step"] for d in discarded] == [4, 5]  # moved aside, recomputed
    assert not any(n.startswith(".") for n in os.listdir(os.path.join(run_dir, "checkpoints")))


def test_corrupt_newest_checkpoint_falls_back_to_the_previous(tmp_path, uninterrupted):
    ref_dir, _ = uninterrupted
    job = _job(tmp_path, "c")
    _run(job, "update.measure=6")
    ck = tmp_path / "c" / "checkpoints" / "ckpt_00000006.h5"
    ck.write_bytes(ck.read_bytes()[:5000])  # truncated
    proc = _run(job)
    assert "ckpt_00000006.h5" in proc.stderr and "truncated or corrupt" in proc.stderr
    assert "resuming from" in proc.stderr and "ckpt_00000004.h5" in proc.stderr
    links, _ = _final_links(str(tmp_path / "c"))
    assert np.array_equal(links, _final_links(ref_dir)[0])
    assert (tmp_path / "c" / "checkpoints" / "ckpt_00000006.h5.corrupt").exists()


def test_changed_chain_parameters_and_foreign_checkpoints_are_refused(tmp_path):
    job = _job(tmp_path, "p", measure=2)
    _run(job)
    before = {n: (tmp_path / "p" / n).read_bytes() for n in ("records.jsonl", "config.json")}
    proc = _run(job, "action.beta=6.0", "update.seed=8", ok=False)
    assert proc.returncode == 2
    assert "action.beta: 5.7 -> 6.0" in proc.stderr and "update.seed: 7 -> 8" in proc.stderr
    assert {n: (tmp_path / "p" / n).read_bytes() for n in before} == before
    # a checkpoint of another lattice size copied into a fresh run directory
    os.makedirs(tmp_path / "q" / "checkpoints")
    shutil.copy(tmp_path / "p" / "checkpoints" / "ckpt_00000002.h5", tmp_path / "q" / "checkpoints")
    job_q = _job(tmp_path, "q")
    proc = _run(job_q, "lattice.dims=[4, 4, 4, 8]", ok=False)
    assert proc.returncode == 2
    assert "ckpt_00000002.h5: checkpoint of a 4,4,4,4 lattice, but this job's lattice is 4,4,4,8" \
        in proc.stderr
    assert sorted(os.listdir(tmp_path / "q")) == ["checkpoints"]
    assert os.listdir(tmp_path / "q" / "checkpoints") == ["ckpt_00000002.h5"]


def test_wall_clock_limit_stops_cleanly_and_the_next_run_continues(tmp_path, uninterrupted):
    ref_dir, _ = uninterrupted
    job = _job(tmp_path, "w", measure=3)
    steps = []
    for _ in range(4):  # a limit too short for two steps: every segment does exactly one
        out = json.loads(_run(job, "job.max_seconds=1e-6").stdout)
        steps.append((out["steps"], out["complete"]))
        if out["complete"]:
            break
    assert steps == [(1, False), (2, False), (3, True)]
    assert _records(str(tmp_path / "w")) == _records(ref_dir)[:3]


@pytest.mark.parametrize("ranks", [None, 2])
def test_bad_files_exit_nonzero_name_the_problem_and_write_nothing(tmp_path, ranks):
    data = os.path.join(os.path.dirname(__file__), "data")
    good = open(os.path.join(data, "chroma_4x4x4x4.nersc"), "rb").read()
    cases = {"truncated.nersc": (good[:-64], "truncated"),
             "flipped.nersc": (good[:-5] + bytes([good[-5] ^ 1]) + good[-4:], "checksum mismatch"),
             "dims.nersc": (good.replace(b"DIMENSION_3 = 4", b"DIMENSION_3 = 8"), "disagree"),
             "unknown.bin": (b"\x01\x02\x03" * 100, "unknown format")}
    for name, (blob, msg) in cases.items():
        src = tmp_path / name
        src.write_bytes(blob)
        for args in (["measure", str(src)], ["convert", str(src), str(tmp_path / "out.ildg"), "--to", "ildg"]):
            proc = _cli(args, ranks, timeout=60)
            assert proc.returncode != 0
            assert name in proc.stderr and msg in proc.stderr, proc.stderr
            assert not any(n.startswith(".") or n == "out.ildg" for n in os.listdir(tmp_path))


def test_sigterm_stops_cleanly_with_a_checkpoint_and_the_next_run_continues(tmp_path, uninterrupted):
    """Batch systems send SIGTERM before the kill: the step in progress finishes, a checkpoint is
    written, the summary says the run is incomplete, and the next run ends on the same chain."""
    import signal
    import time

    ref_dir, _ = uninterrupted
    job = _job(tmp_path, "s")
    cmd = [sys.executable, "-m", "lattice_hpc.cli", "run", job, "--set", "update.measure=100000",
           "--set", "checkpoint.every=0"]
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            env=dict(os.environ, OMP_NUM_THREADS="1"))
    records = tmp_path / "s" / "records.jsonl"
    deadline = time.time() + 120
    while time.time() < deadline and not (records.exists() and len(records.read_text().splitlines()) >= 3):
        time.sleep(0.05)
    proc.send_signal(signal.SIGTERM)
    out, err = proc.communicate(timeout=120)
    assert proc.returncode == 0, err[-2000:]
    summary = json.loads(out)
    assert summary["complete"] is False and "signal SIGTERM received" in err
    n = summary["steps"]
    assert n >= 3 and os.path.exists(tmp_path / "s" / "checkpoints" / f"ckpt_{n:08d}.h5")
    assert len(_records(str(tmp_path / "s"))) == n
    # continue to 10 steps: the same chain as the uninterrupted reference
    assert n < 10, "the signal came too late for the continuation check"
    _run(job)
    links, _ = _final_links(str(tmp_path / "s"))
    assert np.array_equal(links, _final_links(ref_dir)[0])
