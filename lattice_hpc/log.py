"""Rank-aware logging: rank 0 logs at INFO, other ranks only warnings; records carry ``rank/size``.

Logs go to stderr; results meant for programs go to stdout as one JSON object (CONVENTIONS.md).
"""

from __future__ import annotations

import logging
import sys


def get_logger(comm, name: str = "lattice_hpc") -> logging.Logger:
    """A logger for this rank (INFO on rank 0, WARNING elsewhere)."""
    logger = logging.getLogger(f"{name}.r{comm.rank}")
    if not logger.handlers:
        handler = logging.StreamHandler(sys.stderr)
        fmt = f"%(asctime)s [{comm.rank}/{comm.size}] %(levelname)s %(message)s"
        handler.setFormatter(logging.Formatter(fmt, datefmt="%H:%M:%S"))
        logger.addHandler(handler)
        logger.propagate = False
    logger.setLevel(logging.INFO if comm.rank == 0 else logging.WARNING)
    return logger
