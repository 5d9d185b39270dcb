"""LIME container records (the envelope of ILDG and SciDAC files).

A LIME file is a sequence of records.  Each record has a 144-byte big-endian header::

    uint32 magic = 0x456789ab | uint16 version = 1 | uint16 flags (bit 15: MB, message begin;
    bit 14: ME, message end) | uint64 data length | char[128] type, NUL padded

followed by the data, padded with zeros to a multiple of 8 bytes.  Records are grouped into
messages (MB on the first record, ME on the last).  Reference: the c-lime library (USQCD),
``lime_fixed_types.h`` / ``lime_header.c``.  Local (no communication) functions only.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass

from ..errors import FormatError

MAGIC = 0x456789AB
HEADER = struct.Struct(">IHHQ128s")
MB, ME = 1 << 15, 1 << 14


@dataclass
class Record:
    type: str
    offset: int  # byte offset of the record data in the file
    length: int  # data length in bytes (without padding)


def pad8(n: int) -> int:
    return (n + 7) // 8 * 8


def scan(path: str, size: int) -> list[Record]:
    """All records of the LIME file ``path`` (``size`` bytes), checking headers and lengths."""
    out = []
    pos = 0
    with open(path, "rb") as fh:
        while pos < size:
            fh.seek(pos)
            head = fh.read(HEADER.size)
            if len(head) < HEADER.size:
                raise FormatError(f"{path}: truncated LIME record header at byte {pos}")
            magic, version, _flags, length, typ = HEADER.unpack(head)
            if magic != MAGIC:
                raise FormatError(f"{path}: bad LIME magic number {magic:#010x} at byte {pos} "
                                  f"(expected {MAGIC:#010x}); not a LIME file or corrupt")
            if version != 1:
                raise FormatError(f"{path}: unsupported LIME version {version} at byte {pos}")
            data = pos + HEADER.size
            name = typ.split(b"\0", 1)[0].decode("ascii", errors="replace")
            if data + length > size:
                raise FormatError(f"{path}: LIME record {name!r} "
                                  f"at byte {pos} needs {length} data bytes, but the file ends "
                                  f"after {size - data}: truncated file")
            out.append(Record(name, data, length))
            pos = data + pad8(length)
    if not out:
        raise FormatError(f"{path}: empty file")
    return out


def read_record(path: str, rec: Record) -> bytes:
    with open(path, "rb") as fh:
        fh.seek(rec.offset)
        return fh.read(rec.length)


def header(typ: str, length: int, mb: bool, me: bool) -> bytes:
    """The 144-byte header of a record of ``length`` data bytes."""
    flags = (MB if mb else 0) | (ME if me else 0)
    return HEADER.pack(MAGIC, 1, flags, length, typ.encode("ascii"))


def layout(records: list[tuple[str, int, bool, bool]]) -> tuple[list[int], int]:
    """Data offsets of records ``(type, length, mb, me)`` written back to back, and the file size."""
    offsets, pos = [], 0
    for _typ, length, _mb, _me in records:
        offsets.append(pos + HEADER.size)
        pos += HEADER.size + pad8(length)
    return offsets, pos
