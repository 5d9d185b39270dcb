"""Reading and writing gauge configurations in the community formats, in parallel.

    cfg = read_gauge(path, comm, grid="auto", fmt="auto")     # collective
    write_gauge(path, cfg.field, fmt="ildg", precision="single")  # collective

Reading is done in three steps, each collective over the job's communicator:

1. rank 0 reads the header, checks it against the file size, and broadcasts a :class:`FileInfo`
   (or the error, which every rank then raises: the message names the file and the problem);
2. every rank reads its own block of the data section (:class:`lattice_hpc.comm.fileio.BlockFile`)
   and computes its part of the file's checksum; the parts are reduced over ranks.  An I/O error
   on any rank raises :class:`~lattice_hpc.errors.FormatError` on every rank: ``PATH: could not
   be read (rank 1: EIO: ...): an I/O error, not a damaged file``;
3. the field is built, and the checksum and the header's plaquette and link trace are compared
   with the data.  Any mismatch raises :class:`~lattice_hpc.errors.FormatError` on every rank.

Writing goes to a temporary name next to the target, is flushed to stable storage, and is renamed
onto the target only when complete; an existing target is never replaced unless ``overwrite``.
A target that is a directory (also with ``overwrite``) or whose parent directory does not exist is
refused before anything is written.  If the write or the final rename fails on any rank, rank 0
removes the temporary file and every rank raises :class:`~lattice_hpc.errors.FormatError` naming
the target, the rank(s) and the OS error: a failed write leaves nothing behind.

Format modules (``nersc``, ``ildg``, ``milc``, ``openqcd``, ``hdf5``) provide ``probe(path, size)``
(rank 0, header only) and optionally ``read_block``/``verify``/``write``; the common site-major
data layout (x fastest, per site the ``ndim`` directions, each ``rows x N`` complex numbers) is
decoded and encoded here.
"""

from __future__ import annotations

import os
import socket
from dataclasses import dataclass, field as dc_field

import numpy as np

from ..comm.fileio import BlockFile, BlockFileError, file_size, os_error_text, per_rank
from ..comm.fileio import io_errno  # noqa: F401 - re-exported (checkpoint, tests)
from ..errors import FormatError, LatticeError
from ..gauge import GaugeField, link_trace, plaquette
from ..geometry import Lattice
from ..groups import get_group
from .checksums import nersc_partial, reduce_sum32, reduce_xor, scidac_partial
from .sites import block_geometry, field_to_sites, sites_to_field

FORMATS = ("nersc", "ildg", "milc", "openqcd", "hdf5")
# header plaquette / link trace must match the data to this (files store ~10 digits, some writers
# compute them in single precision)
HEADER_TOLERANCE = 1e-6


@dataclass
class FileInfo:
    """What a file's header says; built on rank 0 and broadcast (small, picklable)."""

    path: str
    format: str
    dims: tuple
    precision: str  # "single" | "double"
    byteorder: str = ">"  # byte order of the stored floats
    rows: int = 3  # stored rows per matrix (NERSC 4D_SU3_GAUGE stores 2)
    data_offset: int = 0
    group: str = "SU3"
    checks: dict = dc_field(default_factory=dict)  # header values that the data must reproduce
    meta: dict = dc_field(default_factory=dict)  # everything else worth reporting

    @property
    def ndim(self) -> int:
        return len(self.dims)

    @property
    def N(self) -> int:
        return get_group(self.group).N

    @property
    def itemsize(self) -> int:
        return 4 if self.precision == "single" else 8

    @property
    def site_bytes(self) -> int:
        return self.ndim * self.rows * self.N * 2 * self.itemsize

    @property
    def data_bytes(self) -> int:
        return int(np.prod(self.dims)) * self.site_bytes

    @property
    def dtype(self) -> np.dtype:
        return np.dtype(f"{self.byteorder}f{self.itemsize}")


@dataclass
class GaugeConfig:
    """A configuration read from a file: the field (double precision) and what the file said."""

    field: GaugeField
    info: FileInfo
    checksum: str  # "ok" | "absent"


# -- encoding -------------------------------------------------------------------------------------
def decode(raw: np.ndarray, info: FileInfo) -> np.ndarray:
    """``uint8 (..., site_bytes)`` -> complex128 ``(..., ndim, N, N)`` (third row rebuilt if 2 stored)."""
    vals = np.ascontiguousarray(raw).view(info.dtype).astype(np.float64)
    vals = vals.reshape(raw.shape[:-1] + (info.ndim, info.rows, info.N, 2))
    m = vals[..., 0] + 1j * vals[..., 1]
    if info.rows == info.N:
        return m
    if info.rows != 2 or info.N != 3:
        raise FormatError(f"{info.path}: {info.rows} stored rows of SU({info.N}) cannot be decoded")
    third = np.conj(np.cross(m[..., 0, :], m[..., 1, :]))
    return np.concatenate([m, third[..., None, :]], axis=-2)


def encode(sites: np.ndarray, info: FileInfo) -> np.ndarray:
    """complex ``(..., ndim, N, N)`` -> ``uint8 (..., site_bytes)`` in the file's precision and order."""
    m = sites[..., : info.rows, :]
    vals = np.stack([m.real, m.imag], axis=-1).astype(info.dtype)
    return np.ascontiguousarray(vals).reshape(sites.shape[:-3] + (-1,)).view(np.uint8)


def host_words(raw: np.ndarray, info: FileInfo) -> np.ndarray:
    """The data as ``uint32`` words in host byte order (for the NERSC and MILC checksums)."""
    return np.ascontiguousarray(raw).view(np.dtype(f"{info.byteorder}u4")).astype(np.uint32)


# -- collective helpers ---------------------------------------------------------------------------
def on_root(comm, fn, *args):
    """Collective: run ``fn`` on rank 0 and broadcast its result, or raise its error on every rank
    (as a :class:`FormatError`: an input error or an OS error of the file)."""
    def guarded():
        try:
            return fn(*args)
        except LatticeError as exc:
            raise FormatError(str(exc)) from None
        except OSError as exc:
            raise FormatError(f"{getattr(exc, 'filename', None) or ''}: {exc.strerror or exc}") from None
    return comm.on_root(guarded, catch=(FormatError,))




def detect_format(path: str) -> str:
    """Guess the format of ``path`` from its first bytes (rank 0)."""
    with open(path, "rb") as fh:
        head = fh.read(512)
    if head.startswith(b"\x89HDF\r\n\x1a\n"):
        return "hdf5"
    if head.startswith(b"BEGIN_HEADER"):
        return "nersc"
    if head[:4] == b"\x45\x67\x89\xab":
        return "ildg"
    if len(head) >= 4 and 20103 in (int.from_bytes(head[:4], "little"), int.from_bytes(head[:4], "big")):
        return "milc"
    if len(head) >= 24:
        dims = np.frombuffer(head[:16], dtype="<i4")
        if np.all((dims > 0) & (dims <= 4096)):
            return "openqcd"
    raise FormatError(f"{path}: unknown format (not HDF5, NERSC, LIME/ILDG, MILC or openQCD); "
                      f"give --format if the file is one of them")


def _module(fmt: str):
    from . import hdf5, ildg, milc, nersc, openqcd

    return {"nersc": nersc, "ildg": ildg, "milc": milc, "openqcd": openqcd, "hdf5": hdf5}[fmt]


def probe(path: str, fmt: str = "auto") -> FileInfo:
    """Rank 0: the header of ``path`` as a :class:`FileInfo`; raises :class:`FormatError`."""
    if not os.path.isfile(path):
        raise FormatError(f"{path}: no such file")
    try:
        if fmt == "auto":
            fmt = detect_format(path)
        if fmt not in FORMATS:
            raise FormatError(f"{path}: unknown format {fmt!r}; known: {', '.join(FORMATS)}")
        return _module(fmt).probe(path, file_size(path))
    except OSError as exc:  # the header could not be read: name the file and the OS error
        raise FormatError(f"{path}: could not be read (rank 0: {os_error_text(exc)}): an I/O "
                          f"error, not a damaged file") from None


# -- reading --------------------------------------------------------------------------------------
def read_gauge(path: str, comm, grid="auto", fmt: str = "auto", backend=None) -> GaugeConfig:
    """Collective: read the configuration in ``path`` onto a lattice decomposed over ``grid``.

    Returns a :class:`GaugeConfig` whose field holds double-precision links (exact for single-
    precision files).  Raises :class:`FormatError` on every rank if the header is unreadable or
    disagrees with the data, or a checksum or header value does not match.
    """
    info = on_root(comm, probe, str(path), fmt)
    lattice = Lattice(info.dims, grid, comm)
    mod = _module(info.format)
    group = get_group(info.group)
    try:
        if hasattr(mod, "read_field"):  # formats with their own layout (openQCD, HDF5)
            field, checksum = mod.read_field(info, lattice, backend)
        else:
            gshape, start, shape = block_geometry(lattice)
            with BlockFile(lattice.comm, info.path, "r") as fh:
                raw = fh.read_block(info.data_offset, gshape, start, shape, info.site_bytes)
            checksum = mod.verify(info, raw, lattice)
            field = sites_to_field(lattice, group, decode(raw, info), backend)
    except BlockFileError as exc:  # raised on every rank
        raise FormatError(f"{exc}: an I/O error, not a damaged file; rerun once the file system "
                          f"answers again") from None
    check_header_values(info, field)
    check_group(info, field)
    return GaugeConfig(field, info, checksum)


def check_header_values(info: FileInfo, field: GaugeField) -> None:
    """Collective: the header's plaquette and link trace must match the data."""
    values = {}
    if "plaquette" in info.checks:
        values["plaquette"] = plaquette(field)["plaquette"]
    if "link_trace" in info.checks:
        values["link_trace"] = link_trace(field)
    for key, computed in values.items():
        expected = info.checks[key]
        if abs(computed - expected) > HEADER_TOLERANCE * max(1.0, abs(expected)):
            raise FormatError(f"{info.path}: header {key.upper()} = {expected!r} but the data give "
                              f"{computed!r}: corrupt data or wrong header")


def check_group(info: FileInfo, field: GaugeField) -> None:
    """Collective: every link must be unitary (to the file's precision) with unit determinant."""
    tol = 1e-5 if info.precision == "single" else 1e-10
    local = max(field.group.unitarity_violation(field.interior()))
    worst = field.lattice.comm.allreduce(local, op="max")
    if not np.isfinite(worst) or worst > tol:
        raise FormatError(f"{info.path}: links are not in {info.group} (deviation {worst:.3g} > "
                          f"{tol:g}): corrupt data, or a wrong byte order or precision in the header")


def scidac_checksum(raw: np.ndarray, lattice) -> tuple[int, int]:
    """Collective: SciDAC ``(suma, sumb)`` of the sites ``raw`` (as stored) of every rank."""
    return reduce_xor(lattice.comm, scidac_partial(raw, lattice.global_index))


def nersc_checksum(raw: np.ndarray, info: FileInfo, lattice) -> int:
    """Collective: NERSC checksum of the data section."""
    return reduce_sum32(lattice.comm, nersc_partial(host_words(raw, info)))


# -- writing --------------------------------------------------------------------------------------
def check_target(path: str, comm, overwrite: bool, error=FormatError,
                 exists_hint: str = " (choose another name)") -> None:
    """Collective: refuse to write ``path`` (``error`` on every rank, before anything is written)
    if it is a directory (also with ``overwrite``), if its parent directory does not exist, or if
    it exists and not ``overwrite``."""
    def problem():
        parent = os.path.dirname(os.path.abspath(path))
        if os.path.isdir(path):
            return f"{path}: is a directory; give the name of the file to write (a directory is " \
                   f"never replaced, also not with --force/overwrite)"
        if not os.path.isdir(parent):
            return f"{path}: the directory {parent} does not exist; create it first"
        if os.path.lexists(path) and not overwrite:
            return f"{path}: exists; refusing to overwrite it{exists_hint}"
        return None

    msg = comm.bcast(problem() if comm.rank == 0 else None)
    if msg:
        raise error(msg)


def write_gauge(path: str, field: GaugeField, fmt: str, precision: str = "double",
                overwrite: bool = False, meta: dict | None = None) -> FileInfo:
    """Collective: write ``field`` to ``path`` in format ``fmt`` at ``precision``.

    The file appears under its name only once it is complete and synced; an existing ``path``
    raises :class:`FormatError` unless ``overwrite``; a directory, or a path whose directory does
    not exist, always does.  A failed write raises :class:`FormatError` naming ``path`` and the OS
    error on every rank and leaves no temporary file.
    """
    if fmt not in ("nersc", "ildg", "hdf5"):
        raise FormatError(f"{path}: cannot write format {fmt!r}; writable: nersc, ildg, hdf5")
    if precision not in ("single", "double"):
        raise FormatError(f"{path}: precision must be single or double, not {precision!r}")
    comm = field.lattice.comm
    check_target(path, comm, overwrite)
    meta = dict(meta or {})
    meta.setdefault("hostname", socket.gethostname())
    return _module(fmt).write(path, field, precision, comm.bcast(meta))


def su3_block(path: str, field: GaugeField, fmt: str, precision: str):
    """Collective: ``(info, raw, plaquette, link_trace)`` for writing ``field`` in an SU(3) format
    (big-endian, three rows); raises :class:`FormatError` for fields that the format cannot hold."""
    if field.N != 3 or field.ndim != 4:
        raise FormatError(f"{path}: the {fmt.upper()} format holds 4D SU(3) fields only")
    lat = field.lattice
    info = FileInfo(path, fmt, lat.dims, precision, ">", 3)
    raw = encode(field_to_sites(field), info)
    return info, raw, plaquette(field)["plaquette"], link_trace(field)


def write_sites_file(path: str, field: GaugeField, info: FileInfo, head: bytes, tail: bytes,
                     raw: np.ndarray) -> None:
    """Collective: ``head`` + the data section + ``tail``, atomically.

    ``raw`` is this rank's block of the data section (:func:`encode`).  Rank 0 writes ``head`` and
    ``tail`` to a temporary file, every rank writes its block at ``len(head)``, the file is synced,
    then rank 0 renames it onto ``path``.
    """
    lattice = field.lattice
    comm = lattice.comm
    tmp = temporary_name(path, comm)

    def prepare():
        try:
            with open(tmp, "wb") as fh:
                fh.write(head)
                fh.seek(len(head) + info.data_bytes)
                fh.write(tail)
                fh.truncate(len(head) + info.data_bytes + len(tail))
        except OSError as exc:
            return os_error_text(exc)
        return None

    prepared = comm.bcast(prepare() if comm.rank == 0 else None)
    error = prepared if comm.rank == 0 else None
    if prepared is None:
        gshape, start, _shape = block_geometry(lattice)
        try:
            with BlockFile(comm, tmp, "w") as fh:
                fh.write_block(len(head), gshape, start, raw)
        except BlockFileError as exc:  # raised on every rank, with every rank's outcome
            error = exc.errors[comm.rank]
    # any rank's error: rank 0 removes the temporary file, every rank raises FormatError
    finish_write(comm, tmp, path, error, FormatError)


def temporary_name(path: str, comm) -> str:
    """A name next to ``path`` for the file being written (same on every rank)."""
    d, b = os.path.split(os.path.abspath(path))
    pid = comm.bcast(os.getpid())
    return os.path.join(d, f".{b}.partial-{pid}")


def _fsync(path: str) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def remove_quietly(path: str) -> None:
    """Remove ``path`` if it is there (errors ignored: used while reporting another one)."""
    try:
        os.remove(path)
    except OSError:
        pass


def finish_write(comm, tmp: str, path: str, error: str | None, cls=FormatError) -> None:
    """Collective: end the write of ``tmp`` (this rank's error text, or ``None``).

    If no rank failed, rank 0 commits ``tmp`` onto ``path`` (fsync, rename, directory fsync).  If
    any rank failed, or the commit does, rank 0 removes ``tmp`` and every rank raises ``cls``
    naming ``path`` (not the temporary name) and the error(s).
    """
    errors = comm.allgather(error)
    msg = None
    if comm.rank == 0:
        if any(errors):
            remove_quietly(tmp)
            msg = f"{path}: could not be written ({per_rank(errors)}); nothing was written under " \
                  f"that name and the partial file was removed"
        else:
            try:
                _fsync(tmp)
                os.replace(tmp, path)
            except OSError as exc:
                remove_quietly(tmp)
                msg = f"{path}: could not be written (rank 0, syncing and renaming the complete " \
                      f"temporary file onto it: {os_error_text(exc)}); nothing was written under " \
                      f"that name and the partial file was removed"
            else:
                try:
                    _fsync(os.path.dirname(os.path.abspath(path)))
                except OSError as exc:
                    msg = f"{path}: written, but syncing its directory failed " \
                          f"({os_error_text(exc)}): the file may not survive a crash of the node"
    msg = comm.bcast(msg)
    if msg:
        raise cls(msg)
