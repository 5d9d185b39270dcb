"""Checkpoints: one parallel HDF5 file per saved state, written by all ranks together.

File layout (``format = "lattice_hpc-checkpoint"``, ``format_version = 1``)::

    /gauge/links        dataset (ndim, L_t, ..., L_x, N, N), complex128 or complex64: the global
                        field, per direction the sites in the ILDG order (x fastest) -- the field's
                        own memory layout without halos, so each rank moves its block between the
                        file and the interior of its padded array in one collective hyperslab
                        transfer (``mpio``), with no reordering copy; any number of ranks can
                        read it back.
        attrs: group, dims, precision, checksum ("lhpc1 s1 s2", hex; see below)
    /rng                attrs: generator, seed (the generator is counter based: seed + the chain's
                        counters in /chain are its whole state)
    /chain              attrs: state (JSON: step, sweep or trajectory index, ...), config (JSON),
                        config_hash; datasets: named arrays (acceptance history, ...)
    /provenance         attrs: version, git_commit, date, mpi_size, grid, backend, precision, host
    /blobs/<name>       uint8 datasets: named binary blobs (e.g. model weights, loaded with
                        ``torch.load(..., weights_only=True)`` by their owner)
    root attrs: format, format_version, complete = 1 (set last)

The checksum (:func:`.checksums.lattice_checksum_partial`) is two 64-bit position-weighted sums
over the stored words of every link (record ``i = r * ndim + mu`` for site ``r``), computed by
each rank over its block and summed modulo 2^64: independent of the decomposition, and computed
at memory speed (a per-site CRC such as SciDAC's costs more than the I/O itself in Python).

Durability: the file is written under a temporary name in the same directory, flushed, closed and
fsynced, then renamed onto its final name (and the directory fsynced).  A file under a final name
is therefore complete; its checksum is verified on every read.  A write that fails on any rank
(or whose rename fails) removes the temporary file and raises :class:`CheckpointError` naming the
target on every rank; a directory, or a target in a directory that does not exist, is refused
before anything is written.  :class:`CheckpointStore` keeps the last ``keep`` checkpoints of a run
and, on restart, tells two kinds of failure apart:

- **corrupt** (:class:`CheckpointError`), only on positive evidence: a checksum mismatch (HDF5
  returned the data), no ``complete`` mark, another ``format`` attribute, damaged HDF5 structure
  (truncated file, bad signature, a missing dataset or attribute, bad JSON in an attribute) in a
  file that is readable at the OS level: before a structure error is called corruption, every
  rank reads its share of the whole file with ``os.pread`` (:func:`confirm_readable`).  The file
  is reported, renamed ``*.corrupt`` (kept for inspection) and the previous checkpoint is used;
- **could not be read** (:class:`~lattice_hpc.errors.CheckpointUnreadable`): any OS-level error
  on any rank (EACCES, EIO, ESTALE, EISDIR, ENOENT of a file that was listed, ...), found by a
  POSIX preflight on every rank (``open``, ``fstat``, ``pread`` of the first bytes) before h5py
  opens the file, carried by an error of h5py or MPI-IO (an errno, or the OS's text such as
  ``Input/output error``: under the ``mpio`` driver ROMIO reports no errno), or found by the
  whole-file read above.  The ranks decide together: every rank raises it, naming the file, the
  rank(s) and the OS error; nothing is renamed or discarded, and the job can be rerun once the
  file is readable.  Falling back here would silently throw away a valid checkpoint (and, at the
  next save, prune it).

I/O errors inside collective HDF5 calls (the collective dataset write, the metadata writes and
``H5Fclose`` of a write; with ``LATTICE_HPC_H5_READ=collective``, or on one rank by default, the
collective dataset read and the close of a read) end the whole job with status 2
(:func:`lattice_hpc.comm.collective_io`): the library's state is undefined and the other ranks
wait inside the collective.  Nothing is renamed, committed or discarded; the temporary file of a
write is removed by the rank that saw the error (else by the next ``load_latest``).  In the
default independent read mode at several ranks the reads are not collective, and the errors are
classified as above.

Fault points (:mod:`lattice_hpc.faults`): ``checkpoint-write`` (after the field data went out) and
``checkpoint-read`` (right before the preflight's ``pread``, on every rank).

All functions are collective over the field's (or lattice's) communicator.
"""

from __future__ import annotations

import contextlib
import errno
import glob
import json
import os
import re
import stat
import weakref
from dataclasses import dataclass, field as dc_field

import numpy as np

from .. import faults, switches
from ..comm import IO_ERRORS, collective_io, fatal_io_error
from ..comm.fileio import open_h5
from ..errors import CheckpointError, CheckpointUnreadable, FormatError, LatticeError
from ..groups import get_group
from .checksums import lattice_checksum_partial, record_keys, reduce_sum64
from .gaugefile import check_target, finish_write, io_errno, on_root, os_error_text, \
    per_rank, remove_quietly, temporary_name
from .sites import block_geometry
from ..backend import Backend
from ..gauge import GaugeField

FORMAT = "lattice_hpc-checkpoint"
FORMAT_VERSION = 1


class CheckpointMismatch(CheckpointError):
    """A valid checkpoint that does not belong to this job (other lattice, group): never skipped."""


@dataclass
class Checkpoint:
    """A checkpoint as read back (or as handed to :func:`write_checkpoint`)."""

    field: object  # GaugeField
    precision: str = "double"
    state: dict = dc_field(default_factory=dict)
    config: dict | None = None
    config_hash: str | None = None
    rng: dict = dc_field(default_factory=dict)
    arrays: dict = dc_field(default_factory=dict)
    blobs: dict = dc_field(default_factory=dict)
    provenance: dict = dc_field(default_factory=dict)
    path: str | None = None


def field_checksum(links: np.ndarray, lattice) -> str:
    """Collective: checksum ``"lhpc1 <s1> <s2>"`` of interior links ``(ndim, *local, N, N)`` (host,
    stored dtype; a strided view of a padded array is fine)."""
    N = links.shape[-1]
    words = links.view("<u8").reshape(links.shape[:-2] + (N * links.shape[-1] * links.itemsize // 8,))
    s1, s2 = reduce_sum64(lattice.comm, lattice_checksum_partial(words, _record_keys(lattice)))
    return f"lhpc1 {s1:016x} {s2:016x}"


_KEYS = weakref.WeakKeyDictionary()


def _record_keys(lattice):
    """Record keys of this rank's links (``r * ndim + mu``, ``(ndim, *local)``), cached per lattice."""
    keys = _KEYS.get(lattice)
    if keys is None:
        mu = np.arange(lattice.ndim, dtype=np.int64).reshape((-1,) + (1,) * lattice.ndim)
        keys = record_keys(lattice.global_index[None] * lattice.ndim + mu)
        _KEYS[lattice] = keys
    return keys


def _interior_host(U, dtype):
    """``(padded, interior)``: the host copy of ``U.links`` (the array itself on NumPy) and its
    interior in ``dtype`` (a view when the dtype matches, else a contiguous copy)."""
    pad = U.backend.asnumpy(U.links)
    view = U.lattice.view(pad, U.depth, None, lead=1)
    return pad, (view if view.dtype == dtype else view.astype(dtype))


def write_checkpoint(path: str, ckpt: Checkpoint, overwrite: bool = False) -> str:
    """Collective: write ``ckpt`` to ``path`` atomically; returns the field checksum.

    Every rank passes the same metadata (state, config, arrays, blobs); rank 0's copy is used.
    The directory of ``path`` must exist; ``path`` must not be a directory, nor exist unless
    ``overwrite``.  Any failure raises :class:`CheckpointError` naming ``path`` on every rank and
    leaves no temporary file.
    """
    U = ckpt.field
    lat = U.lattice
    comm = lat.comm
    if ckpt.precision not in ("single", "double"):
        raise CheckpointError(f"{path}: precision must be single or double")
    check_target(path, comm, overwrite, CheckpointError, exists_hint="")
    meta = comm.bcast({"state": ckpt.state, "config": ckpt.config, "hash": ckpt.config_hash,
                       "rng": ckpt.rng, "arrays": ckpt.arrays, "blobs": ckpt.blobs,
                       "prov": ckpt.provenance})
    dtype = np.complex64 if ckpt.precision == "single" else np.complex128
    pad, links = _interior_host(U, dtype)
    checksum = field_checksum(links, lat)
    gshape, start, shape = block_geometry(lat)
    tmp = temporary_name(path, comm)

    def collective(what):  # an I/O error inside a collective HDF5 call ends the job (status 2)
        return collective_io(comm, f"{path}: {what}", os_error_text, lambda: remove_quietly(tmp))

    error = None
    f = None
    try:
        try:
            f = open_h5(tmp, "w", comm)
        except IO_ERRORS as exc:
            error = os_error_text(exc)
        _agree_open(comm, f, error, f"{path}: creating the checkpoint (collective)", tmp)
        if f is not None:
            try:
                with collective("writing the field (collective)"):
                    f.attrs["format"] = FORMAT
                    f.attrs["format_version"] = FORMAT_VERSION
                    g = f.create_group("gauge")
                    g.attrs.update({"group": U.group.name, "dims": list(lat.dims),
                                    "precision": ckpt.precision, "checksum": checksum})
                    d = g.create_dataset("links", (lat.ndim,) + gshape + (U.N, U.N), dtype=dtype)
                    sel = (slice(None),) + tuple(slice(s, s + n) for s, n in zip(start, shape))
                    with _transfer(d):
                        if links.flags.c_contiguous:
                            d[sel] = links
                        else:  # the interior of the padded array: HDF5 gathers it (no copy here)
                            d.write_direct(pad, source_sel=_interior_sel(U), dest_sel=sel)
                faults.point("checkpoint-write")  # a Python-level error: handled below
            except IO_ERRORS as exc:
                error = os_error_text(exc)
        # an error on one rank stops every rank here, before the metadata writes (collective
        # under mpio), so that none is left alone in them
        if not any(comm.allgather(error)):
            with collective("writing the metadata (collective)"):
                _write_metadata(f, meta)
    except BaseException:  # not an I/O error (a bug, or an error raised on every rank)
        if comm.rank == 0:
            remove_quietly(tmp)
        raise
    finally:
        if f is not None:
            with collective("closing the written file (collective)"):
                f.close()
    finish_write(comm, tmp, path, error, CheckpointError)
    return checksum


def _agree_open(comm, f, error, what: str, tmp: str | None = None) -> None:
    """Collective, after a collective ``open_h5``: if it failed on some ranks only, end the job
    (the ranks that hold the file could only close it collectively, with ranks that have none)."""
    opened = comm.allgather(f is not None)
    if any(opened) and not all(opened):
        errors = comm.allgather(error)
        if f is None:  # the rank(s) that failed report; their MPI_Abort ends the others
            fatal_io_error(comm, what, per_rank(errors),
                           (lambda: remove_quietly(tmp)) if tmp else None)
        comm.barrier()  # wait to be ended by the failing rank's MPI_Abort


def _write_metadata(f, meta) -> None:
    """Collective: the groups after the field, and the ``complete`` mark last."""
    r = f.create_group("rng")
    r.attrs.update({k: json.dumps(v) if isinstance(v, (dict, list)) else v
                    for k, v in meta["rng"].items()})
    c = f.create_group("chain")
    c.attrs["state"] = json.dumps(meta["state"])
    c.attrs["config"] = json.dumps(meta["config"])
    c.attrs["config_hash"] = meta["hash"] or ""
    for name, arr in meta["arrays"].items():
        c.create_dataset(name, data=np.asarray(arr))
    p = f.create_group("provenance")
    p.attrs.update({k: json.dumps(v) if isinstance(v, (dict, list)) else ("" if v is None else v)
                    for k, v in meta["prov"].items()})
    b = f.create_group("blobs")
    for name, blob in meta["blobs"].items():
        b.create_dataset(name, data=np.frombuffer(bytes(blob), dtype=np.uint8))
    f.attrs["complete"] = 1


# what a read of a damaged file raises in h5py/json (an OSError only without an errno)
_DAMAGE = (OSError, KeyError, ValueError, TypeError, RuntimeError, IndexError)


def _preflight(path: str, fault: bool = True) -> str | None:
    """This rank, before h5py: ``None`` if ``path`` can be opened and read, else the OS error
    (``"EIO: ..."``).  ``os.open``, ``os.fstat`` and ``os.pread`` of the first 8 bytes; the fault
    point ``checkpoint-read`` sits right before the read (``fault``)."""
    try:
        fd = os.open(path, os.O_RDONLY)
        try:
            if stat.S_ISDIR(os.fstat(fd).st_mode):
                raise IsADirectoryError(errno.EISDIR, os.strerror(errno.EISDIR), path)
            if fault:
                faults.point("checkpoint-read")
            os.pread(fd, 8, 0)
        finally:
            os.close(fd)
    except OSError as exc:
        return os_error_text(exc)
    return None


def unreadable(path: str, errors) -> CheckpointUnreadable:
    """The error for ``path`` that could not be read (``errors``: per rank, text or ``None``)."""
    return CheckpointUnreadable(
        f"{path}: could not be read ({per_rank(errors)}): an I/O error, not a corrupt checkpoint; "
        f"nothing was renamed or discarded: rerun the job once the file is readable")


def _damaged(path: str, exc: BaseException) -> str:
    return f"{path}: unreadable checkpoint ({exc}): truncated or corrupt file"


def _probe(path: str) -> tuple:
    """Rank 0 (serial h5py), never raises: ``("ok", head)``, ``("corrupt", message)`` or
    ``("io", OS error text)``."""
    import h5py

    err = _preflight(path, fault=False)
    if err:
        return "io", err
    try:
        with h5py.File(path, "r") as f:
            if f.attrs.get("format") != FORMAT:
                return "corrupt", (f"{path}: not a lattice_hpc checkpoint (format attribute "
                                   f"{f.attrs.get('format')!r})")
            if int(f.attrs.get("complete", 0)) != 1:
                return "corrupt", f"{path}: incomplete checkpoint (no 'complete' mark)"
            g = f["gauge"]
            return "ok", {"dims": tuple(int(v) for v in g.attrs["dims"]),
                          "group": str(g.attrs["group"]), "precision": str(g.attrs["precision"]),
                          "shape": tuple(g["links"].shape)}
    except _DAMAGE as exc:
        if io_errno(exc) is not None:
            return "io", os_error_text(exc)
        return "corrupt", _damaged(path, exc)


def probe(path: str) -> dict:
    """Rank 0 (serial h5py): the field's dims, group and precision.

    Raises :class:`CheckpointError` if the file is corrupt, :class:`CheckpointUnreadable` if it
    could not be read (an OS error)."""
    kind, value = _probe(path)
    if kind == "corrupt":  # only if the whole file reads at the OS level (this process alone)
        err = _read_share(path, 0, 1)
        if err:
            kind, value = "io", err
    if kind == "io":
        raise unreadable(path, [value])
    if kind == "corrupt":
        raise CheckpointError(value)
    return value


CONFIRM_CHUNK = 16 << 20  # bytes per os.pread of confirm_readable


def _read_share(path: str, rank: int, size: int) -> str | None:
    """This rank: read its share (byte range ``rank`` of ``size`` equal ones) of ``path`` with
    ``os.pread`` in chunks of :data:`CONFIRM_CHUNK`; ``None``, or the OS error."""
    where = ""
    try:
        fd = os.open(path, os.O_RDONLY)
        try:
            total = os.fstat(fd).st_size
            share = -(-total // size)
            pos, end = min(total, rank * share), min(total, (rank + 1) * share)
            while pos < end:
                where = f", at byte {pos}"
                data = os.pread(fd, min(CONFIRM_CHUNK, end - pos), pos)
                if not data:  # the file became shorter: what h5py saw is not the OS's fault
                    break
                pos += len(data)
        finally:
            os.close(fd)
    except OSError as exc:
        return os_error_text(exc) + where
    return None


def confirm_readable(path: str, comm) -> list:
    """Collective: every rank reads its share of the whole file at the OS level (``os.pread``,
    byte ranges split over the ranks); the per-rank OS errors (``None`` where none), rank order.

    Run before a structure error of h5py/HDF5 is called corruption: an error that MPI-IO reports
    without an errno (``MPI_File_read_at failed ... Other I/O error``) must not get a readable
    checkpoint renamed ``*.corrupt``.
    """
    return comm.allgather(_read_share(path, comm.rank, comm.size))


def _corrupt(path: str, comm, message: str):
    """Collective: the error for a checkpoint that h5py found damaged: ``CheckpointError``
    (``message``) if the whole file reads at the OS level on every rank, else
    ``CheckpointUnreadable`` naming the rank(s) and the OS error."""
    errors = confirm_readable(path, comm)
    if any(errors):
        return unreadable(path, errors)
    return CheckpointError(message)


def read_checkpoint(path: str, lattice, backend=None) -> Checkpoint:
    """Collective: read the checkpoint ``path`` onto ``lattice`` (any process grid).

    The field comes back with a stale halo (call ``refresh()`` before reading neighbours).

    Every rank raises the same error:
    :class:`~lattice_hpc.errors.CheckpointUnreadable` if the file could not be read on some rank
    (an OS error: permission, EIO, ...); :class:`CheckpointMismatch` if it is a valid checkpoint
    of a lattice of other dimensions; :class:`CheckpointError` if it is corrupt (damaged HDF5
    structure, truncated, incomplete, not a checkpoint, checksum mismatch).
    """
    comm = lattice.comm
    # 1. every rank: can the file be read at all (before h5py, whose errors say less)?
    errors = comm.allgather(_preflight(path))
    if any(errors):
        raise unreadable(path, errors)
    # 2. rank 0: the header
    try:
        kind, head = on_root(comm, _probe, path)
    except FormatError as exc:  # not expected: _probe reports instead of raising
        raise CheckpointError(str(exc)) from None
    if kind == "io":
        raise unreadable(path, [head] + [None] * (comm.size - 1))
    if kind == "corrupt":
        raise _corrupt(path, comm, head)
    if tuple(head["dims"]) != tuple(lattice.dims):
        raise CheckpointMismatch(f"{path}: checkpoint of a {','.join(map(str, head['dims']))} lattice, "
                              f"but this job's lattice is {','.join(map(str, lattice.dims))}")
    try:
        group = get_group(head["group"])
    except (LatticeError, KeyError, ValueError) as exc:
        raise CheckpointError(f"{path}: gauge group {head['group']!r} unknown ({exc}): corrupt "
                              f"checkpoint") from None
    expect = (lattice.ndim,) + tuple(reversed(lattice.dims)) + (group.N, group.N)
    if head["shape"] != expect:
        raise CheckpointError(f"{path}: gauge/links has shape {head['shape']}, expected {expect}")
    _gshape, start, shape = block_geometry(lattice)
    sel = (slice(None),) + tuple(slice(s, s + n) for s, n in zip(start, shape))
    precision = head["precision"]
    stored = np.complex64 if precision == "single" else np.complex128
    backend = backend or Backend("numpy", "double")
    field = GaugeField(lattice, group, backend, depth=1)
    host = field.links if backend.name == "numpy" and field.links.dtype == stored else \
        np.zeros(field.links.shape, dtype=stored)

    def classify(exc):
        return ("io", os_error_text(exc)) if io_errno(exc) is not None else \
            ("corrupt", _damaged(path, exc))

    # 3. every rank: its block.  Each step ends in the same collectives on every rank (an error on
    # one rank must not leave the others waiting in a collective read or the checksum reduction).
    # A collective read (LATTICE_HPC_H5_READ=collective; auto on one rank) and the close after it
    # run inside collective_io: an I/O error there ends the job (status 2).  Independent reads
    # fail on their own rank and are classified.
    error = None
    f = None
    try:
        f = open_h5(path, "r", comm)
    except _DAMAGE as exc:
        error = classify(exc)
    _agree_open(comm, f, error and error[1], f"{path}: opening the checkpoint (collective)")
    if f is not None:  # on every rank (_agree_open)
        together = _read_mode(f, comm.size) == "collective"
        d = None
        try:
            d = f["gauge/links"]
        except _DAMAGE as exc:
            error = classify(exc)
        # a collective read needs every rank: all read, or none does
        if (all(comm.allgather(d is not None)) if together else d is not None):
            try:
                with collective_io(comm, f"{path}: reading the field (collective)", os_error_text) \
                        if together else contextlib.nullcontext():
                    # straight into the interior of the padded array
                    with _transfer(d, comm.size, read=True):
                        d.read_direct(host, source_sel=sel, dest_sel=_interior_sel(field))
            except _DAMAGE as exc:  # an independent read (a collective one ended the job)
                error = classify(exc)
        if error is None:
            try:
                stored_sum = str(f["gauge"].attrs["checksum"])
                state = json.loads(f["chain"].attrs["state"])
                config = json.loads(f["chain"].attrs["config"])
                chash = str(f["chain"].attrs["config_hash"]) or None
                arrays = {k: np.asarray(v[()]) for k, v in f["chain"].items()}
                rng = {k: _attr(v) for k, v in f["rng"].attrs.items()}
                prov = {k: _attr(v) for k, v in f["provenance"].attrs.items()}
                blobs = {k: bytes(np.asarray(v[()]).tobytes()) for k, v in f["blobs"].items()}
            except _DAMAGE as exc:
                error = classify(exc)
        if together:
            with collective_io(comm, f"{path}: closing after the read (collective)", os_error_text):
                f.close()
        else:  # collective too, but every rank reaches it
            try:
                f.close()
            except _DAMAGE as exc:
                error = error or classify(exc)
    errors = comm.allgather(error)
    if any(e and e[0] == "io" for e in errors):
        raise unreadable(path, [e[1] if e and e[0] == "io" else None for e in errors])
    if any(errors):  # corrupt, if the file reads at the OS level on every rank
        raise _corrupt(path, comm, next(e[1] for e in errors if e))
    # 4. all ranks: the checksum of the whole field
    checksum = field_checksum(lattice.view(host, 1, None, lead=1), lattice)
    if checksum != stored_sum:
        raise CheckpointError(f"{path}: checksum mismatch: stored {stored_sum}, data "
                              f"{checksum}: corrupt checkpoint")
    if host is not field.links:
        field.set_interior(backend.asarray(lattice.view(host, 1, None, lead=1)))
    field.mark_stale()  # the halo is not read: refresh() before using neighbours
    return Checkpoint(field, precision, state, config, chash, rng, arrays, blobs, prov, path)


def _interior_sel(U):
    """Selection of the interior of ``U.links`` (for HDF5 ``read_direct``/``write_direct``)."""
    h = U.depth
    return (slice(None),) + tuple(slice(h, h + L) for L in reversed(U.lattice.local_dims))


def _read_mode(f, nranks: int) -> str | None:
    """``"collective"`` or ``"independent"``: the MPI-IO mode of dataset reads of the open file
    ``f`` under the ``mpio`` driver (see :func:`_transfer`); ``None`` under another driver."""
    if f.driver != "mpio":
        return None
    mode = switches.get("LATTICE_HPC_H5_READ")
    if mode == "auto":
        mode = "collective" if nranks == 1 else "independent"
    return mode


def _transfer(dset, nranks: int = 1, read: bool = False):
    """MPI-IO transfer mode under the ``mpio`` driver (plain I/O otherwise).

    Writes are collective.  Reads follow ``LATTICE_HPC_H5_READ`` = ``collective`` |
    ``independent`` | ``auto`` (default: collective on one rank, independent on several).  Measured
    on a 2-core node with a local disk (24^4 field into the halo-padded array): one rank 28 ms
    collective vs 52 ms independent; two ranks 49 ms collective (ROMIO's two-phase aggregation)
    vs 26 ms independent.  On a parallel file system at scale, ``collective`` may win: measure with
    ``lattice-hpc bench io``.
    """
    if dset.file.driver != "mpio":
        return contextlib.nullcontext()
    mode = _read_mode(dset.file, nranks) if read else "collective"
    return dset.collective if mode == "collective" else contextlib.nullcontext()


def _attr(v):
    if isinstance(v, bytes):
        v = v.decode()
    if isinstance(v, str) and v[:1] in "[{":
        try:
            return json.loads(v)
        except ValueError:
            return v
    return v.item() if isinstance(v, np.generic) else v


class CheckpointStore:
    """The checkpoints of one run: ``DIR/ckpt_<step>.h5``, the newest ``keep`` kept.

    Collective methods (all ranks call them together); rank 0 does the directory work and
    broadcasts its outcome, so an error there is raised on every rank.
    """

    PATTERN = re.compile(r"ckpt_(\d{8})\.h5$")

    def __init__(self, directory: str, comm, keep: int = 2, log=None, writer: bool = True):
        if keep < 1:
            raise CheckpointError(f"checkpoint.keep = {keep} must be >= 1")
        self.dir, self.comm, self.keep, self.log = directory, comm, keep, log
        self.writer = writer  # False on the ranks of data-parallel replicas other than the first

    def path(self, step: int) -> str:
        return os.path.join(self.dir, f"ckpt_{step:08d}.h5")

    def _list(self) -> list[str]:
        """Rank 0: checkpoint paths, newest first (``[]`` if the directory does not exist);
        raises ``OSError`` if it cannot be listed."""
        try:
            names = os.listdir(self.dir)
        except FileNotFoundError:
            return []
        return sorted((os.path.join(self.dir, n) for n in names if self.PATTERN.fullmatch(n)),
                      reverse=True)

    def list(self) -> list[str]:
        """Collective: checkpoint paths, newest first.

        Raises :class:`~lattice_hpc.errors.CheckpointUnreadable` on every rank if the directory
        exists but cannot be listed (an OS error other than "does not exist")."""
        def listing():
            try:
                return self._list()
            except OSError as exc:
                raise CheckpointUnreadable(
                    f"{self.dir}: the checkpoint directory could not be listed (rank 0: "
                    f"{os_error_text(exc)}): an I/O error; nothing was renamed or discarded: rerun "
                    "the job once it is readable") from None
        return self.comm.on_root(listing, catch=(CheckpointUnreadable,))

    def _warn(self, msg, *args) -> None:
        if self.log:
            self.log.warning(msg, *args)

    def save(self, step: int, ckpt: Checkpoint) -> str:
        """Collective: write checkpoint ``step`` (atomically), then drop all but the newest ``keep``."""
        path = self.path(step)
        def makedir():
            try:
                os.makedirs(self.dir, exist_ok=True)
            except OSError as exc:
                raise CheckpointError(f"{self.dir}: cannot create the checkpoint directory "
                                      f"({os_error_text(exc)})") from None
        self.comm.on_root(makedir, catch=(CheckpointError,))
        if self.comm.size == ckpt.field.lattice.comm.size:
            checksum = write_checkpoint(path, ckpt, overwrite=True)
        else:  # replicas hold the same field: the first one writes, every rank learns the outcome
            res = None
            if self.writer:
                try:
                    res = (True, write_checkpoint(path, ckpt, overwrite=True))
                except CheckpointError as exc:
                    res = (False, exc)
            ok, checksum = self.comm.bcast(res)
            if not ok:
                raise checksum
        if self.comm.rank == 0:
            try:
                old = self._list()[self.keep:]
            except OSError as exc:
                old = []
                self._warn("%s: cannot list old checkpoints to prune them (%s)", self.dir,
                           os_error_text(exc))
            for p in old:
                try:
                    os.remove(p)
                except OSError as exc:
                    self._warn("%s: cannot remove this old checkpoint (%s)", p, os_error_text(exc))
        self.comm.barrier()
        if self.log:
            self.log.info("checkpoint %s written (checksum %s)", path, checksum)
        return path

    def load_latest(self, lattice, backend=None) -> Checkpoint | None:
        """Collective: the newest checkpoint that reads back with a valid checksum, or ``None``.

        A corrupt checkpoint (:class:`CheckpointError`) is reported, renamed to ``*.corrupt``
        (kept for inspection, never used or pruned again) and the previous one is tried.  One
        that could not be read (:class:`~lattice_hpc.errors.CheckpointUnreadable`, an OS error on
        any rank), a directory that cannot be listed, and a checkpoint of another job
        (:class:`CheckpointMismatch`) raise on every rank with nothing renamed, discarded or
        deleted.  Leftover temporary files of an interrupted write (never valid) are removed.
        """
        if self.comm.rank == 0:
            for tmp in glob.glob(os.path.join(glob.escape(self.dir), ".ckpt_*.h5.partial-*")):
                try:
                    os.remove(tmp)
                except OSError as exc:
                    self._warn("cannot remove %s, left by an interrupted checkpoint write (%s)", tmp,
                               os_error_text(exc))
                else:
                    self._warn("removed %s, left by an interrupted checkpoint write", tmp)
        for path in self.list():
            try:
                return read_checkpoint(path, lattice, backend)
            except (CheckpointMismatch, CheckpointUnreadable):
                raise
            except CheckpointError as exc:
                self._warn("%s; falling back to the previous checkpoint", exc)
                if self.comm.rank == 0:
                    try:
                        os.replace(path, path + ".corrupt")
                    except OSError as err:
                        self._warn("%s: cannot rename it to *.corrupt (%s)", path, os_error_text(err))
                self.comm.barrier()
        return None
