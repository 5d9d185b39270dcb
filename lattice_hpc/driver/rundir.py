"""The run directory of a job: what it holds and how it is written (rank 0 writes).

Files:
- ``config.json``    -- the resolved configuration of the latest segment and its hash;
- ``history.jsonl``  -- one line per start or resume: date, ranks, grid, step, configuration hash;
- ``records.jsonl``  -- one JSON object per measured step (step index, observables, seconds),
  appended to across segments of the run;
- ``summary.json``   -- ``[mean, error]`` per observable over all records;
- ``checkpoints/``   -- the newest checkpoints (:class:`lattice_hpc.io.CheckpointStore`).

Resuming keeps exactly the records that the checkpoint has seen (its ``records`` count); records
written after that checkpoint by an interrupted segment are moved, never deleted, to
``records.discarded.jsonl`` (the resumed chain recomputes them).
"""

from __future__ import annotations

import json
import os

from ..errors import ConfigError


class RunDir:
    """Methods that write act on rank 0; ``previous`` and ``read_records`` are collective."""

    def __init__(self, path: str, comm):
        self.path = path
        self.comm = comm
        self.writer = comm.rank == 0
        self._records = None
        self.count = 0

    def file(self, name: str) -> str:
        return os.path.join(self.path, name)

    def previous(self) -> dict | None:
        """Collective: the saved ``config.json`` of an earlier segment, or ``None``."""
        def load():
            try:
                with open(self.file("config.json")) as fh:
                    return ("ok", json.load(fh))
            except FileNotFoundError:
                return ("ok", None)
            except (OSError, ValueError) as exc:
                return ("err", f"{self.file('config.json')}: unreadable ({exc}); move the run "
                               f"directory away or repair the file")
        res = self.comm.bcast(load() if self.writer else None)
        if res[0] == "err":
            raise ConfigError(res[1])
        return res[1]

    def start(self, cfg: dict, chash: str, meta: dict, keep_records: int) -> None:
        """Rank 0: write config.json, log the start, keep the first ``keep_records`` records."""
        if self.writer:
            os.makedirs(self.path, exist_ok=True)
            with open(self.file("config.json") + ".tmp", "w") as fh:
                json.dump({"config": cfg, "config_hash": chash, **meta}, fh, indent=1, sort_keys=True)
            os.replace(self.file("config.json") + ".tmp", self.file("config.json"))
            with open(self.file("history.jsonl"), "a") as fh:
                fh.write(json.dumps({"config_hash": chash, **meta, "config": cfg}) + "\n")
            self._trim_records(keep_records)
            self._records = open(self.file("records.jsonl"), "a")
        self.count = keep_records
        self.comm.barrier()

    def _trim_records(self, keep: int) -> None:
        path = self.file("records.jsonl")
        if not os.path.exists(path):
            if keep:
                raise ConfigError(f"{path} is missing, but the checkpoint has seen {keep} records")
            return
        with open(path) as fh:
            lines = [ln for ln in fh.read().splitlines() if ln.strip()]
        if len(lines) < keep:
            raise ConfigError(f"{path} holds {len(lines)} records, but the checkpoint has seen "
                              f"{keep}: records were lost; move the run directory away")
        if len(lines) == keep:
            return
        with open(self.file("records.discarded.jsonl"), "a") as fh:
            fh.write("".join(ln + "\n" for ln in lines[keep:]))
            fh.flush()
            os.fsync(fh.fileno())
        with open(path + ".tmp", "w") as fh:
            fh.write("".join(ln + "\n" for ln in lines[:keep]))
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(path + ".tmp", path)

    def record(self, rec: dict) -> None:
        self.count += 1
        if self.writer:
            self._records.write(json.dumps(rec) + "\n")
            self._records.flush()

    def read_records(self) -> list[dict]:
        """Collective: all records of the run (every segment), on every rank."""
        def load():
            if self._records is not None:
                self._records.flush()
            with open(self.file("records.jsonl")) as fh:
                return [json.loads(ln) for ln in fh if ln.strip()]
        return self.comm.bcast(load() if self.writer else None)

    def finish(self, summary: dict) -> None:
        if not self.writer:
            return
        self._records.close()
        with open(self.file("summary.json"), "w") as fh:
            json.dump(summary, fh, indent=1)
