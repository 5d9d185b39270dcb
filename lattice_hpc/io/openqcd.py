"""openQCD exported gauge configurations (``modules/archive/archive.c``, ``export_cnfg``), read only.

Layout, little-endian whatever the machine::

    int32 N0, N1, N2, N3        (openQCD direction 0 is time: N0 = T, N1..N3 = X, Y, Z)
    float64 plaq                 (average of Re Tr U_p over all 6V plaquettes, no 1/3: 3 on a unit field)
    for each odd point x (x0 + x1 + x2 + x3 odd) in the order ix = x3 + N3 (x2 + N2 (x1 + N1 x0)):
        8 SU(3) matrices, 3x3 complex float64 row-major: U(x,0), U(x-0,0), U(x,1), U(x-1,1), ...,
        U(x,3), U(x-3,3)

``U(x, mu)`` is the link from ``x`` to ``x + mu`` -- the same matrix as our ``U_mu(x)`` (openQCD
``doc/gauge_action.pdf``).  The links of an even point ``y`` are the backward links ``U(x-mu, mu)``
stored with the odd point ``x = y + mu``.  Each rank reads the odd points of its block (a sub-array
of the ``(N0, N1, N2, N3/2)`` array of 1152-byte records), fills its odd sites' forward links, and
gets its even sites' links from the backward links of the odd points at ``y + mu``, which for the
upper faces of the block live on the neighbouring rank (one face halo exchange).
There is no checksum; the header plaquette is checked against the data.
"""

from __future__ import annotations

import struct

import numpy as np

from ..comm.fileio import BlockFile
from ..errors import FormatError
from ..gauge import GaugeField
from ..groups import get_group
from .gaugefile import FileInfo
from .sites import sites_to_field

HEADER_BYTES = 24
RECORD = 8 * 9 * 16


def probe(path: str, size: int) -> FileInfo:
    with open(path, "rb") as fh:
        head = fh.read(HEADER_BYTES)
    if len(head) < HEADER_BYTES:
        raise FormatError(f"{path}: truncated openQCD header")
    n0, n1, n2, n3 = struct.unpack("<4i", head[:16])
    (plaq,) = struct.unpack("<d", head[16:24])
    dims = (n1, n2, n3, n0)
    if any(d <= 0 or d % 2 for d in dims):
        raise FormatError(f"{path}: openQCD header sizes N0..N3 = {n0},{n1},{n2},{n3} must be "
                          f"positive and even")
    info = FileInfo(path, "openqcd", dims, "double", "<", 3, HEADER_BYTES,
                    checks={"plaquette": plaq / 3.0}, meta={"plaquette_openqcd": plaq})
    need = int(np.prod(dims)) // 2 * RECORD
    if size != HEADER_BYTES + need:
        raise FormatError(f"{path}: header sizes T,X,Y,Z = {n0},{n1},{n2},{n3} need {need} data "
                          f"bytes, but the file has {size - HEADER_BYTES} after the header: "
                          f"truncated file or dimensions that disagree with the data")
    return info


def read_field(info: FileInfo, lattice, backend):
    """Collective: read this rank's block; returns ``(field, "absent")`` (no checksum in the format)."""
    X, Y, Z, T = lattice.dims
    ox, oy, oz, ot = lattice.origin
    lx, ly, lz, lt = lattice.local_dims
    if lz % 2 or oz % 2:
        raise FormatError(f"{info.path}: the local z extent must be even to read openQCD files")
    with BlockFile(lattice.comm, info.path, "r") as fh:
        raw = fh.read_block(HEADER_BYTES, (T, X, Y, Z // 2), (ot, ox, oy, oz // 2),
                            (lt, lx, ly, lz // 2), RECORD)
    v = raw.view("<f8").astype(np.float64).reshape(lt, lx, ly, lz // 2, 8, 3, 3, 2)
    rec = v[..., 0] + 1j * v[..., 1]  # (t, x, y, z/2, 8, 3, 3)
    # place records on the odd sites of the block: memory order (t, z, y, x)
    t, x, y, zh = np.meshgrid(np.arange(lt), np.arange(lx), np.arange(ly), np.arange(lz // 2),
                              indexing="ij")
    zpar = (ot + t + ox + x + oy + y + 1) % 2  # odd point of the pair {2k, 2k+1}: z parity
    z = 2 * zh + zpar
    fwd = np.zeros((lt, lz, ly, lx, 4, 3, 3), dtype=np.complex128)
    bwd = np.zeros_like(fwd)  # bwd[y, mu] = U_mu(y - mu), on odd sites y
    for q in range(4):
        mu = (q + 3) % 4  # openQCD direction q -> ours (0 = t -> 3, 1..3 -> 0..2)
        fwd[t, z, y, x, mu] = rec[:, :, :, :, 2 * q]
        bwd[t, z, y, x, mu] = rec[:, :, :, :, 2 * q + 1]
    # even sites y: U_mu(y) = bwd(y + mu, mu): exchange the bwd field's faces
    group = get_group("SU3")
    B = GaugeField(lattice, group, depth=1)
    B.set_interior(np.moveaxis(bwd, -3, 0))
    B.refresh(codim=1)
    links = np.moveaxis(fwd, -3, 0).copy()
    even = lattice.parity == 0
    for mu in range(4):
        links[mu][even] = B.U(mu, {mu: 1})[even]
    return sites_to_field(lattice, group, np.moveaxis(links, 0, -3), backend), "absent"

