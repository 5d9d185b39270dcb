"""The run-directory lock (:mod:`lattice_hpc.driver.lock`).

- acquire writes the documented record, release removes it, a second holder is refused with a
  message naming the holder and ``--force-unlock``;
- stale locks (process ended, PID reused, heartbeat too old, unparsable and old) are taken over,
  fresh foreign ones refused unless ``force``;
- the heartbeat refreshes the mtime, notices a lock taken over by another job and leaves it alone;
- a holder killed with SIGKILL leaves a lock that is taken over; racing processes: one winner;
- under MPI every rank learns the outcome, and only rank 0 writes.
"""

import datetime
import errno
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time

import pytest

from lattice_hpc.comm import self_comm, world
from lattice_hpc.driver.lock import RunLock, _start_time
from lattice_hpc.errors import RunDirLocked

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
FIELDS = {"restart_count", "host", "pid", "pid_start", "job_id", "started", "token", "mpi_size", "argv"}
OTHER_HOST = "elsewhere.invalid"


class Log:
    """Collects what the lock logs, by level."""

    def __init__(self):
        self.records = []

    def _add(self, level, msg, *args):
        self.records.append((level, msg % args))

    def info(self, msg, *args):
        self._add("info", msg, *args)

    def warning(self, msg, *args):
        self._add("warning", msg, *args)

    def error(self, msg, *args):
        self._add("error", msg, *args)

    def text(self, level):
        return [m for lv, m in self.records if lv == level]


def _record(path):
    with open(os.path.join(path, "lock")) as fh:
        return json.load(fh)


def _raw(path):
    with open(os.path.join(path, "lock"), "rb") as fh:
        return fh.read()


def _plant(path, age=0.0, **fields):
    """Write a foreign lock record into ``path`` whose mtime is ``age`` seconds old."""
    os.makedirs(path, exist_ok=True)
    rec = {"host": OTHER_HOST, "pid": 4242, "pid_start": 17, "job_id": "1234.pbs",
           "started": "2026-12-01T10:00:00", "token": "f" * 32, "mpi_size": 8, "argv": ["x"]}
    rec.update(fields)
    lock = os.path.join(path, "lock")
    with open(lock, "w") as fh:
        json.dump(rec, fh)
    t = time.time_ns() - int(age * 1e9)
    os.utime(lock, ns=(t, t))
    return rec


def _until(cond, timeout=3.0):
    end = time.time() + timeout
    while time.time() < end:
        if cond():
            return True
        time.sleep(0.01)
    return cond()


def _leftovers(path):
    return sorted(n for n in os.listdir(path) if n.startswith(".lock"))


def _child_env():
    env = dict(os.environ, LATTICE_HPC_NO_MPI="1", OMP_NUM_THREADS="1")
    env["PYTHONPATH"] = ROOT + os.pathsep + env.get("PYTHONPATH", "")
    return env


def test_acquire_writes_record_and_release_removes_it(tmp_path, monkeypatch):
    for var in ("SLURM_JOB_ID", "LSB_JOBID", "FLUX_JOB_ID", "COBALT_JOBID"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setenv("PBS_JOBID", "77.pbs")
    run = str(tmp_path / "runs" / "x")  # created by acquire
    lk = RunLock(run, self_comm(), log=Log())
    lk.acquire()
    rec = _record(run)
    assert set(rec) == FIELDS and rec == lk.info
    assert rec["pid"] == os.getpid() and rec["host"] == socket.gethostname()
    assert rec["pid_start"] == _start_time(os.getpid()) and rec["job_id"] == "77.pbs"
    assert rec["mpi_size"] == 1 and rec["argv"] == sys.argv and len(rec["token"]) == 32
    datetime.datetime.fromisoformat(rec["started"])
    assert _leftovers(run) == []  # the private temporary is gone
    t0 = time.time()
    lk.release()
    assert time.time() - t0 < 1.0  # the heartbeat thread (30 s period) stops at once
    assert not lk._thread.is_alive()
    assert not os.path.exists(os.path.join(run, "lock")) and _leftovers(run) == []
    lk.release()  # idempotent
    with RunLock(run, self_comm(), log=Log()):  # context manager, free again
        assert _record(run)["pid"] == os.getpid()
    assert not os.path.exists(os.path.join(run, "lock"))


def test_second_holder_is_refused(tmp_path):
    run = str(tmp_path / "r")
    with RunLock(run, self_comm(), log=Log()) as first:
        before = _raw(run)
        second = RunLock(run, self_comm(), log=Log())
        with pytest.raises(RunDirLocked) as err:
            second.acquire()
        msg = str(err.value)
        assert msg.startswith(f"{run}: locked by another job")
        for part in (f"host {socket.gethostname()}", f"pid {os.getpid()}", "--force-unlock",
                     "last heartbeat 0 s ago", first.info["started"]):
            assert part in msg, (part, msg)
        assert _raw(run) == before and _leftovers(run) == []
        second.release()  # never acquired: does nothing
        assert _raw(run) == before


def test_without_hard_links_o_excl_is_used(tmp_path, monkeypatch):
    def no_link(src, dst):
        raise OSError(errno.EPERM, "Operation not permitted", src)
    monkeypatch.setattr(os, "link", no_link)
    run = str(tmp_path / "r")
    with RunLock(run, self_comm(), log=Log()) as first:
        assert _record(run) == first.info and _leftovers(run) == []
        with pytest.raises(RunDirLocked, match=f"pid {os.getpid()}"):
            RunLock(run, self_comm(), log=Log()).acquire()
    assert os.listdir(run) == []
    _plant(run, age=1000)
    with RunLock(run, self_comm(), log=Log()) as lk:  # take-over works too
        assert _record(run)["token"] == lk.token


def test_lock_of_ended_process_is_taken_over(tmp_path):
    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    proc.wait()
    run = str(tmp_path / "r")
    old = _plant(run, host=socket.gethostname(), pid=proc.pid)
    log = Log()
    lk = RunLock(run, self_comm(), log=log)
    lk.acquire()
    rec = _record(run)
    assert rec["pid"] == os.getpid() and rec["token"] == lk.token != old["token"]
    (warn,) = log.text("warning")
    assert f"pid {proc.pid}" in warn and "has ended" in warn
    lk.release()
    assert _leftovers(run) == []


@pytest.mark.parametrize("reused", [True, False])
def test_pid_reuse(tmp_path, reused):
    start = _start_time(os.getpid())
    if start is None:
        pytest.skip("no /proc/PID/stat")
    run = str(tmp_path / "r")
    _plant(run, host=socket.gethostname(), pid=os.getpid(), pid_start=start + 1 if reused else start)
    lk = RunLock(run, self_comm(), log=Log())
    if reused:  # our pid, but another process's start time: the holder has ended
        lk.acquire()
        assert _record(run)["token"] == lk.token
        assert "PID reuse" in lk.log.text("warning")[0]
        lk.release()
    else:  # the holder is this very (live) process
        before = _raw(run)
        with pytest.raises(RunDirLocked):
            lk.acquire()
        assert _raw(run) == before


def test_heartbeat_age_decides_for_other_hosts(tmp_path):
    fresh, old = str(tmp_path / "fresh"), str(tmp_path / "old")
    _plant(fresh, age=250)
    _plant(old, age=400)
    before = _raw(fresh)
    with pytest.raises(RunDirLocked) as err:
        RunLock(fresh, self_comm(), log=Log()).acquire()
    msg = str(err.value)
    for part in (f"host {OTHER_HOST}", "pid 4242", "job 1234.pbs", "started 2026-12-01T10:00:00",
                 "--force-unlock", "older than 300 s"):
        assert part in msg, (part, msg)
    assert 248 <= int(msg.split("last heartbeat ")[1].split(" s ago")[0]) <= 260
    assert _raw(fresh) == before
    log = Log()
    with RunLock(old, self_comm(), log=log) as lk:
        assert _record(old)["token"] == lk.token
        (warn,) = log.text("warning")
        assert OTHER_HOST in warn and "heartbeat" in warn
    # a shorter stale_after makes the 250 s old one stale too
    with RunLock(fresh, self_comm(), log=Log(), stale_after=200) as lk:
        assert _record(fresh)["pid"] == os.getpid()


def test_unparsable_lock_counts_by_its_mtime(tmp_path):
    run = str(tmp_path / "r")
    os.makedirs(run)
    open(os.path.join(run, "lock"), "w").close()  # creator died between create and write
    with pytest.raises(RunDirLocked) as err:
        RunLock(run, self_comm(), log=Log()).acquire()
    assert "host ?, pid ?" in str(err.value)
    t = time.time_ns() - 1000 * 10**9
    os.utime(os.path.join(run, "lock"), ns=(t, t))
    with RunLock(run, self_comm(), log=Log()) as lk:
        assert _record(run)["token"] == lk.token


def test_force_takes_over_a_fresh_foreign_lock(tmp_path):
    run = str(tmp_path / "r")
    _plant(run)
    log = Log()
    with RunLock(run, self_comm(), force=True, log=log) as lk:
        assert _record(run)["token"] == lk.token and _record(run)["pid"] == os.getpid()
        (warn,) = log.text("warning")
        assert f"host {OTHER_HOST}, pid 4242, job 1234.pbs" in warn and "--force-unlock" in warn
    assert not os.path.exists(os.path.join(run, "lock")) and _leftovers(run) == []


@pytest.mark.parametrize("when", ["before the check", "before the rename"])
def test_take_over_moves_only_the_record_judged_stale(tmp_path, monkeypatch, when):
    """Another job takes the stale lock over first: its fresh lock is kept, ours refused."""
    run = str(tmp_path / "r")
    _plant(run, age=1000)
    calls, renamed = [], []
    rename, judge = os.rename, RunLock._stale

    def other_job_takes_over():
        if not calls:
            calls.append(when)
            _plant(run, token="d" * 32, pid=5151)

    def stale(self, rec, age):
        why = judge(self, rec, age)
        if when == "before the check":
            other_job_takes_over()
        return why

    def racing_rename(src, dst):
        if os.path.basename(src) == "lock":
            if when == "before the rename":
                other_job_takes_over()
            renamed.append(src)
        return rename(src, dst)

    monkeypatch.setattr(RunLock, "_stale", stale)
    monkeypatch.setattr(os, "rename", racing_rename)
    with pytest.raises(RunDirLocked, match="pid 5151"):
        RunLock(run, self_comm(), log=Log()).acquire()
    assert calls == [when]
    assert _record(run)["token"] == "d" * 32 and _leftovers(run) == []
    # a lock seen to change after it was judged is not even moved away for an instant
    assert len(renamed) == (0 if when == "before the check" else 1)


def test_heartbeat_refreshes_and_notices_a_lost_lock(tmp_path):
    run = str(tmp_path / "r")
    log = Log()
    lk = RunLock(run, self_comm(), log=log, heartbeat=0.05)
    lk.acquire()
    lock = os.path.join(run, "lock")
    back = time.time_ns() - 100 * 10**9
    os.utime(lock, ns=(back, back))
    assert _until(lambda: os.stat(lock).st_mtime_ns > back + 50 * 10**9)  # refreshed
    assert not lk.lost
    foreign = dict(lk.info, token="e" * 32, pid=4243)  # another job took the lock over
    with open(lock + ".new", "w") as fh:
        json.dump(foreign, fh)
    os.utime(lock + ".new", ns=(back, back))
    os.replace(lock + ".new", lock)
    assert _until(lambda: lk.lost)
    time.sleep(0.3)
    assert os.stat(lock).st_mtime_ns == back  # not refreshed any more
    assert len(log.text("error")) == 1 and "no longer holds" in log.text("error")[0]
    lk.release()
    assert _record(run) == foreign and os.stat(lock).st_mtime_ns == back
    assert not lk._thread.is_alive()


def test_heartbeat_release_leaves_a_replaced_lock(tmp_path):
    """Release checks the token itself, even before the heartbeat has noticed."""
    run = str(tmp_path / "r")
    lk = RunLock(run, self_comm(), log=Log())
    lk.acquire()
    foreign = _plant(run)
    lk.release()
    assert not lk.lost and _record(run) == foreign and _leftovers(run) == []
    assert lk.log.text("warning")


CHILD_HOLD = """
import sys, time
from lattice_hpc.comm import self_comm
from lattice_hpc.driver.lock import RunLock
RunLock(sys.argv[1], self_comm()).acquire()
print("locked", flush=True)
time.sleep(60)
"""


def test_kill_9_leaves_a_lock_that_is_taken_over(tmp_path):
    run = str(tmp_path / "r")
    child = subprocess.Popen([sys.executable, "-c", CHILD_HOLD, run], stdout=subprocess.PIPE,
                             text=True, env=_child_env())
    try:
        assert child.stdout.readline().strip() == "locked"
        assert _record(run)["pid"] == child.pid
        with pytest.raises(RunDirLocked, match=f"pid {child.pid}"):
            RunLock(run, self_comm(), log=Log()).acquire()
    finally:
        child.send_signal(signal.SIGKILL)
        child.wait()
    assert _record(run)["pid"] == child.pid  # left behind
    log = Log()
    with RunLock(run, self_comm(), log=log) as lk:
        assert _record(run)["token"] == lk.token
        assert f"pid {child.pid}" in log.text("warning")[0]


CHILD_RACE = """
import os, sys, time
from lattice_hpc.comm import self_comm
from lattice_hpc.driver.lock import RunLock
from lattice_hpc.errors import RunDirLocked
base, rounds = sys.argv[1], int(sys.argv[2])
print("ready", flush=True)
for r in range(rounds):
    while not os.path.exists(os.path.join(base, "go%d" % r)):
        time.sleep(0.0002)
    lk = RunLock(os.path.join(base, "r%d" % r), self_comm())
    try:
        lk.acquire()
        print("won", flush=True)
    except RunDirLocked:
        print("lost", flush=True)
    sys.stdin.readline()
    lk.release()
"""


def test_racing_processes_one_winner(tmp_path):
    """Three processes race for a directory, free (even rounds) or with a stale lock (odd)."""
    base, rounds, n = str(tmp_path), 8, 3
    kids = [subprocess.Popen([sys.executable, "-c", CHILD_RACE, base, str(rounds)], text=True,
                             stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                             env=_child_env()) for _ in range(n)]
    try:
        assert [k.stdout.readline().strip() for k in kids] == ["ready"] * n
        for r in range(rounds):
            run = os.path.join(base, f"r{r}")
            if r % 2:
                _plant(run, age=1000)
            open(os.path.join(base, f"go{r}"), "w").close()
            outcome = [k.stdout.readline().strip() for k in kids]
            assert sorted(outcome) == ["lost"] * (n - 1) + ["won"], (r, outcome)
            winner = kids[outcome.index("won")]
            assert _record(run)["pid"] == winner.pid
            for k in kids:
                k.stdin.write("next\n")
                k.stdin.flush()
        for k in kids:
            k.stdin.close()
            assert k.wait(timeout=20) == 0, k.stderr.read()
    finally:
        for k in kids:
            if k.poll() is None:
                k.kill()
                k.wait()
    for r in range(rounds):  # every winner released its lock, nothing is left behind
        assert os.listdir(os.path.join(base, f"r{r}")) == []


@pytest.mark.mpi
def test_every_rank_learns_the_outcome():
    comm = world()
    base = comm.bcast(tempfile.mkdtemp(prefix="lock-") if comm.rank == 0 else None)
    held, free = os.path.join(base, "held"), os.path.join(base, "free")
    try:
        if comm.rank == 0:
            _plant(held)
            open(os.path.join(base, "file"), "w").close()
        comm.barrier()
        before = _raw(held)

        def outcome(run):
            try:
                RunLock(run, comm, log=Log()).acquire()
                return "acquired"
            except RunDirLocked as exc:
                return str(exc)

        outs = comm.allgather((outcome(held), _raw(held) == before))
        assert len(set(outs)) == 1 and "locked by another job" in outs[0][0], outs
        assert OTHER_HOST in outs[0][0] and outs[0][1]  # the foreign lock is untouched
        # an OS error (the parent is a regular file) is refused on every rank, naming it
        bad = os.path.join(base, "file", "run")
        outs = comm.allgather(outcome(bad))
        assert len(set(outs)) == 1 and outs[0].startswith(f"{bad}: cannot lock") and "Errno" in outs[0]

        lk = RunLock(free, comm, log=Log())
        try:
            lk.acquire()
            res = "acquired"
        except RunDirLocked as exc:
            res = str(exc)
        assert comm.allgather(res) == ["acquired"] * comm.size
        pids = comm.allgather(os.getpid())
        comm.barrier()
        rec = _record(free)
        seen = comm.allgather((rec["pid"] == pids[0], rec["mpi_size"], os.listdir(free),
                               (lk.info == rec) if comm.rank == 0 else
                               (lk.info == {} and lk._thread is None)))
        assert seen == [(True, comm.size, ["lock"], True)] * comm.size, seen  # only rank 0 wrote
        lk.release()
        comm.barrier()
        assert comm.allgather(os.listdir(free)) == [[]] * comm.size
    finally:
        comm.barrier()
        if comm.rank == 0:
            shutil.rmtree(base, ignore_errors=True)


def test_a_requeued_batch_job_takes_over_the_lock_of_its_earlier_run(tmp_path, monkeypatch):
    """Slurm keeps the job id across requeues and sets SLURM_RESTART_COUNT only from the first
    requeue on: the lock of run 0 of job 777 (no count; another node, fresh heartbeat) is taken
    over by run 1, not by a job with another id, nor by another step of the same run."""
    for var in ("PBS_JOBID", "LSB_JOBID", "FLUX_JOB_ID", "COBALT_JOBID", "SLURM_RESTART_COUNT"):
        monkeypatch.delenv(var, raising=False)
    run = str(tmp_path / "r")
    monkeypatch.setenv("SLURM_JOB_ID", "777")
    _plant(run, job_id="777", restart_count=None)
    with pytest.raises(RunDirLocked):  # the same run of the job: e.g. a second srun step
        RunLock(run, self_comm(), log=Log()).acquire()
    monkeypatch.setenv("SLURM_JOB_ID", "778")
    monkeypatch.setenv("SLURM_RESTART_COUNT", "1")
    with pytest.raises(RunDirLocked):  # another job
        RunLock(run, self_comm(), log=Log()).acquire()
    monkeypatch.setenv("SLURM_JOB_ID", "777")
    log = Log()
    with RunLock(run, self_comm(), log=log) as lk:
        assert _record(run)["token"] == lk.token and _record(run)["restart_count"] == 1
        (warn,) = log.text("warning")
        assert "requeued" in warn and "777" in warn
    _plant(run, job_id="777", restart_count=1)  # run 1 is alive: run 1 again is refused
    with pytest.raises(RunDirLocked):
        RunLock(run, self_comm(), log=Log()).acquire()


def test_a_segment_of_a_chain_takes_over_the_lock_of_the_segment_before_it(tmp_path, monkeypatch):
    """``lattice-hpc submit --segments`` lists its jobs in RUN_DIR/batch/jobs.json; a segment
    starts only after the one before it ended, so that one's lock (killed at its limit: fresh
    heartbeat, another node) is taken over, but not a lock of a later segment or another job."""
    for var in ("SLURM_JOB_ID", "LSB_JOBID", "FLUX_JOB_ID", "COBALT_JOBID", "SLURM_RESTART_COUNT"):
        monkeypatch.delenv(var, raising=False)
    run = str(tmp_path / "r")
    os.makedirs(os.path.join(run, "batch"))
    with open(os.path.join(run, "batch", "jobs.json"), "w") as fh:
        json.dump({"scheduler": "pbs", "jobs": ["101.pbs01", "102.pbs01", "103.pbs01"]}, fh)
    _plant(run, job_id="102.pbs01")
    monkeypatch.setenv("PBS_JOBID", "101.pbs01")  # an earlier segment does not take over
    with pytest.raises(RunDirLocked):
        RunLock(run, self_comm(), log=Log()).acquire()
    monkeypatch.setenv("PBS_JOBID", "999.pbs01")  # nor does a job outside the chain
    with pytest.raises(RunDirLocked):
        RunLock(run, self_comm(), log=Log()).acquire()
    monkeypatch.setenv("PBS_JOBID", "103.pbs01")
    log = Log()
    with RunLock(run, self_comm(), log=log) as lk:
        assert _record(run)["token"] == lk.token
        (warn,) = log.text("warning")
        assert "102.pbs01" in warn and "earlier segment" in warn
