"""Independent, serial reference implementation of gauge-configuration file formats (tests only).

Written from the published formats / reference sources, not from lattice_hpc's own I/O code:

* NERSC archive:  Grid ``Grid/parallelIO/{NerscIO.h,MetaData.h}``, MILC ``generic/io_lat4.c``
  (``save_serial_archive``: ``"CHECKSUM = %x"``, ``"LINK_TRACE = %.10f"``, ``"PLAQUETTE = %.10f"``).
* ILDG / SciDAC LIME:  QIO ``lib/qio/QIO_write.c`` (record order and MB/ME flags),
  QIO ``lib/dml/DML_utils.c`` (``DML_checksum_accum``), the c-lime 144-byte record header.
* MILC v5 binary:  MILC ``include/io_lat.h``, ``include/file_types.h``, ``generic/io_lat4.c``
  (``swrite_gauge_hdr``, ``write_checksum``, ``w_serial``/``accum_cksums``).
* openQCD export:  openQCD ``modules/archive/archive.c`` (``export_cnfg``), ``main/README.io``,
  ``modules/uflds/plaq_sum.c``; cross-checked against Grid ``Grid/parallelIO/OpenQcdIO.h``.

Conventions: ``U`` is complex128 of shape (T, Z, Y, X, 4, 3, 3), mu = 0..3 = x, y, z, t;
``U[t,z,y,x,mu]`` = U_mu(x); lexicographic site rank r = x + X*(y + Y*(z + Z*t)).
Everything is deliberately simple and slow.
"""

from __future__ import annotations

import re
import struct
import time
import zlib

import numpy as np

_AXIS = {0: 3, 1: 2, 2: 1, 3: 0}  # direction mu -> array axis of (T, Z, Y, X)


def _dims(U):
    """(X, Y, Z, T) of a field of shape (T, Z, Y, X, 4, 3, 3)."""
    T, Z, Y, X = U.shape[:4]
    return X, Y, Z, T


def _shift(A, mu, n=1):
    """A(x + n*mu) with periodic wrap."""
    return np.roll(A, -n, axis=_AXIS[mu])


def _dag(A):
    return np.conj(np.swapaxes(A, -1, -2))


def plaquette(U):
    """(1/3) Re Tr U_mu(x) U_nu(x+mu) U_mu(x+nu)^+ U_nu(x)^+ averaged over sites and the 6 planes."""
    total = 0.0
    for mu in range(4):
        for nu in range(mu + 1, 4):
            Um, Un = U[..., mu, :, :], U[..., nu, :, :]
            P = Um @ _shift(Un, mu) @ _dag(_shift(Um, nu)) @ _dag(Un)
            total += np.trace(P, axis1=-2, axis2=-1).real.mean()
    return total / (6 * 3)


def link_trace(U):
    """(1/3) Re Tr U_mu(x) averaged over sites and the 4 directions (NERSC LINK_TRACE)."""
    return np.trace(U, axis1=-2, axis2=-1).real.mean() / 3


def _rotl32(v, n):
    v &= 0xFFFFFFFF
    return ((v << n) | (v >> (32 - n))) & 0xFFFFFFFF if n else v


# ----------------------------------------------------------------------------------- SciDAC / ILDG
def _ildg_bytes(U, precision):
    """Big-endian site-major bytes: x fastest ... t slowest, per site dirs x,y,z,t, row-major 3x3."""
    return np.ascontiguousarray(U).astype(">c8" if precision == 32 else ">c16").tobytes()


def scidac_checksum(U, precision):
    """SciDAC checksum (QIO lib/dml/DML_utils.c, DML_checksum_accum).

    Per site r (global lexicographic rank, x fastest): c = crc32(bytes of the site as stored,
    i.e. big-endian, 4 x row-major 3x3 complex); suma ^= rotl32(c, r % 29); sumb ^= rotl32(c, r % 31).
    """
    data = _ildg_bytes(U, precision)
    site = 4 * 9 * 2 * (4 if precision == 32 else 8)
    suma = sumb = 0
    for r in range(len(data) // site):
        c = zlib.crc32(data[r * site:(r + 1) * site]) & 0xFFFFFFFF
        suma ^= _rotl32(c, r % 29)
        sumb ^= _rotl32(c, r % 31)
    return suma, sumb


_LIME_MAGIC = 0x456789AB
_MB, _ME = 0x8000, 0x4000


def _lime_record(typ, data, mb, me):
    """One LIME record: 144-byte header (magic u32, version u16 = 1, flags u16 with MB = bit 15 and
    ME = bit 14, data length u64, 128-byte NUL-padded type; all big-endian), data, zero padding to 8."""
    flags = (_MB if mb else 0) | (_ME if me else 0)
    hdr = struct.pack(">IHHQ", _LIME_MAGIC, 1, flags, len(data)) + typ.encode().ljust(128, b"\0")
    return hdr + data + b"\0" * (-len(data) % 8)


def read_lime_records(path):
    """List of (type, offset_of_data, length) for every LIME record in ``path``."""
    out = []
    with open(path, "rb") as f:
        buf = f.read()
    pos = 0
    while pos + 144 <= len(buf):
        magic, version, _flags, length = struct.unpack(">IHHQ", buf[pos:pos + 16])
        if magic != _LIME_MAGIC:
            raise ValueError(f"bad LIME magic {magic:#x} at offset {pos}")
        typ = buf[pos + 16:pos + 144].split(b"\0", 1)[0].decode()
        out.append((typ, pos + 144, length))
        pos += 144 + length + (-length % 8)
    return out


def parse_scidac_checksum(xml_bytes):
    """(suma, sumb) from a scidac-checksum record's XML (hex, with or without leading zeros)."""
    text = xml_bytes.rstrip(b"\0").decode()
    a = re.search(r"<suma>\s*([0-9a-fA-F]+)\s*</suma>", text).group(1)
    b = re.search(r"<sumb>\s*([0-9a-fA-F]+)\s*</sumb>", text).group(1)
    return int(a, 16), int(b, 16)


def _xml(s):
    return (s + "\0").encode()  # QIO writes C strings including the terminating NUL


def write_ildg(path, U, precision=64, with_ildg_format=True, with_checksum=True,
               lfn="lfn://lattice_hpc/reference"):
    """Write a LIME file laid out as QIO (lib/qio/QIO_write.c) writes a single-file lattice.

    Message 1: scidac-private-file-xml (MB), scidac-file-xml (ME).
    Message 2: scidac-private-record-xml (MB), scidac-record-xml, [ildg-format, ildg-data-lfn],
    ildg-binary-data | scidac-binary-data, scidac-checksum (ME).  QIO puts the LFN record right
    after ildg-format, before the binary data.  ``with_ildg_format=False`` gives a plain SciDAC file
    (scidac-binary-data; dims only in the private file XML, precision in the private record XML).
    ``lfn=None`` omits ildg-data-lfn.
    """
    X, Y, Z, T = _dims(U)
    F = "F" if precision == 32 else "D"
    date = time.strftime("%a %b %d %H:%M:%S %Y UTC", time.gmtime())
    recs = [
        ("scidac-private-file-xml", _xml(
            '<?xml version="1.0" encoding="UTF-8"?><scidacFile><version>1.1</version>'
            f"<spacetime>4</spacetime><dims>{X} {Y} {Z} {T} </dims><volfmt>0</volfmt></scidacFile>")),
        ("scidac-file-xml", _xml('<?xml version="1.0"?><info>lattice_hpc reference</info>')),
        ("scidac-private-record-xml", _xml(
            '<?xml version="1.0" encoding="UTF-8"?><scidacRecord><version>1.1</version>'
            f"<date>{date}</date><recordtype>0</recordtype><datatype>QDP_{F}3_ColorMatrix</datatype>"
            f"<precision>{F}</precision><colors>3</colors><spins>1</spins>"
            f"<typesize>{72 if precision == 32 else 144}</typesize><datacount>4</datacount>"
            "</scidacRecord>")),
        ("scidac-record-xml", _xml('<?xml version="1.0"?><info>lattice_hpc reference</info>')),
    ]
    if with_ildg_format:
        recs.append(("ildg-format", _xml(
            '<?xml version="1.0" encoding="UTF-8"?><ildgFormat xmlns="http://www.lqcd.org/ildg" '
            'xmlns:xsi="http://www.w3.org/2001/XMLSchema-instance" '
            'xsi:schemaLocation="http://www.lqcd.org/ildg/filefmt.xsd"><version>1.0</version>'
            f"<field>su3gauge</field><precision>{precision}</precision>"
            f"<lx>{X}</lx><ly>{Y}</ly><lz>{Z}</lz><lt>{T}</lt></ildgFormat>")))
        if lfn is not None:
            recs.append(("ildg-data-lfn", _xml(lfn)))
    recs.append(("ildg-binary-data" if with_ildg_format else "scidac-binary-data",
                 _ildg_bytes(U, precision)))
    if with_checksum:
        a, b = scidac_checksum(U, precision)
        recs.append(("scidac-checksum", _xml(
            '<?xml version="1.0" encoding="UTF-8"?><scidacChecksum><version>1.0</version>'
            f"<suma>{a:x}</suma><sumb>{b:x}</sumb></scidacChecksum>")))
    with open(path, "wb") as f:
        for i, (typ, data) in enumerate(recs):
            mb = i in (0, 2)
            me = i == 1 or i == len(recs) - 1
            f.write(_lime_record(typ, data, mb, me))


def _xml_int(text, tag):
    m = re.search(rf"<{tag}>\s*([^<]*?)\s*</{tag}>", text)
    return None if m is None else m.group(1)


def read_ildg(path):
    """(U, info) from an ILDG or SciDAC LIME gauge file; info has 'precision', 'dims' (X,Y,Z,T),
    'checksum' ((suma, sumb) or None) and 'computed_checksum'."""
    with open(path, "rb") as f:
        buf = f.read()
    recs = {}
    for typ, off, n in read_lime_records(path):
        recs.setdefault(typ, buf[off:off + n])
    if "ildg-format" in recs:
        t = recs["ildg-format"].rstrip(b"\0").decode()
        prec = int(_xml_int(t, "precision"))
        dims = tuple(int(_xml_int(t, k)) for k in ("lx", "ly", "lz", "lt"))
    else:
        t = recs["scidac-private-file-xml"].rstrip(b"\0").decode()
        dims = tuple(int(v) for v in _xml_int(t, "dims").split())
        t = recs["scidac-private-record-xml"].rstrip(b"\0").decode()
        prec = 32 if _xml_int(t, "precision") == "F" else 64
    data = recs.get("ildg-binary-data", recs.get("scidac-binary-data"))
    X, Y, Z, T = dims
    U = np.frombuffer(data, dtype=">c8" if prec == 32 else ">c16").astype(np.complex128)
    U = U.reshape(T, Z, Y, X, 4, 3, 3)
    ck = parse_scidac_checksum(recs["scidac-checksum"]) if "scidac-checksum" in recs else None
    return U, {"precision": prec, "dims": dims, "checksum": ck,
               "computed_checksum": scidac_checksum(U, prec)}


# ------------------------------------------------------------------------------------------ NERSC
def nersc_checksum(raw, precision, byteorder):
    """NERSC CHECKSUM: 32-bit wrap-around sum of the data section read as uint32 words in host
    order after conversion from file order (Grid BinaryIO; MILC io_lat4.c archive writer).  A
    double contributes both of its 32-bit halves, so the value is host-independent."""
    e = ">" if byteorder == "big" else "<"
    if precision == 32:
        words = np.frombuffer(raw, dtype=e + "u4").astype(np.uint64)
    else:
        q = np.frombuffer(raw, dtype=e + "u8")
        words = np.concatenate([q & 0xFFFFFFFF, q >> 32]).astype(np.uint64)
    return int(words.sum() & 0xFFFFFFFF)


_FP = {(64, "big"): "IEEE64BIG", (32, "big"): "IEEE32BIG",
       (64, "little"): "IEEE64LITTLE", (32, "little"): "IEEE32LITTLE"}


def write_nersc(path, U, precision=64, rows=3, byteorder="big"):
    """NERSC archive file: ASCII "KEY = value" lines between BEGIN_HEADER and END_HEADER (each
    ending in '\\n', as Grid's dump_meta_data and MILC's archive writer), then the binary data:
    sites x fastest, per site dirs x,y,z,t, each matrix row-major (first ``rows`` rows only)."""
    X, Y, Z, T = _dims(U)
    e = ">" if byteorder == "big" else "<"
    data = np.ascontiguousarray(U[..., :rows, :]).astype(
        e + ("c8" if precision == 32 else "c16")).tobytes()
    hdr = [("HDR_VERSION", "1.0"),
           ("DATATYPE", "4D_SU3_GAUGE_3x3" if rows == 3 else "4D_SU3_GAUGE"),
           ("STORAGE_FORMAT", "1.0"),
           ("DIMENSION_1", X), ("DIMENSION_2", Y), ("DIMENSION_3", Z), ("DIMENSION_4", T),
           ("CHECKSUM", f"{nersc_checksum(data, precision, byteorder):x}"),
           ("LINK_TRACE", f"{link_trace(U):.10f}"), ("PLAQUETTE", f"{plaquette(U):.10f}")]
    hdr += [(f"BOUNDARY_{i}", "PERIODIC") for i in range(1, 5)]
    hdr += [("ENSEMBLE_ID", "lattice_hpc"), ("ENSEMBLE_LABEL", "reference"),
            ("SEQUENCE_NUMBER", 1), ("FLOATING_POINT", _FP[(precision, byteorder)])]
    text = "BEGIN_HEADER\n" + "".join(f"{k} = {v}\n" for k, v in hdr) + "END_HEADER\n"
    with open(path, "wb") as f:
        f.write(text.encode() + data)


def reconstruct_third_row(M, dtype=np.complex128):
    """Row 2 = conj(row0 x row1) (Grid MetaData.h reconstruct3; MILC complete_U), in ``dtype``."""
    a, b = M[..., 0, :].astype(dtype), M[..., 1, :].astype(dtype)
    return np.conj(np.cross(a, b))


def read_nersc(path, reconstruct_dtype=np.complex128):
    """(U, header dict, computed checksum) from a NERSC archive file (3x3 or two-row)."""
    with open(path, "rb") as f:
        buf = f.read()
    end = buf.index(b"END_HEADER")
    start = buf.index(b"\n", end) + 1
    hdr = {}
    for line in buf[:end].decode().splitlines()[1:]:
        if "=" in line:
            k, v = line.split("=", 1)
            hdr[k.strip()] = v.strip()
    X, Y, Z, T = (int(hdr[f"DIMENSION_{i}"]) for i in range(1, 5))
    fp = hdr["FLOATING_POINT"]
    prec = 32 if "32" in fp else 64
    order = "little" if fp.endswith("LITTLE") or fp in ("IEEE32", "IEEE64") else "big"
    rows = 3 if hdr["DATATYPE"].endswith("3x3") else 2
    e = ">" if order == "big" else "<"
    raw = buf[start:start + X * Y * Z * T * 4 * rows * 3 * (8 if prec == 32 else 16)]
    V = np.frombuffer(raw, dtype=e + ("c8" if prec == 32 else "c16")).reshape(
        T, Z, Y, X, 4, rows, 3)
    U = np.zeros((T, Z, Y, X, 4, 3, 3), dtype=np.complex128)
    U[..., :rows, :] = V
    if rows == 2:
        U[..., 2, :] = reconstruct_third_row(V, reconstruct_dtype)
    return U, hdr, nersc_checksum(raw, prec, order)


# ------------------------------------------------------------------------------------------- MILC
MILC_MAGIC = 20103  # GAUGE_VERSION_NUMBER 0x4e87 (MILC include/file_types.h, io_lat.h)


def milc_checksum(U):
    """(sum29, sum31) of a MILC v5 file (MILC generic/io_lat4.c, accum_cksums in w_serial).

    The data are N float32 words v(i), i = 0..N-1 in file order (site-major, per site 4 x 18
    floats); sum29 ^= rotl32(v(i), i % 29) and sum31 ^= rotl32(v(i), i % 31), with v(i) the
    32-bit value as represented in the writer's memory (i.e. the IEEE bit pattern), so the two
    numbers do not depend on the file's byte order.  The rotation index is the WORD index."""
    v = np.ascontiguousarray(U).astype("<c8").view("<u4").ravel()
    s29 = s31 = 0
    for i, w in enumerate(v.tolist()):
        s29 ^= _rotl32(w, i % 29)
        s31 ^= _rotl32(w, i % 31)
    return s29, s31


def write_milc(path, U, byteorder="little"):
    """MILC version-5 binary lattice (serial, natural order), as swrite_gauge_hdr + write_checksum
    + w_serial in MILC generic/io_lat4.c write it, all in the writer's byte order:
    int32 magic 20103, int32 dims nx ny nz nt, char time_stamp[64], int32 order (0 = natural),
    u32 sum29, u32 sum31 (header 88 bytes, data at byte 96), then per site (x fastest) the four
    links x,y,z,t as single-precision 3x3 complex row-major matrices.  The ASCII .info side file
    is not written."""
    X, Y, Z, T = _dims(U)
    e = "<" if byteorder == "little" else ">"
    stamp = time.strftime("%a %b %d %H:%M:%S %Y").encode().ljust(64, b"\0")
    s29, s31 = milc_checksum(U)
    with open(path, "wb") as f:
        f.write(struct.pack(e + "5i", MILC_MAGIC, X, Y, Z, T) + stamp + struct.pack(e + "i", 0))
        f.write(struct.pack(e + "2I", s29, s31))
        f.write(np.ascontiguousarray(U).astype(e + "c8").tobytes())


def read_milc(path):
    """(U, (sum29, sum31) stored, (sum29, sum31) computed); byte order detected from the magic."""
    with open(path, "rb") as f:
        buf = f.read()
    e = "<" if struct.unpack("<i", buf[:4])[0] == MILC_MAGIC else ">"
    _magic, X, Y, Z, T = struct.unpack(e + "5i", buf[:20])
    stored = struct.unpack(e + "2I", buf[88:96])
    U = np.frombuffer(buf[96:96 + X * Y * Z * T * 288], dtype=e + "c8").astype(np.complex128)
    U = U.reshape(T, Z, Y, X, 4, 3, 3)
    return U, stored, milc_checksum(U)


# ----------------------------------------------------------------------------------------- openQCD
_OQ_MU = (3, 0, 1, 2)  # openQCD direction 0,1,2,3 = t,x,y,z -> our mu


def openqcd_plaquette(U):
    """The header value of openQCD's export_cnfg: plaq_sum_dble(1) / (6*N0*N1*N2*N3), the sum of
    Re tr U(p) (NOT divided by 3) over all plaquettes; equals 3 * plaquette(U) (1 -> 3.0)."""
    return 3.0 * plaquette(U)


def _openqcd_links(shape):
    """For each odd point in openQCD's file order: ``[(forward index, backward index), ...]`` for
    openQCD directions 0..3, as index tuples ``(t, z, y, x, mu)`` into our (T, Z, Y, X, 4) layout."""
    T, Z, Y, X = shape[:4]
    for t in range(T):
        for x in range(X):
            for y in range(Y):
                for z in range(Z):
                    if (t + x + y + z) % 2 == 0:
                        continue
                    pairs = []
                    for oq in range(4):
                        mu = _OQ_MU[oq]
                        m = [t, z, y, x]
                        m[_AXIS[mu]] = (m[_AXIS[mu]] - 1) % shape[_AXIS[mu]]  # x - mu
                        pairs.append(((t, z, y, x, mu), (m[0], m[1], m[2], m[3], mu)))
                    yield pairs


def write_openqcd(path, U):
    """openQCD export format (modules/archive/archive.c export_cnfg; main/README.io).

    Little-endian: int32 N0, N1, N2, N3 (= T, X, Y, Z), float64 average plaquette (see
    openqcd_plaquette), then for every ODD point (x0+x1+x2+x3 odd) in lexicographic order
    ix = x3 + N3*(x2 + N2*(x1 + N1*x0)) (x3 = z fastest, x0 = t slowest) the 8 matrices
    U(x,0), U(x-0,0), U(x,1), U(x-1,1), U(x,2), U(x-2,2), U(x,3), U(x-3,3), where U(x-mu,mu)
    is the link from x-mu to x, each 3x3 row-major complex double (su3_dble c11, c12, ... c33)."""
    T, Z, Y, X = U.shape[:4]
    out = [struct.pack("<4i", T, X, Y, Z), struct.pack("<d", openqcd_plaquette(U))]
    for pairs in _openqcd_links(U.shape):
        for fwd, bwd in pairs:
            out.append(U[fwd].astype("<c16").tobytes())
            out.append(U[bwd].astype("<c16").tobytes())
    with open(path, "wb") as f:
        f.write(b"".join(out))


def read_openqcd(path):
    """(U, header plaquette) from an openQCD exported configuration (inverse of write_openqcd)."""
    with open(path, "rb") as f:
        buf = f.read()
    T, X, Y, Z = struct.unpack("<4i", buf[:16])
    plaq = struct.unpack("<d", buf[16:24])[0]
    M = np.frombuffer(buf[24:], dtype="<c16").reshape(-1, 8, 3, 3)
    U = np.zeros((T, Z, Y, X, 4, 3, 3), dtype=np.complex128)
    for k, pairs in enumerate(_openqcd_links(U.shape)):
        for oq, (fwd, bwd) in enumerate(pairs):
            U[fwd] = M[k, 2 * oq]
            U[bwd] = M[k, 2 * oq + 1]
    return U, plaq
