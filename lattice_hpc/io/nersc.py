"""NERSC archive format (``4D_SU3_GAUGE`` and ``4D_SU3_GAUGE_3x3``).

File = ASCII header ``BEGIN_HEADER`` ... ``KEY = VALUE`` lines ... ``END_HEADER`` + newline,
then the data: sites in lexicographic order (x fastest), per site the four directions x, y, z, t,
each a 3x3 complex matrix stored row-major (``4D_SU3_GAUGE_3x3``) or only its first two rows
(``4D_SU3_GAUGE``; the third row is ``conj(row0 x row1)``).  ``FLOATING_POINT`` is ``IEEE32BIG``
(or ``IEEE32``), ``IEEE32LITTLE``, ``IEEE64BIG`` (or ``IEEE64``) or ``IEEE64LITTLE``.

Verified on reading: ``CHECKSUM`` (32-bit wrap-around sum of the stored data read as unsigned
32-bit words in host order), ``PLAQUETTE`` ((1/3) Re Tr P averaged over sites and planes) and
``LINK_TRACE`` ((1/3) Re Tr U averaged over sites and directions).  Reference: the NERSC Gauge
Connection archive format note, as implemented by MILC (``nersc_cksum.c``) and Grid (``NerscIO.h``).

We write ``4D_SU3_GAUGE_3x3`` (all three rows, so that reading back is bit-identical), big-endian.
"""

from __future__ import annotations

import datetime

import numpy as np

from ..errors import FormatError
from .gaugefile import FileInfo, nersc_checksum, su3_block, write_sites_file

# "IEEE32"/"IEEE64" without an order are ambiguous between writers: the order is then taken from
# the data (the one in which the first stored matrix is unitary)
FLOATS = {"IEEE32BIG": ("single", ">"), "IEEE32": ("single", None), "IEEE32LITTLE": ("single", "<"),
          "IEEE64BIG": ("double", ">"), "IEEE64": ("double", None), "IEEE64LITTLE": ("double", "<")}
DATATYPES = {"4D_SU3_GAUGE": 2, "4D_SU3_GAUGE_3x3": 3}
MAX_HEADER = 1 << 16


def probe(path: str, size: int) -> FileInfo:
    with open(path, "rb") as fh:
        text = fh.read(min(size, MAX_HEADER))
    end = text.find(b"END_HEADER")
    if not text.startswith(b"BEGIN_HEADER") or end < 0:
        raise FormatError(f"{path}: not a NERSC file (no BEGIN_HEADER ... END_HEADER in the first "
                          f"{MAX_HEADER} bytes)")
    nl = text.find(b"\n", end)
    offset = (nl + 1) if nl >= 0 else len(text)
    header = {}
    for line in text[:end].decode("ascii", errors="replace").splitlines()[1:]:
        if "=" in line:
            k, v = line.split("=", 1)
            header[k.strip()] = v.strip()
    for key in ("DATATYPE", "DIMENSION_1", "DIMENSION_2", "DIMENSION_3", "DIMENSION_4",
                "FLOATING_POINT", "CHECKSUM"):
        if key not in header:
            raise FormatError(f"{path}: NERSC header lacks {key}")
    if header["DATATYPE"] not in DATATYPES:
        raise FormatError(f"{path}: NERSC DATATYPE = {header['DATATYPE']} is not supported "
                          f"(known: {', '.join(DATATYPES)})")
    if header["FLOATING_POINT"] not in FLOATS:
        raise FormatError(f"{path}: NERSC FLOATING_POINT = {header['FLOATING_POINT']} is not "
                          f"supported (known: {', '.join(FLOATS)})")
    try:
        dims = tuple(int(header[f"DIMENSION_{i}"]) for i in range(1, 5))
        checksum = int(header["CHECKSUM"], 16)
        checks = {"nersc_checksum": checksum}
        for key in ("PLAQUETTE", "LINK_TRACE"):
            if key in header:
                checks[key.lower()] = float(header[key])
    except ValueError as exc:
        raise FormatError(f"{path}: bad NERSC header value: {exc}") from None
    if any(d <= 0 for d in dims):
        raise FormatError(f"{path}: NERSC header dimensions {dims} must be positive")
    for mu in range(4):
        bc = header.get(f"BOUNDARY_{mu + 1}", "PERIODIC")
        if bc != "PERIODIC":
            raise FormatError(f"{path}: BOUNDARY_{mu + 1} = {bc}; only PERIODIC gauge fields "
                              f"are supported")
    precision, order = FLOATS[header["FLOATING_POINT"]]
    info = FileInfo(path, "nersc", dims, precision, order or ">", DATATYPES[header["DATATYPE"]],
                    offset, checks=checks, meta={"header": header})
    if size != offset + info.data_bytes:
        raise FormatError(f"{path}: header says {','.join(map(str, dims))} {header['DATATYPE']} "
                          f"{header['FLOATING_POINT']}, which needs {info.data_bytes} data bytes, but "
                          f"the file has {size - offset} after the header: truncated file or header "
                          f"dimensions that disagree with the data")
    if order is None:
        info.byteorder = _guess_order(path, info)
    return info


def _guess_order(path: str, info: FileInfo) -> str:
    """Byte order in which the first stored rows are orthonormal (for ``IEEE32``/``IEEE64``)."""
    n = info.rows * 3 * 2 * info.itemsize
    with open(path, "rb") as fh:
        fh.seek(info.data_offset)
        buf = fh.read(n)
    best, err = ">", np.inf
    for order in (">", "<"):
        v = np.frombuffer(buf, dtype=f"{order}f{info.itemsize}").astype(np.float64)
        rows = (v[0::2] + 1j * v[1::2]).reshape(info.rows, 3)
        e = np.abs(rows @ rows.conj().T - np.eye(info.rows)).max()
        if np.isfinite(e) and e < err:
            best, err = order, e
    return best


def verify(info: FileInfo, raw, lattice) -> str:
    """Collective: compare the NERSC checksum of the data with the header's."""
    got = nersc_checksum(raw, info, lattice)
    if got != info.checks["nersc_checksum"]:
        raise FormatError(f"{info.path}: NERSC checksum mismatch: header {info.checks['nersc_checksum']:08x}, "
                          f"data {got:08x}: corrupt file")
    return "ok"


def write(path: str, field, precision: str, meta: dict) -> FileInfo:
    """Collective: write ``field`` as ``4D_SU3_GAUGE_3x3`` big-endian at ``precision``."""
    lat = field.lattice
    info, raw, plaq, trace = su3_block(path, field, "nersc", precision)
    checksum = nersc_checksum(raw, info, lat)
    date = lat.comm.bcast(datetime.datetime.now().strftime("%a %b %d %H:%M:%S %Y"))
    lines = ["BEGIN_HEADER", "HDR_VERSION = 1.0", "DATATYPE = 4D_SU3_GAUGE_3x3",
             "STORAGE_FORMAT = 1.0"]
    lines += [f"DIMENSION_{i + 1} = {d}" for i, d in enumerate(lat.dims)]
    lines += [f"LINK_TRACE = {trace:.16g}", f"PLAQUETTE = {plaq:.16g}"]
    lines += [f"BOUNDARY_{i + 1} = PERIODIC" for i in range(4)]
    lines += [f"CHECKSUM = {checksum:08x}", f"ENSEMBLE_ID = {meta.get('ensemble', 'lattice_hpc')}",
              "ENSEMBLE_LABEL = lattice_hpc", f"SEQUENCE_NUMBER = {meta.get('sequence', 0)}",
              "CREATOR = lattice_hpc", f"CREATOR_HARDWARE = {meta['hostname']}",
              f"CREATION_DATE = {date}", f"FLOATING_POINT = {'IEEE32BIG' if precision == 'single' else 'IEEE64BIG'}",
              "END_HEADER"]
    head = ("\n".join(lines) + "\n").encode("ascii")
    write_sites_file(path, field, info, head, b"", raw)
    info.data_offset = len(head)
    info.checks = {"nersc_checksum": checksum, "plaquette": plaq, "link_trace": trace}
    return info
