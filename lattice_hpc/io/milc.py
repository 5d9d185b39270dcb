"""MILC binary gauge configurations (version 5, ``io_lat4.c``), read only.

Layout (all in the writer's native byte order, detected from the magic number)::

    int32 magic = 20103 | int32 nx, ny, nz, nt | char time_stamp[64] | int32 order (0 = natural)
    uint32 sum29 | uint32 sum31                                   (data start at byte 96)
    per site (x fastest), the four directions x, y, z, t: 3x3 complex float32, row-major

Checksum (``io_lat4.c``): with ``v_i`` the 32-bit words of the data in file order (host value)
and ``i`` their global index, ``sum29 ^= rotl32(v_i, i % 29)`` and ``sum31 ^= rotl32(v_i, i % 31)``.
Files in node-dump order (``order != 0``) carry a site list and are not supported.
"""

from __future__ import annotations

import struct

from ..errors import FormatError
from .checksums import milc_partial, reduce_xor
from .gaugefile import FileInfo, host_words

MAGIC = 20103
DATA_OFFSET = 96  # 88 header bytes, then the two checksum words


def probe(path: str, size: int) -> FileInfo:
    with open(path, "rb") as fh:
        head = fh.read(DATA_OFFSET)
    if len(head) < DATA_OFFSET:
        raise FormatError(f"{path}: truncated MILC header ({len(head)} of {DATA_OFFSET} bytes)")
    for order in ("<", ">"):
        if struct.unpack(order + "i", head[:4])[0] == MAGIC:
            break
    else:
        raise FormatError(f"{path}: not a MILC file (magic number is not {MAGIC} in either byte order)")
    dims = struct.unpack(order + "4i", head[4:20])
    stamp = head[20:84].split(b"\0", 1)[0].decode("ascii", errors="replace").strip()
    site_order = struct.unpack(order + "i", head[84:88])[0]
    sum29, sum31 = struct.unpack(order + "2I", head[88:96])
    if site_order != 0:
        raise FormatError(f"{path}: MILC file in node-dump order (order = {site_order}) is not "
                          f"supported; only natural order (0)")
    if any(d <= 0 for d in dims):
        raise FormatError(f"{path}: MILC header dimensions {dims} must be positive")
    info = FileInfo(path, "milc", tuple(dims), "single", order, 3, DATA_OFFSET,
                    checks={"milc": (sum29, sum31)}, meta={"time_stamp": stamp})
    if size != DATA_OFFSET + info.data_bytes:
        raise FormatError(f"{path}: header dimensions {','.join(map(str, dims))} need "
                          f"{info.data_bytes} data bytes, but the file has {size - DATA_OFFSET} "
                          f"after the header: truncated file or dimensions that disagree with the data")
    return info


def verify(info: FileInfo, raw, lattice) -> str:
    """Collective: the MILC checksums of the data against the header's."""
    got = reduce_xor(lattice.comm, milc_partial(host_words(raw, info), lattice.global_index))
    if tuple(got) != tuple(info.checks["milc"]):
        want = info.checks["milc"]
        raise FormatError(f"{info.path}: MILC checksum mismatch: header {want[0]:x} {want[1]:x}, "
                          f"data {got[0]:x} {got[1]:x}: corrupt file")
    return "ok"

