"""The run directory of a job: what it holds and how it is written (rank 0 writes).

Files:
- ``lock``           -- the lock of the job that owns the directory (:mod:`.lock`);
- ``config.json``    -- the resolved configuration of the latest segment and its hash, written
  only once the segment has started for real (everything validated, the chain set up);
- ``history.jsonl``  -- one line per start or resume: date, ranks, grid, step, configuration hash;
- ``records.jsonl``  -- one JSON object per measured step (step index, observables, seconds),
  appended to across segments of the run;
- ``summary.json``   -- ``[mean, error]`` per observable over all records (replaced atomically);
- ``checkpoints/``   -- the newest checkpoints (:class:`lattice_hpc.io.CheckpointStore`).

Resuming keeps exactly the records that the checkpoint has seen (its ``records`` count); records
written after that checkpoint by an interrupted segment, and a last line torn by a kill in the
middle of its append, are moved, never deleted, to ``records.discarded.jsonl`` (the resumed chain
recomputes them).  A records file that cannot be read (an I/O error) stops the job on every rank
with :class:`~lattice_hpc.errors.CheckpointUnreadable`; nothing is rewritten then.
"""

from __future__ import annotations

import json
import os

from .. import faults
from ..errors import CheckpointUnreadable, ConfigError


class RunDir:
    """Collective methods (``previous``, ``start``, ``read_records``) are called by all ranks;
    rank 0 does the file work and every rank raises the same error."""

    def __init__(self, path: str, comm):
        self.path = path
        self.comm = comm
        self.writer = comm.rank == 0
        self._records = None
        self.count = 0

    def file(self, name: str) -> str:
        return os.path.join(self.path, name)

    def _on_root(self, fn, *args):
        """Run ``fn`` on rank 0; its result, or its error raised on every rank (an OS error as
        :class:`~lattice_hpc.errors.CheckpointUnreadable`)."""
        def guarded():
            try:
                return fn(*args)
            except OSError as exc:
                raise CheckpointUnreadable(
                    f"{getattr(exc, 'filename', None) or self.path}: could not be read or written "
                    f"({exc.strerror or exc}); nothing was changed: run again once the file system "
                    "answers") from None
        return self.comm.on_root(guarded, catch=(ConfigError, CheckpointUnreadable))

    def previous(self) -> dict | None:
        """Collective: the saved ``config.json`` of an earlier segment, or ``None``."""
        def load():
            try:
                with open(self.file("config.json")) as fh:
                    text = fh.read()
            except FileNotFoundError:
                return None
            try:
                return json.loads(text)
            except ValueError as exc:
                raise ConfigError(f"{self.file('config.json')}: not valid JSON ({exc}); move the "
                                  "run directory away or repair the file") from None
        return self._on_root(load)

    def start(self, cfg: dict, chash: str, meta: dict, keep_records: int) -> None:
        """Collective: keep the first ``keep_records`` records, write config.json, log the start."""
        def write():
            os.makedirs(self.path, exist_ok=True)
            self._trim_records(keep_records)
            _write_atomic(self.file("config.json"),
                          json.dumps({"config": cfg, "config_hash": chash, **meta}, indent=1,
                                     sort_keys=True))
            _append(self.file("history.jsonl"), json.dumps({"config_hash": chash, **meta,
                                                            "config": cfg}) + "\n")
            self._records = os.open(self.file("records.jsonl"), os.O_WRONLY | os.O_APPEND | os.O_CREAT,
                                    0o666)
        self._on_root(write)
        self.count = keep_records

    def _trim_records(self, keep: int) -> None:
        path = self.file("records.jsonl")
        try:
            with open(path, "rb") as fh:
                data = fh.read()
        except FileNotFoundError:
            if keep:
                raise ConfigError(f"{path} is missing, but the checkpoint has seen {keep} records") \
                    from None
            return
        lines = data.split(b"\n")
        torn = lines.pop()  # empty, or a last line without its newline: torn by a kill
        lines = [ln for ln in lines if ln.strip()]
        if len(lines) < keep:
            raise ConfigError(f"{path} holds {len(lines)} records, but the checkpoint has seen "
                              f"{keep}: records were lost; move the run directory away")
        extra = lines[keep:] + ([torn] if torn.strip() else [])
        if not extra:
            return
        _append(self.file("records.discarded.jsonl"), b"".join(ln + b"\n" for ln in extra))
        _write_atomic(path, b"".join(ln + b"\n" for ln in lines[:keep]))

    def record(self, rec: dict) -> None:
        """Rank 0: append one record (one ``write`` of the whole line)."""
        self.count += 1
        if self.writer:
            line = (json.dumps(rec) + "\n").encode()
            if faults.armed("record-append"):  # test: half the line reaches the file, then the kill
                os.write(self._records, line[: len(line) // 2])
            faults.point("record-append")
            os.write(self._records, line)

    def read_records(self) -> list[dict]:
        """Collective: all records of the run (every segment), on every rank."""
        def load():
            with open(self.file("records.jsonl")) as fh:
                return [json.loads(ln) for ln in fh if ln.strip()]
        return self._on_root(load)

    def finish(self, summary: dict) -> None:
        """Rank 0: close the records and write ``summary.json`` (atomically)."""
        if not self.writer:
            return
        if self._records is not None:
            os.close(self._records)
            self._records = None
        _write_atomic(self.file("summary.json"), json.dumps(summary, indent=1))


def _write_atomic(path: str, data) -> None:
    """Write ``data`` (str or bytes) to ``path`` through a synced temporary file and a rename."""
    tmp = path + ".tmp"
    with open(tmp, "wb") as fh:
        fh.write(data.encode() if isinstance(data, str) else data)
        fh.flush()
        os.fsync(fh.fileno())
    os.replace(tmp, path)


def _append(path: str, data) -> None:
    """Append ``data`` with one ``write`` and sync it."""
    fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o666)
    try:
        os.write(fd, data.encode() if isinstance(data, str) else data)
        os.fsync(fd)
    finally:
        os.close(fd)
