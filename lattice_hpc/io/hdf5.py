"""HDF5 gauge files: lattice_hpc checkpoints read and written as a configuration format.

``lattice-hpc convert IN OUT --to hdf5`` writes a checkpoint (:mod:`.checkpoint`) that holds only
the field and its provenance; ``measure`` reads the field of any checkpoint and verifies its
checksum.

Errors are :class:`~lattice_hpc.errors.FormatError` (the format API's error) that keep the
checkpoint's message, so the two kinds stay apart: a corrupt file ("truncated or corrupt",
"checksum mismatch", ...) and a file that could not be read because of an OS error ("could not be
read (rank 1: EIO: ...): an I/O error, not a corrupt checkpoint").  An I/O error inside a
collective HDF5 call (a collective read or write, the close) raises nothing: it ends the whole job
with status 2 (:func:`lattice_hpc.comm.collective_io`), and a failed write leaves no temporary
file.
"""

from __future__ import annotations

from ..errors import CheckpointUnreadable, FormatError
from .checkpoint import Checkpoint, CheckpointError, probe as probe_checkpoint, read_checkpoint, \
    write_checkpoint
from .gaugefile import FileInfo


def probe(path: str, size: int) -> FileInfo:
    try:
        head = probe_checkpoint(path)
    except (CheckpointError, CheckpointUnreadable) as exc:
        raise FormatError(str(exc)) from None
    return FileInfo(path, "hdf5", head["dims"], head["precision"], "=", group=head["group"])


def read_field(info: FileInfo, lattice, backend):
    """Collective: the field of checkpoint ``info.path`` (checksum verified)."""
    try:
        ck = read_checkpoint(info.path, lattice, backend)
    except (CheckpointError, CheckpointUnreadable) as exc:
        raise FormatError(str(exc)) from None
    info.meta = {"provenance": ck.provenance}
    ck.field.refresh()
    return ck.field, "ok"


def write(path: str, field, precision: str, meta: dict) -> FileInfo:
    """Collective: write ``field`` as a checkpoint without chain state (a failed write raises
    :class:`FormatError` naming ``path`` on every rank and leaves no temporary file)."""
    lat = field.lattice
    prov = {"creator": "lattice_hpc convert", "mpi_size": lat.comm.size, "grid": list(lat.grid.dims),
            **meta}
    # write_gauge has already refused an existing path unless told to overwrite, and a directory
    try:
        checksum = write_checkpoint(path, Checkpoint(field, precision, provenance=prov),
                                    overwrite=True)
    except CheckpointError as exc:
        raise FormatError(str(exc)) from None
    return FileInfo(path, "hdf5", lat.dims, precision, "=", group=field.group.name,
                    checks={"checksum": checksum})
