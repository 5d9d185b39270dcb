"""Real system-call failures inside HDF5 and MPI-IO: an LD_PRELOAD shim (``tests/eio_shim.c``)
makes ``pread``/``pwrite`` return EIO for one file, byte range and rank.

The Python-level fault points (:mod:`lattice_hpc.faults`) fire outside HDF5 and MPI-IO, so they
cannot show what these do: a failing rank that leaves a collective (a hang), or an MPI-IO error
without an errno taken for corruption (a valid checkpoint renamed ``*.corrupt``, records dropped,
exit status 0).  Each case runs the command line in a subprocess (under ``mpirun`` where it says
so) and must end within ``LIMIT`` seconds:

- EIO on the links of the newest checkpoint when a job resumes (1 rank; 2 ranks on every rank,
  on rank 1, and with collective reads on rank 0): status 2, "could not be read" / "an I/O error
  inside a collective operation", every file of the run directory unchanged (no ``*.corrupt``, no
  ``records.discarded.jsonl``); a rerun without the shim resumes from that checkpoint;
- EIO on the writes of a new checkpoint (rank 0 at 2 ranks, 1 rank): the job ends with status 2,
  the earlier checkpoints are intact, no partial file is left, a rerun completes the chain;
- a NERSC start file whose data read fails on rank 1 of 2: status 2, the message names the file;
- ``convert`` to ILDG with a write error on rank 1 of 2 (and to HDF5 at 1 rank): status 2, no
  target and no partial file left.

A job ended by ``MPI_Abort`` (an error inside a collective HDF5 call) cannot remove its run
directory's lock: the next run takes it over (its process has ended), so ``lock`` is left out of
the comparisons.

Not covered, a limit of HDF5 1.10 itself: a write error on a rank other than 0 inside
``H5Fclose`` (its distributed metadata flush) makes HDF5 take mismatched internal collectives
and hang inside the library, where no Python code runs.
"""

import json
import os
import shutil
import signal
import subprocess
import sys
import time

import pytest

from helpers import SU3_QUENCHED_JOB

DATA = os.path.join(os.path.dirname(__file__), "data")
NERSC = os.path.join(DATA, "chroma_4x4x4x4.nersc")
SHIM_SOURCE = os.path.join(os.path.dirname(__file__), "eio_shim.c")
LIMIT = 30.0  # seconds: every case must end well within this (a hang runs into TIMEOUT)
TIMEOUT = 60.0

JOB = SU3_QUENCHED_JOB.replace("{measure}", "4").replace("{heatbath}", "1").replace("{overrelax}", "1")


def cli(args, np=None, env=None, timeout=TIMEOUT):
    """``(CompletedProcess, seconds)`` of ``lattice-hpc ARGS`` (as :func:`helpers.run_cli`: under
    ``mpirun -n np`` if given, ``env`` added on every rank).  In its own session, so that a hang
    ends with the whole process group (ranks included) killed and the test failing."""
    cmd = [sys.executable, "-m", "lattice_hpc.cli"] + list(args)
    if np:
        cmd = ["mpirun", "-n", str(np)] + cmd
    full = dict(os.environ, OMP_NUM_THREADS="1", **(env or {}))
    t0 = time.monotonic()
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            env=full, start_new_session=True)
    try:
        out, err = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGTERM)  # hydra forwards it to the ranks
        try:
            out, err = proc.communicate(timeout=5)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            out, err = proc.communicate()
        pytest.fail(f"{' '.join(args)} (np={np}, {env}) hangs: killed after {timeout:.0f} s; "
                    f"stderr:\n{err[-3000:]}")
    seconds = time.monotonic() - t0
    return subprocess.CompletedProcess(cmd, proc.returncode, out, err), seconds


def ended(proc_seconds, what):
    proc, seconds = proc_seconds
    assert seconds < LIMIT, f"{what}: took {seconds:.1f} s (a hang broken by a timeout?)\n" \
                            f"{proc.stderr[-3000:]}"
    return proc


@pytest.fixture(scope="session")
def shim(tmp_path_factory):
    """The shim, built once per session (gcc is part of tools/install.sh's g++)."""
    gcc = shutil.which("gcc")
    if gcc is None:
        pytest.fail("gcc is not installed: these tests build tests/eio_shim.c with it; "
                    "tools/install.sh installs it (apt package g++)")
    out = str(tmp_path_factory.mktemp("shim") / "eio_shim.so")
    proc = subprocess.run([gcc, "-shared", "-fPIC", "-O2", "-o", out, SHIM_SOURCE, "-ldl"],
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, f"building the EIO shim failed:\n{proc.stderr}"
    return out


def links_range(path):
    """``(first byte, end)`` of the gauge links data of a checkpoint."""
    import h5py

    with h5py.File(path, "r") as f:
        d = f["gauge/links"]
        offset, n = d.id.get_offset(), d.id.get_storage_size()
    return offset, offset + n


def write_job(directory, name, run_dir, start="hot"):
    path = os.path.join(directory, f"{name}.toml")
    with open(path, "w") as fh:
        fh.write(JOB.format(start=start, dir=run_dir))
    return path


@pytest.fixture(scope="module")
def base_run(tmp_path_factory):
    """A finished run directory: 4 steps, checkpoints 2 and 4 (1 rank)."""
    d = str(tmp_path_factory.mktemp("base"))
    run_dir = os.path.join(d, "q")
    proc = ended(cli(["run", write_job(d, "q", run_dir)]), "the base run")
    assert proc.returncode == 0, proc.stderr[-3000:]
    return run_dir


def copy_run(base_run, tmp_path):
    """A copy of the base run directory and its job file: ``(job, run_dir)``."""
    run_dir = str(tmp_path / "q")
    shutil.copytree(base_run, run_dir)
    return write_job(str(tmp_path), "q", run_dir), run_dir


def snapshot(run_dir):
    """Every file of a run directory (names and bytes), without the lock."""
    out = {}
    for root, _dirs, files in os.walk(run_dir):
        for f in files:
            p = os.path.join(root, f)
            rel = os.path.relpath(p, run_dir)
            if rel != "lock":
                out[rel] = open(p, "rb").read()
    return out


def records(run_dir):
    with open(os.path.join(run_dir, "records.jsonl")) as fh:
        return [json.loads(ln) for ln in fh if ln.strip()]


def ckpt(run_dir, step):
    return os.path.join(run_dir, "checkpoints", f"ckpt_{step:08d}.h5")


def assert_resumes(job, run_dir, np, step=4):
    """A rerun without the shim resumes from checkpoint ``step`` and completes 8 steps."""
    proc = ended(cli(["run", job, "--set", "update.measure=8"], np=np), "the rerun")
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert f"resuming from {ckpt(run_dir, step)} (step {step})" in proc.stderr
    assert [r["step"] for r in records(run_dir)] == list(range(8))
    names = os.listdir(os.path.join(run_dir, "checkpoints"))
    assert not any(n.endswith(".corrupt") or ".partial-" in n for n in names), names
    assert "ckpt_00000008.h5" in names
    assert not os.path.exists(os.path.join(run_dir, "records.discarded.jsonl"))


# -- reading the newest checkpoint -----------------------------------------------------------------
@pytest.mark.parametrize("np, extra, expect", [
    (None, {}, "reading the field (collective): EIO: Input/output error"),
    (2, {}, "could not be read (ranks 0,1: EIO: Input/output error"),
    (2, {"EIO_RANK": "1"}, "could not be read (rank 1: EIO: Input/output error"),
    (2, {"EIO_RANK": "0", "LATTICE_HPC_H5_READ": "collective"},
     "[rank 0/2] lattice-hpc: error: {path}: reading the field (collective): EIO"),
], ids=["1-rank", "2-ranks-every-rank", "2-ranks-rank-1", "2-ranks-collective-rank-0"])
def test_eio_reading_the_newest_checkpoint_stops_with_status_2_and_changes_nothing(
        shim, base_run, tmp_path, np, extra, expect):
    job, run_dir = copy_run(base_run, tmp_path)
    newest = ckpt(run_dir, 4)
    lo, hi = links_range(newest)
    before = snapshot(run_dir)
    env = {"LD_PRELOAD": shim, "EIO_PATH": newest, "EIO_MINOFF": str(lo), "EIO_MAXOFF": str(hi),
           **extra}
    proc = ended(cli(["run", job, "--set", "update.measure=8"], np=np, env=env), "the resume")
    assert proc.returncode == 2, proc.stderr[-3000:]
    assert expect.format(path=newest) in proc.stderr, proc.stderr[-3000:]
    if "collective" in expect:
        assert "an I/O error inside a collective operation; ending the job (nothing was renamed, " \
               "committed or discarded)" in proc.stderr
    else:
        assert f"{newest}: could not be read (" in proc.stderr
        assert "not a corrupt checkpoint" in proc.stderr
    assert "falling back" not in proc.stderr
    assert snapshot(run_dir) == before  # names and bytes: no *.corrupt, no records.discarded
    assert_resumes(job, run_dir, np)


# -- writing a new checkpoint ----------------------------------------------------------------------
@pytest.mark.parametrize("np, extra", [(2, {"EIO_RANK": "0"}), (None, {})],
                         ids=["2-ranks-rank-0", "1-rank"])
def test_eio_writing_a_checkpoint_ends_the_job_and_keeps_the_earlier_ones(
        shim, base_run, tmp_path, np, extra):
    job, run_dir = copy_run(base_run, tmp_path)
    lo, _hi = links_range(ckpt(run_dir, 4))  # the new file has the same layout
    kept = {s: open(ckpt(run_dir, s), "rb").read() for s in (2, 4)}
    env = {"LD_PRELOAD": shim, "EIO_PATH": ".ckpt_00000006.h5.partial-", "EIO_WRITE": "1",
           "EIO_MINOFF": str(lo), **extra}
    proc = ended(cli(["run", job, "--set", "update.measure=8"], np=np, env=env), "the segment")
    assert proc.returncode == 2, proc.stderr[-3000:]
    assert f"{ckpt(run_dir, 6)}: writing the field (collective): EIO: Input/output error" in \
        proc.stderr and "an I/O error inside a collective operation" in proc.stderr
    names = os.listdir(os.path.join(run_dir, "checkpoints"))
    assert sorted(names) == ["ckpt_00000002.h5", "ckpt_00000004.h5"]  # the partial file removed
    assert {s: open(ckpt(run_dir, s), "rb").read() for s in (2, 4)} == kept
    proc = ended(cli(["run", job, "--set", "update.measure=8"], np=np), "the rerun")
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert f"resuming from {ckpt(run_dir, 4)} (step 4)" in proc.stderr
    assert [r["step"] for r in records(run_dir)] == list(range(8))
    names = sorted(os.listdir(os.path.join(run_dir, "checkpoints")))
    assert names == [f"ckpt_{s:08d}.h5" for s in (2, 4, 6, 8)]


# -- raw formats (BlockFile) -----------------------------------------------------------------------
def test_eio_reading_a_nersc_start_file_on_rank_1_stops_every_rank(shim, tmp_path):
    start = str(tmp_path / "start_eio.nersc")
    shutil.copyfile(NERSC, start)
    data = open(start, "rb").read()
    first = data.index(b"\n", data.index(b"END_HEADER")) + 1  # the data section
    run_dir = str(tmp_path / "fs")
    job = write_job(str(tmp_path), "fs", run_dir, start=start)
    env = {"LD_PRELOAD": shim, "EIO_PATH": "start_eio.nersc", "EIO_RANK": "1",
           "EIO_MINOFF": str(first)}
    proc = ended(cli(["run", job], np=2, env=env), "the start")
    assert proc.returncode == 2, proc.stderr[-3000:]
    for rank in (0, 1):
        assert f"[rank {rank}/2] lattice-hpc: error: {start}: could not be read (rank 1: EIO: " \
               f"Input/output error" in proc.stderr, proc.stderr[-3000:]
    assert "an I/O error, not a damaged file" in proc.stderr
    assert not os.path.exists(os.path.join(run_dir, "checkpoints"))
    assert open(start, "rb").read() == data


def test_eio_writing_ildg_on_rank_1_leaves_no_file(shim, tmp_path):
    out = tmp_path / "OUT.lime"
    env = {"LD_PRELOAD": shim, "EIO_PATH": "OUT.lime", "EIO_RANK": "1", "EIO_WRITE": "1",
           "EIO_MINOFF": "0"}
    proc = ended(cli(["convert", NERSC, str(out), "--to", "ildg"], np=2, env=env), "convert")
    assert proc.returncode == 2, proc.stderr[-3000:]
    assert f"{out}: could not be written (rank 1: EIO: Input/output error" in proc.stderr
    assert "the partial file was removed" in proc.stderr and ".partial-" not in proc.stderr
    assert os.listdir(tmp_path) == []


def test_eio_writing_hdf5_at_one_rank_ends_the_job_and_leaves_no_file(shim, tmp_path):
    out = tmp_path / "OUT.h5"
    env = {"LD_PRELOAD": shim, "EIO_PATH": "OUT.h5.partial-", "EIO_WRITE": "1"}
    proc = ended(cli(["convert", NERSC, str(out), "--to", "hdf5"], env=env), "convert")
    assert proc.returncode == 2, proc.stderr[-3000:]
    assert f"lattice-hpc: error: {out}: " in proc.stderr
    assert "an I/O error inside a collective operation" in proc.stderr
    assert os.listdir(tmp_path) == []
