"""The run-directory lock: one job at a time per run directory, safe on parallel file systems.

The lock is the file ``RUN_DIR/lock``, a JSON object written once by rank 0 of the job holding it:
``host`` (``socket.gethostname()``), ``pid``, ``pid_start`` (the process start time, field 22 of
``/proc/PID/stat``, or null), ``job_id`` (the first of ``SLURM_JOB_ID``, ``PBS_JOBID``, ``LSB_JOBID``,
``FLUX_JOB_ID``, ``COBALT_JOBID`` that is set, or null), ``restart_count`` (Slurm's
``SLURM_RESTART_COUNT``: how often the batch job was requeued; Slurm sets it only after a first
requeue, so null means run 0), ``started`` (ISO date),
``token`` (a random hex string naming this holder), ``mpi_size`` and ``argv``.  Its mtime is the holder's heartbeat:
rank 0 refreshes it every ``heartbeat`` seconds (30 by default) while the job runs.

Atomicity: the record is written and fsynced to a private file ``RUN_DIR/.lock.<token>``, which
is then hard-linked to ``RUN_DIR/lock``.  ``link`` fails with EEXIST when the name exists, and is
atomic on local file systems, NFS, Lustre, GPFS and DAOS dfuse (flock/fcntl locks are not reliable
there, so none are used); on NFS a link whose reply was lost is recognised by the link count of the
private file.  Where hard links are not supported the lock is created with
``open(O_CREAT | O_EXCL)`` instead.  Exactly one of several jobs racing for a directory wins.

Stale locks: a held lock is stale when its host is this host and its process has ended (or its pid
now belongs to a process with another start time), when it belongs to an earlier run of this very
batch job (same job id, lower ``restart_count``: Slurm requeued the job, which ends the earlier
run first), when it belongs to an earlier segment of this run's chain of batch jobs
(``RUN_DIR/batch/jobs.json``, written by ``lattice-hpc submit``, whose dependencies start a
segment only after the one before it ended), or when its heartbeat is older than
``stale_after`` seconds (300 by default), the age being measured with the file system's clock (the
mtime of a probe file just created), not the node's.  A lock that cannot be parsed (its creator
died while writing it) counts as a holder of unknown host whose heartbeat is its mtime.  A stale
lock is taken over with a warning naming the old holder: it is renamed to a private name, checked to
be the record judged stale (else put back), deleted, and the new lock is created as above.

Recovery: a job refused with ``RunDirLocked`` is told who holds the lock.  If that job is no longer
running, rerun with ``--force-unlock``, which takes over any lock (logging its holder); or wait
``stale_after`` seconds after its last heartbeat, after which the lock is taken over automatically.
"""

from __future__ import annotations

import datetime
import errno
import json
import os
import socket
import sys
import threading
import time
import uuid

from ..errors import RunDirLocked
from ..log import get_logger

JOB_ID_VARS = ("SLURM_JOB_ID", "PBS_JOBID", "LSB_JOBID", "FLUX_JOB_ID", "COBALT_JOBID")
_NO_LINK = {errno.EPERM, errno.ENOTSUP, errno.EOPNOTSUPP, errno.EXDEV, errno.ENOSYS}


def _start_time(pid) -> int | None:
    """Start time of process ``pid`` (clock ticks since boot, /proc/PID/stat field 22), or None."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as fh:
            return int(fh.read().rsplit(b")", 1)[1].split()[19])
    except (OSError, IndexError, ValueError):
        return None


def _restart_count() -> int | None:
    value = os.environ.get("SLURM_RESTART_COUNT", "")
    return int(value) if value.isdigit() else None


def _alive(pid: int) -> bool:
    """Whether process ``pid`` runs on this host (a zombie, which no one reaped, does not)."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as fh:
            if fh.read().rsplit(b")", 1)[1].split()[0] in (b"Z", b"X"):
                return False
    except (OSError, IndexError):
        pass
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _parse(raw: bytes) -> dict:
    try:
        rec = json.loads(raw)
    except ValueError:
        return {}
    return rec if isinstance(rec, dict) else {}


def _excl_write(path: str, data: bytes) -> bool:
    """Create ``path`` with O_EXCL and write ``data`` (fsynced); False if it exists."""
    try:
        fd = os.open(path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
    except FileExistsError:
        return False
    try:
        view = memoryview(data)
        while view:
            view = view[os.write(fd, view):]
        os.fsync(fd)
    finally:
        os.close(fd)
    return True


class RunLock:
    """Collective lock of ``run_dir`` for the job of ``comm``; only rank 0 touches files."""

    def __init__(self, run_dir: str, comm, force: bool = False, log=None,
                 stale_after: float = 300.0, heartbeat: float = 30.0):
        self.run_dir, self.comm, self.force = run_dir, comm, force
        self.log = log if log is not None else get_logger(comm)
        self.stale_after, self.heartbeat = float(stale_after), float(heartbeat)
        self.path = os.path.join(run_dir, "lock")
        self.token = uuid.uuid4().hex
        self.host = socket.gethostname()
        self.lost = False
        self.info: dict = {}
        self._data = b""
        self._held = False
        self._stop = threading.Event()
        self._thread = None

    def __enter__(self):
        self.acquire()
        return self

    def __exit__(self, *exc):
        self.release()
        return False

    # -- collective interface --------------------------------------------------------------------
    def acquire(self) -> None:
        """Collective: take the lock or raise ``RunDirLocked`` on every rank."""
        if self._held:
            return
        def lock():
            try:
                msg = self._lock()
            except OSError as exc:
                msg = f"{self.run_dir}: cannot lock the run directory ({exc})"
            if msg is not None:
                raise RunDirLocked(msg)
        try:
            self.comm.on_root(lock, catch=(RunDirLocked,))
        except RunDirLocked:
            self.info = {}
            raise
        self._held = True
        if self.comm.rank == 0:
            self._thread = threading.Thread(target=self._beat, name="run-dir-lock", daemon=True)
            self._thread.start()

    def release(self) -> None:
        """Rank 0: stop the heartbeat and remove the lock if it is still ours.  Never raises."""
        if not self._held:
            return
        self._held = False
        if self.comm.rank != 0:
            return
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=5.0)
        if self.lost:
            return
        try:
            if not self._grab(self._data, ".lock.released."):
                self.log.warning("%s is no longer our lock: left in place", self.path)
        except OSError as exc:
            self.log.error("%s: cannot remove the lock (%s); remove it by hand", self.path, exc)

    def check(self) -> None:
        """Collective: raise ``RunDirLocked`` on every rank unless the lock is still ours (called
        before each step of a start that renames or writes files of the run directory)."""
        if not self.comm.on_root(self.held):
            raise RunDirLocked(f"{self.run_dir}: the run directory's lock was taken over by another "
                               "job: stopping at once without writing anything more")

    def held(self) -> bool:
        """Rank 0: whether the lock file still holds our token (checked now, not only by the
        heartbeat; sets ``lost`` when it does not).  Other ranks: ``True``."""
        if self.comm.rank != 0 or not self._held or self.lost:
            return not self.lost
        if self._touch():
            return True
        time.sleep(0.2)  # a job checking the lock may have moved it away for an instant
        if self._touch():
            return True
        self.lost = True
        self.log.error("%s no longer holds this job's lock (removed or taken over by another "
                       "job)", self.path)
        return False

    # -- rank 0 ----------------------------------------------------------------------------------
    def _lock(self) -> str | None:
        """Take the lock; None on success, else the refusal message."""
        os.makedirs(self.run_dir, exist_ok=True)
        self.info = {"host": self.host, "pid": os.getpid(), "pid_start": _start_time("self"),
                     "job_id": next((os.environ[v] for v in JOB_ID_VARS if os.environ.get(v)), None),
                     "restart_count": _restart_count(),
                     "started": datetime.datetime.now().isoformat(timespec="seconds"),
                     "token": self.token, "mpi_size": self.comm.size, "argv": list(sys.argv)}
        self._data = (json.dumps(self.info, indent=1) + "\n").encode()
        for _ in range(3):  # a take-over that loses a race is retried
            if self._create():
                return None
            held = self._read()
            if held is None:  # released meanwhile
                continue
            raw, rec, mtime = held
            age = self._fs_now() - mtime
            why = self._stale(rec, age)
            if why is None and not self.force:
                return self._refusal(rec, age)
            if self._grab(raw, ".lock.stale."):
                self.log.warning("%s: taking over the lock of %s: %s", self.run_dir,
                                 self._describe(rec, age), why or "--force-unlock was given")
        held = self._read()
        if held is not None:
            return self._refusal(held[1], self._fs_now() - held[2])
        return f"{self.run_dir}: could not take the lock (other jobs kept taking it); try again"

    def _create(self) -> bool:
        """Atomically create the lock holding our record; False if it exists."""
        tmp = os.path.join(self.run_dir, f".lock.{self.token}")
        _excl_write(tmp, self._data)
        try:
            return self._place(tmp, self._data)
        finally:
            try:
                os.unlink(tmp)
            except OSError:
                pass

    def _place(self, src: str, data: bytes) -> bool:
        """Link ``src`` (holding ``data``) to the lock name; False if the name is taken."""
        try:
            os.link(src, self.path)
            return True
        except FileExistsError:
            return os.stat(src).st_nlink == 2  # NFS: a retried link whose first try succeeded
        except OSError as exc:
            if exc.errno not in _NO_LINK:
                raise
            return _excl_write(self.path, data)

    def _read(self):
        """(raw bytes, record, mtime) of the lock, or None if there is none."""
        try:
            with open(self.path, "rb") as fh:
                raw, mtime = fh.read(), os.fstat(fh.fileno()).st_mtime
        except FileNotFoundError:
            return None
        return raw, _parse(raw), mtime

    def _fs_now(self) -> float:
        """The file system's current time: the mtime of a probe file created in the run dir."""
        probe = os.path.join(self.run_dir, f".lock.probe.{self.token}")
        fd = os.open(probe, os.O_CREAT | os.O_TRUNC | os.O_WRONLY, 0o644)
        try:
            return os.fstat(fd).st_mtime
        finally:
            os.close(fd)
            os.unlink(probe)

    def _stale(self, rec: dict, age: float) -> str | None:
        pid = rec.get("pid")
        if rec.get("host") == self.host and isinstance(pid, int) and pid > 0:
            if not _alive(pid):
                return f"its process (pid {pid}) on this host has ended"
            start, now = rec.get("pid_start"), _start_time(pid)
            if start is not None and now is not None and start != now:
                return f"pid {pid} on this host now belongs to another process (PID reuse)"
        # Slurm sets SLURM_RESTART_COUNT only once a job has been requeued: none means run 0
        ours, theirs = self.info.get("restart_count"), rec.get("restart_count") or 0
        if rec.get("job_id") is not None and rec.get("job_id") == self.info.get("job_id") and \
                isinstance(ours, int) and isinstance(theirs, int) and ours > theirs:
            return (f"it belongs to run {theirs} of this batch job ({rec['job_id']}), which was "
                    f"requeued (this is run {ours})")
        from ..batch.chain import earlier_segment

        if earlier_segment(self.run_dir, rec.get("job_id"), self.info.get("job_id")):
            return (f"it belongs to batch job {rec['job_id']}, an earlier segment of this run's "
                    "chain, which ended before this one started")
        if age > self.stale_after:
            return f"its last heartbeat is {age:.0f} s old (more than {self.stale_after:g} s)"
        return None

    def _grab(self, expected: bytes, prefix: str) -> bool:
        """Remove the lock if it holds exactly ``expected``: rename it to a private name, check,
        delete; a lock that changed meanwhile is put back.  True if removed."""
        held = self._read()
        if held is None or held[0] != expected:
            return False
        private = os.path.join(self.run_dir, prefix + self.token)
        try:
            os.rename(self.path, private)
        except FileNotFoundError:
            return False
        with open(private, "rb") as fh:
            raw = fh.read()
        if raw == expected:
            os.unlink(private)
            return True
        if self._place(private, raw):  # another job's lock: give it back
            os.unlink(private)
        else:
            self.log.error("%s: moved another job's lock to %s and could not put it back",
                           self.path, private)
        return False

    def _describe(self, rec: dict, age: float) -> str:
        def val(key):
            return "?" if rec.get(key) is None else rec[key]
        return (f"host {val('host')}, pid {val('pid')}, job {val('job_id')}, started "
                f"{val('started')}, last heartbeat {max(age, 0.0):.0f} s ago")

    def _refusal(self, rec: dict, age: float) -> str:
        return (f"{self.run_dir}: locked by another job ({self._describe(rec, age)}); if that job "
                f"is no longer running, run again with --force-unlock (a lock whose heartbeat is "
                f"older than {self.stale_after:g} s, or whose process on this host has ended, is "
                f"taken over automatically)")

    def _beat(self) -> None:
        """Heartbeat thread (rank 0): refresh the lock's mtime while it holds our token."""
        while not self._stop.wait(self.heartbeat):
            if self._touch():
                continue
            # look again shortly: a job checking a lock moves it away for an instant, then back
            if self._stop.wait(min(self.heartbeat, 1.0)):
                return
            if self._touch():
                continue
            self.lost = True
            self.log.error("%s no longer holds this job's lock (removed or taken over by another "
                           "job): another job may be writing the run directory", self.path)
            return

    def _touch(self) -> bool:
        """Refresh the lock's mtime if it holds our token; False if it does not (or is gone)."""
        try:
            with open(self.path, "rb") as fh:
                if _parse(fh.read()).get("token") != self.token:
                    return False
                os.utime(fh.fileno())
        except FileNotFoundError:
            return False
        except OSError as exc:
            self.log.warning("%s: heartbeat failed (%s); trying again", self.path, exc)
        return True
