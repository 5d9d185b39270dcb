"""The run directory of a job: what it holds and how it is written (rank 0 only).

Files:
- ``config.json``   -- the resolved configuration and its hash;
- ``records.jsonl`` -- one JSON object per measured sweep (sweep index, observables, seconds);
- ``summary.json``  -- ``[mean, error]`` per observable over the measured part of the chain.

A run directory that already holds records is never overwritten: the job stops with an error
that names it (resuming from checkpoints belongs to the checkpoint layer).
"""

from __future__ import annotations

import json
import os

from ..errors import ConfigError


class RunDir:
    """Rank 0 writes; other ranks hold a ``RunDir`` whose methods do nothing."""

    def __init__(self, path: str, writer: bool):
        self.path = path
        self.writer = writer
        self._records = None

    def check_fresh(self) -> None:
        """Raise (on every rank: the file system is shared) if records already exist here."""
        if os.path.exists(os.path.join(self.path, "records.jsonl")):
            raise ConfigError(f"run directory {self.path} already holds records.jsonl; refusing to "
                              f"overwrite it: choose another output.dir or move the old run away")

    def create(self, cfg: dict, chash: str, meta: dict) -> None:
        if not self.writer:
            return
        os.makedirs(self.path, exist_ok=True)
        with open(os.path.join(self.path, "config.json"), "w") as fh:
            json.dump({"config": cfg, "config_hash": chash, **meta}, fh, indent=1, sort_keys=True)
        self._records = open(os.path.join(self.path, "records.jsonl"), "x")

    def record(self, rec: dict) -> None:
        if self.writer:
            self._records.write(json.dumps(rec) + "\n")
            self._records.flush()

    def finish(self, summary: dict) -> None:
        if not self.writer:
            return
        self._records.close()
        with open(os.path.join(self.path, "summary.json"), "w") as fh:
            json.dump(summary, fh, indent=1)
