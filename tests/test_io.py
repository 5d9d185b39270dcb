"""Gauge-configuration formats: published values, bitwise round trips, independent checksums, bad input.

The writers of :mod:`format_reference` (serial, written from the format specifications apart from
the package's code) produce MILC, openQCD, NERSC and ILDG files that the package must read; the
package's own NERSC/ILDG files are checked with that module's checksum code.
"""

import os
import shutil

import numpy as np
import pytest

import format_reference as ref
from helpers import grids_run, on_grids
from lattice_hpc.comm import self_comm, world
from lattice_hpc.errors import FormatError
from lattice_hpc.gauge import GaugeField, link_trace, plaquette
from lattice_hpc.geometry import Lattice
from lattice_hpc.groups import get_group
from lattice_hpc.io import read_gauge, write_gauge
from lattice_hpc.rng import CounterRNG

# copies of ../shared/data (public configurations; origins in tests/data/README.md), so that a
# clean clone tests itself wherever it lies
DATA = os.path.join(os.path.dirname(__file__), "data")
# (file, format, precision, plaquette, link trace) from ../shared/data/README.md
SHARED = [
    ("chroma_4x4x4x4.nersc", "nersc", "single", 0.0382422893, 0.4630322094),
    ("milc_4x4x4x4.ildg", "ildg", "single", 0.5948501589, 0.6467587374),
    ("pyquda_4x4x4x8_weak.lime", "ildg", "double", 0.9948041323, 0.3794493487),
]
GRIDS = [(1, 1, 1, 1), (1, 1, 1, 2), (1, 1, 2, 2), (2, 1, 1, 2)]


@pytest.fixture
def shared_tmp(tmp_path):
    """A directory that every rank of the job sees (rank 0's tmp_path)."""
    return world().bcast(str(tmp_path))


def _hot_global(dims, seed=5):
    """A Haar-random global field as ``(T, Z, Y, X, 4, 3, 3)`` (format_reference's layout)."""
    lat = Lattice(dims, (1,) * len(dims), comm=self_comm())
    U = GaugeField.hot(lat, get_group("SU3"), CounterRNG(seed))
    return np.moveaxis(U.gather(), 0, -3)


def _gathered_sites(cfg):
    g = cfg.field.gather()
    return None if g is None else np.moveaxis(g, 0, -3)


@pytest.mark.mpi
@pytest.mark.parametrize("name, fmt, precision, plaq, trace", SHARED)
def test_shared_files_read_with_published_values(name, fmt, precision, plaq, trace):
    path = os.path.join(DATA, name)

    def body(lat):
        cfg = read_gauge(path, lat.comm, grid=lat.grid.dims)
        p = plaquette(cfg.field)
        return cfg.info.format, cfg.info.precision, cfg.checksum, p, link_trace(cfg.field), \
            cfg.field.gather()

    dims = (4, 4, 4, 8) if "4x4x4x8" in name else (4, 4, 4, 4)
    res = on_grids(dims, GRIDS, body)
    for key in ["serial"] + grids_run(res):
        f, prec, checksum, p, t, _ = res[key]
        assert (f, prec) == (fmt, precision)
        assert checksum == "ok"
        assert abs(p["plaquette"] - plaq) < 1e-9, key
        assert abs(t - trace) < 1e-9, key
        assert abs(p["plaquette"] - ref.plaquette(np.moveaxis(res["serial"][5], 0, -3))) < 1e-12
        if key != "serial" and world().rank == 0:
            np.testing.assert_array_equal(res[key][5], res["serial"][5])


@pytest.mark.parametrize("precision", ["single", "double"])
def test_nersc_ildg_hdf5_conversions_are_bitwise_and_carry_independent_checksums(tmp_path, precision):
    dims = (4, 4, 4, 8)
    comm = self_comm()
    first = tmp_path / "start.ildg"
    ref.write_ildg(str(first), _hot_global(dims), precision=32 if precision == "single" else 64)
    start = read_gauge(str(first), comm)
    assert start.info.precision == precision and start.checksum == "ok"
    want = _gathered_sites(start)
    field = start.field
    chain = [("a.nersc", "nersc"), ("b.ildg", "ildg"), ("c.h5", "hdf5"), ("d.nersc", "nersc"),
             ("e.h5", "hdf5"), ("f.ildg", "ildg")]
    for name, fmt in chain:
        path = str(tmp_path / name)
        write_gauge(path, field, fmt, precision)
        back = read_gauge(path, comm)
        assert back.info.format == fmt and back.info.precision == precision
        np.testing.assert_array_equal(_gathered_sites(back), want)  # bitwise at equal precision
        field = back.field
        bits = 32 if precision == "single" else 64
        if fmt == "ildg":  # SciDAC checksum recomputed by the independent implementation
            stored = {t: (o, n) for t, o, n in ref.read_lime_records(path)}
            o, n = stored["scidac-checksum"]
            with open(path, "rb") as fh:
                fh.seek(o)
                xml = fh.read(n)
            assert ref.parse_scidac_checksum(xml) == ref.scidac_checksum(want, bits)
            U, info = ref.read_ildg(path)
            np.testing.assert_array_equal(U, want)
        if fmt == "nersc":  # NERSC checksum and header values recomputed independently
            U, header, computed = ref.read_nersc(path)
            np.testing.assert_array_equal(U, want)
            assert int(header["CHECKSUM"], 16) == computed
            assert abs(float(header["PLAQUETTE"]) - ref.plaquette(want)) < 1e-12
            assert abs(float(header["LINK_TRACE"]) - ref.link_trace(want)) < 1e-12


@pytest.mark.mpi
def test_parallel_write_equals_serial_write(shared_tmp):
    """Files written by 1, 2 or 4 ranks on any grid are byte-identical in their data sections."""
    dims = (4, 4, 4, 8)
    src = os.path.join(shared_tmp, "src.ildg")
    if world().rank == 0:
        ref.write_ildg(src, _hot_global(dims, seed=9), precision=64)
    world().barrier()

    def body(lat):
        cfg = read_gauge(src, lat.comm, grid=lat.grid.dims)
        # one name per communicator: single-rank runs happen on every rank at once
        who = f"rank{world().rank}" if lat.comm.size == 1 else f"n{lat.comm.size}"
        tag = "x".join(map(str, lat.grid.dims)) + "-" + who
        out = {}
        for fmt in ("nersc", "ildg", "hdf5"):
            path = os.path.join(shared_tmp, f"{tag}.{fmt}")
            write_gauge(path, cfg.field, fmt, "double", overwrite=True)
            back = read_gauge(path, lat.comm, grid=lat.grid.dims)
            out[fmt] = (back.checksum, back.field.gather())
        return out

    res = on_grids(dims, GRIDS, body)
    if world().rank == 0:
        want = np.moveaxis(_hot_global(dims, seed=9), -3, 0)
        for key in ["serial"] + grids_run(res):
            for fmt, (checksum, field) in res[key].items():
                assert checksum == "ok"
                np.testing.assert_array_equal(field, want)


@pytest.mark.parametrize("byteorder", ["little", "big"])
def test_milc_file_reads_with_checksum(tmp_path, byteorder):
    U = _hot_global((4, 4, 4, 4), seed=3)
    path = str(tmp_path / "lat.milc")
    ref.write_milc(path, U, byteorder=byteorder)
    cfg = read_gauge(path, self_comm())
    assert (cfg.info.format, cfg.info.precision, cfg.checksum) == ("milc", "single", "ok")
    np.testing.assert_array_equal(_gathered_sites(cfg), U.astype(np.complex64).astype(np.complex128))
    # one flipped bit in the data fails the MILC checksum (not just the unitarity check)
    raw = bytearray(open(path, "rb").read())
    raw[96 + 1000] ^= 0x01
    open(path, "wb").write(bytes(raw))
    with pytest.raises(FormatError, match="MILC checksum mismatch"):
        read_gauge(path, self_comm())


@pytest.mark.mpi
def test_openqcd_file_reads_on_every_grid(shared_tmp):
    dims = (4, 4, 4, 8)
    U = _hot_global(dims, seed=4)
    path = os.path.join(shared_tmp, "lat.oqcd")
    if world().rank == 0:
        ref.write_openqcd(path, U)
    world().barrier()
    grids = [(1, 1, 1, 1), (1, 1, 1, 2), (1, 1, 2, 2), (2, 1, 1, 2), (1, 2, 2, 1)]
    res = on_grids(dims, grids, lambda lat: _gathered_sites(read_gauge(path, lat.comm, lat.grid.dims,
                                                                        fmt="openqcd")))
    for key in ["serial"] + grids_run(res):
        if res[key] is not None:
            np.testing.assert_array_equal(res[key], U)


def _bad(tmp_path, name, data: bytes):
    p = tmp_path / name
    p.write_bytes(data)
    return str(p)


def test_bad_files_name_the_file_and_the_problem(tmp_path):
    U = _hot_global((4, 4, 4, 4), seed=6)
    good = {}
    for fmt in ("nersc", "ildg", "milc", "openqcd"):
        path = str(tmp_path / f"good.{fmt}")
        {"nersc": lambda: ref.write_nersc(path, U, 64), "ildg": lambda: ref.write_ildg(path, U, 64),
         "milc": lambda: ref.write_milc(path, U), "openqcd": lambda: ref.write_openqcd(path, U)}[fmt]()
        good[fmt] = open(path, "rb").read()
        assert read_gauge(path, self_comm()).info.format == fmt
    cases = []
    for fmt, data in good.items():
        cases.append((f"trunc.{fmt}", data[:-100], "truncated"))
    n = good["nersc"]
    data_at = n.index(b"END_HEADER\n") + len(b"END_HEADER\n")
    flip = bytearray(n)
    flip[data_at + 123] ^= 0x10
    cases.append(("flip.nersc", bytes(flip), "checksum mismatch"))
    g = good["ildg"]
    flip = bytearray(g)
    flip[len(g) // 2] ^= 0x01
    cases.append(("flip.ildg", bytes(flip), "SciDAC checksum mismatch"))
    cases.append(("dims.nersc", n.replace(b"DIMENSION_4 = 4", b"DIMENSION_4 = 8"),
                  "disagree with the data"))
    cases.append(("dims.ildg", g.replace(b"<lt>4</lt>", b"<lt>8</lt>"), "disagree with the data"))
    cases.append(("plaq.nersc", n.replace(b"PLAQUETTE = ", b"PLAQUETTE = 1"), "PLAQUETTE"))
    cases.append(("unknown.dat", b"\x00\x01garbage" * 50, "unknown format"))
    cases.append(("empty.nersc", b"", "unknown format"))
    for name, data, msg in cases:
        path = _bad(tmp_path, name, data)
        with pytest.raises(FormatError) as exc:
            read_gauge(path, self_comm())
        assert name in str(exc.value) and msg in str(exc.value), (name, str(exc.value))


def test_writers_refuse_to_overwrite(tmp_path):
    lat = Lattice((4, 4, 4, 4), (1, 1, 1, 1), comm=self_comm())
    U = GaugeField.hot(lat, get_group("SU3"), CounterRNG(1))
    U.refresh()
    for fmt in ("nersc", "ildg", "hdf5"):
        path = tmp_path / f"x.{fmt}"
        path.write_bytes(b"precious")
        with pytest.raises(FormatError, match="exists"):
            write_gauge(str(path), U, fmt)
        assert path.read_bytes() == b"precious"
    assert sorted(os.listdir(tmp_path)) == ["x.hdf5", "x.ildg", "x.nersc"]  # no partial files


def test_nersc_two_row_file_reconstructs_the_third_row(tmp_path):
    U = _hot_global((4, 4, 4, 4), seed=8)
    for bits, order in [(32, "big"), (64, "little")]:
        path = str(tmp_path / f"two_rows_{bits}_{order}.nersc")
        ref.write_nersc(path, U, precision=bits, rows=2, byteorder=order)
        cfg = read_gauge(path, self_comm())
        assert cfg.checksum == "ok" and cfg.info.rows == 2
        tol = 1e-6 if bits == 32 else 1e-14
        np.testing.assert_allclose(_gathered_sites(cfg), U, atol=tol)


def test_format_is_detected_by_content(tmp_path):
    """Format detection uses the content, not the file name."""
    src = os.path.join(DATA, "pyquda_4x4x4x8_weak.lime")
    dst = tmp_path / "config.nersc"
    shutil.copy(src, dst)
    assert read_gauge(str(dst), self_comm()).info.format == "ildg"
    with pytest.raises(FormatError, match="not a NERSC file"):
        read_gauge(str(dst), self_comm(), fmt="nersc")


@pytest.mark.parametrize("bits", [32, 64])
def test_scidac_file_without_ildg_format_and_without_checksum(tmp_path, bits):
    """Dims from scidac-private-file-xml, precision from scidac-private-record-xml."""
    U = _hot_global((4, 4, 4, 8), seed=12)
    path = str(tmp_path / "scidac.lime")
    ref.write_ildg(path, U, precision=bits, with_ildg_format=False, with_checksum=True)
    assert "ildg-format" not in [t for t, _o, _n in ref.read_lime_records(path)]
    cfg = read_gauge(path, self_comm())
    assert cfg.info.dims == (4, 4, 4, 8) and cfg.checksum == "ok"
    want = U if bits == 64 else U.astype(np.complex64).astype(np.complex128)
    np.testing.assert_array_equal(_gathered_sites(cfg), want)
    bare = str(tmp_path / "bare.lime")
    ref.write_ildg(bare, U, precision=bits, with_checksum=False)
    assert read_gauge(bare, self_comm()).checksum == "absent"
