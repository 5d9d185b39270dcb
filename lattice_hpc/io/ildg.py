"""ILDG / SciDAC gauge configurations in LIME files.

Data record ``ildg-binary-data`` (or ``scidac-binary-data``): big-endian IEEE floats, sites in
lexicographic order (x fastest), per site the four directions x, y, z, t, each a row-major 3x3
complex matrix; 32- or 64-bit.  Dimensions and precision come from the ``ildg-format`` record
(``<lx>``, ..., ``<precision>32|64``), or, without it, from ``scidac-private-file-xml``
(``<dims>``) and ``scidac-private-record-xml`` (``<precision>F|D``).  A ``scidac-checksum``
record (``<suma>``, ``<sumb>``; see :mod:`.checksums`) is verified when present.
References: ILDG file format (www.lqcd.org/ildg), QIO / c-lime (USQCD).

We write, in two LIME messages in the order of QIO (``QIO_write.c``): ``scidac-private-file-xml``,
``scidac-file-xml`` | ``scidac-private-record-xml``, ``scidac-record-xml``, ``ildg-format``,
``ildg-data-lfn``, ``ildg-binary-data``, ``scidac-checksum``.
"""

from __future__ import annotations

import datetime
import re

from ..errors import FormatError
from . import lime
from .gaugefile import FileInfo, scidac_checksum, su3_block, write_sites_file

BINARY = ("ildg-binary-data", "scidac-binary-data")


def _tag(xml: str, name: str):
    m = re.search(rf"<(?:\w+:)?{name}>\s*([^<]*?)\s*</(?:\w+:)?{name}>", xml)
    return m.group(1) if m else None


def probe(path: str, size: int) -> FileInfo:
    records = lime.scan(path, size)
    types = [r.type for r in records]
    data = next((r for r in records if r.type in BINARY), None)
    if data is None:
        raise FormatError(f"{path}: LIME file without an ildg-binary-data or scidac-binary-data "
                          f"record (records: {', '.join(types)})")
    text = {r.type: lime.read_record(path, r).decode("utf-8", errors="replace")
            for r in records if r.type not in BINARY and r.length < (1 << 20)}
    dims = precision = None
    if "ildg-format" in text:
        x = text["ildg-format"]
        field = _tag(x, "field")
        if field is not None and field.lower() != "su3gauge":
            raise FormatError(f"{path}: ildg-format field is {field!r}; only su3gauge is supported")
        try:
            dims = tuple(int(_tag(x, k)) for k in ("lx", "ly", "lz", "lt"))
            bits = int(_tag(x, "precision"))
        except (TypeError, ValueError):
            raise FormatError(f"{path}: ildg-format record lacks lx/ly/lz/lt/precision") from None
        if bits not in (32, 64):
            raise FormatError(f"{path}: ildg-format precision {bits} must be 32 or 64")
        precision = "single" if bits == 32 else "double"
    if dims is None and "scidac-private-file-xml" in text:
        d = _tag(text["scidac-private-file-xml"], "dims")
        if d:
            dims = tuple(int(v) for v in d.split())
    if precision is None and "scidac-private-record-xml" in text:
        p = _tag(text["scidac-private-record-xml"], "precision")
        if p in ("F", "D"):
            precision = "single" if p == "F" else "double"
    if dims is None or precision is None:
        raise FormatError(f"{path}: cannot find the lattice dimensions and precision (no "
                          f"ildg-format record and no usable scidac-private-*-xml records)")
    if len(dims) != 4 or any(d <= 0 for d in dims):
        raise FormatError(f"{path}: dimensions {dims} must be four positive extents")
    checks, meta = {}, {"records": types}
    if "scidac-checksum" in text:
        a, b = _tag(text["scidac-checksum"], "suma"), _tag(text["scidac-checksum"], "sumb")
        try:
            checks["scidac"] = (int(a, 16), int(b, 16))
        except (TypeError, ValueError):
            raise FormatError(f"{path}: unreadable scidac-checksum record") from None
    if "ildg-data-lfn" in text:
        meta["lfn"] = text["ildg-data-lfn"].strip("\0").strip()
    info = FileInfo(path, "ildg", dims, precision, ">", 3, data.offset, checks=checks, meta=meta)
    if data.length != info.data_bytes:
        raise FormatError(f"{path}: the header says {','.join(map(str, dims))} at {precision} "
                          f"precision, which needs {info.data_bytes} bytes, but the {data.type} "
                          f"record holds {data.length}: header dimensions disagree with the data")
    return info


def verify(info: FileInfo, raw, lattice) -> str:
    """Collective: the SciDAC checksum of the data against the ``scidac-checksum`` record."""
    if "scidac" not in info.checks:
        return "absent"
    got = scidac_checksum(raw, lattice)
    if tuple(got) != tuple(info.checks["scidac"]):
        want = info.checks["scidac"]
        raise FormatError(f"{info.path}: SciDAC checksum mismatch: record {want[0]:08x} {want[1]:08x}, "
                          f"data {got[0]:08x} {got[1]:08x}: corrupt file")
    return "ok"


XML = '<?xml version="1.0" encoding="UTF-8"?>'


def write(path: str, field, precision: str, meta: dict) -> FileInfo:
    """Collective: write ``field`` as an ILDG file (with ``ildg-format``, LFN and SciDAC checksum)."""
    lat = field.lattice
    info, raw, plaq, trace = su3_block(path, field, "ildg", precision)
    suma, sumb = scidac_checksum(raw, lat)
    date = lat.comm.bcast(datetime.datetime.now(datetime.timezone.utc).strftime("%a %b %d %H:%M:%S %Y UTC"))
    X, Y, Z, T = lat.dims
    bits = 32 if precision == "single" else 64
    lfn = meta.get("lfn") or f"lattice_hpc/{path.rsplit('/', 1)[-1]}"
    recs = [
        ("scidac-private-file-xml", f"{XML}<scidacFile><version>1.1</version><spacetime>4</spacetime>"
         f"<dims>{X} {Y} {Z} {T} </dims><volfmt>0</volfmt></scidacFile>", True, False),
        ("scidac-file-xml", f"{XML}<info><creator>lattice_hpc</creator><host>{meta['hostname']}</host>"
         f"<date>{date}</date></info>", False, True),
        ("scidac-private-record-xml", f"{XML}<scidacRecord><version>1.1</version><date>{date}</date>"
         f"<recordtype>0</recordtype><datatype>{'QDP_F3_ColorMatrix' if bits == 32 else 'QDP_D3_ColorMatrix'}"
         f"</datatype><precision>{'F' if bits == 32 else 'D'}</precision><colors>3</colors>"
         f"<spins>4</spins><typesize>{18 * bits // 8}</typesize><datacount>4</datacount></scidacRecord>",
         True, False),
        ("scidac-record-xml", f"{XML}<info><plaquette>{plaq:.16g}</plaquette>"
         f"<link_trace>{trace:.16g}</link_trace></info>", False, False),
        ("ildg-format", f'{XML}<ildgFormat xmlns="http://www.lqcd.org/ildg" '
         f'xmlns:xsi="http://www.w3.org/2001/XMLSchema-instance" '
         f'xsi:schemaLocation="http://www.lqcd.org/ildg http://www.lqcd.org/ildg/filefmt.xsd">'
         f"<version>1.0</version><field>su3gauge</field><precision>{bits}</precision>"
         f"<lx>{X}</lx><ly>{Y}</ly><lz>{Z}</lz><lt>{T}</lt></ildgFormat>", False, False),
        ("ildg-data-lfn", lfn, False, False),
        ("ildg-binary-data", None, False, False),
        ("scidac-checksum", f"{XML}<scidacChecksum><version>1.0</version><suma>{suma:08x}</suma>"
         f"<sumb>{sumb:08x}</sumb></scidacChecksum>", False, True),
    ]
    # text payloads carry their terminating NUL in the record length, as QIO writes them
    blobs = [None if body is None else body.encode("utf-8") + b"\0" for _t, body, _mb, _me in recs]
    lengths = [info.data_bytes if b is None else len(b) for b in blobs]
    offsets, total = lime.layout([(t, n, mb, me) for (t, _b, mb, me), n in zip(recs, lengths)])
    k = [t for t, *_ in recs].index("ildg-binary-data")

    def records_bytes(sel):
        out = b""
        for (typ, _b, mb, me), blob, n in [(recs[i], blobs[i], lengths[i]) for i in sel]:
            out += lime.header(typ, n, mb, me)
            if blob is not None:
                out += blob + b"\0" * (lime.pad8(n) - n)
        return out

    head = records_bytes(range(k + 1))  # ends with the binary record's header
    tail = b"\0" * (lime.pad8(info.data_bytes) - info.data_bytes) + records_bytes(range(k + 1, len(recs)))
    if len(head) != offsets[k] or len(head) + info.data_bytes + len(tail) != total:
        raise RuntimeError("LIME layout mismatch (bug)")
    write_sites_file(path, field, info, head, tail, raw)
    info.data_offset = offsets[k]
    info.checks = {"scidac": (suma, sumb), "plaquette": plaq, "link_trace": trace}
    info.meta = {"lfn": lfn}
    return info
