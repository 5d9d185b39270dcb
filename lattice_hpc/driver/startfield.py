"""The start field of a new chain: ``update.start = cold | hot | near_identity | PATH``.

``PATH`` is a gauge configuration in any format that ``lattice-hpc measure`` reads (NERSC,
ILDG/SciDAC LIME, MILC, openQCD, or a lattice_hpc HDF5 file, which includes the checkpoints of
another run): thermalize with one algorithm and continue with another, or start from a public
ensemble.  The file is checked (header, dimensions, group, checksum) before anything of the run
directory is written, read in parallel onto the job's process grid, and recorded in the run's
provenance (``config.json`` and ``history.jsonl``, key ``start``) with its SHA-256 and the
decomposition-independent checksum of the field as loaded (:func:`lattice_hpc.io.checkpoint.
field_checksum`), so a chain can always be traced to the exact field it started from.
A relative path is relative to the working directory, as ``output.dir`` is.
"""

from __future__ import annotations

import hashlib
import os

from ..errors import ConfigError, FormatError
from ..gauge import GaugeField
from ..io.gaugefile import on_root, probe, read_gauge
from .config import START_KINDS


def is_file_start(cfg: dict) -> bool:
    return cfg["update"]["start"] not in START_KINDS


def check_start_file(cfg: dict, lattice) -> None:
    """Collective: a start file must exist, be readable and hold this job's lattice and group."""
    if not is_file_start(cfg):
        return
    path = cfg["update"]["start"]
    try:
        info = on_root(lattice.comm, probe, path)
    except FormatError as exc:
        raise ConfigError(f"update.start = {path!r}: {exc} (give cold, hot, near_identity or the "
                          "path of a gauge configuration)") from None
    if tuple(info.dims) != tuple(lattice.dims):
        raise ConfigError(f"update.start = {path!r}: the file holds a "
                          f"{','.join(map(str, info.dims))} lattice, but lattice.dims = "
                          f"{','.join(map(str, lattice.dims))}")
    if info.group != cfg["action"]["group"]:
        raise ConfigError(f"update.start = {path!r}: the file holds {info.group} links, but "
                          f"action.group = {cfg['action']['group']!r}")


def start_field(cfg: dict, lattice, group, backend, rng) -> tuple[GaugeField, dict | None]:
    """Collective: the start field (halo fresh) and, for a file, its provenance record."""
    start = cfg["update"]["start"]
    if start == "cold":
        U = GaugeField.cold(lattice, group, backend)
    elif start == "hot":
        U = GaugeField.hot(lattice, group, rng, backend)
    elif start == "near_identity":
        U = GaugeField.near_identity(lattice, group, rng, 0.2, backend)
    else:
        return _from_file(start, lattice, group, backend)
    U.refresh()
    return U, None


def _from_file(path: str, lattice, group, backend):
    from ..io.checkpoint import field_checksum

    grid = ",".join(map(str, lattice.grid.dims))
    cfg = read_gauge(path, lattice.comm, grid, "auto", backend)
    U = GaugeField(lattice, group, backend)
    U.set_interior(cfg.field.interior())
    U.refresh()
    host = backend.asnumpy(lattice.view(U.links, U.depth, None, lead=1))
    prov = {"path": os.path.abspath(path), "format": cfg.info.format,
            "precision": cfg.info.precision, "file_checksum": cfg.checksum,
            "field_checksum": field_checksum(host, lattice),
            "sha256": on_root(lattice.comm, _sha256, path), "bytes": on_root(lattice.comm, os.path.getsize, path)}
    return U, prov


def _sha256(path: str) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 24), b""):
            h.update(chunk)
    return h.hexdigest()
