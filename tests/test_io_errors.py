"""I/O errors vs corruption when checkpoints are read, and gauge files that fail to be written.

- a checkpoint that could not be read (EIO or EACCES on every rank or on one rank, injected with
  ``LATTICE_HPC_FAULT``; a directory in place of a listed file, a real EISDIR that root gets too)
  raises ``CheckpointUnreadable`` on every rank and leaves every file as it was;
- a truncated or checksum-flipped checkpoint is still corrupt: renamed ``*.corrupt``, the previous
  one is used;
- a write onto a directory or into a missing directory is refused before anything is written,
  and a write that fails midway or at the rename removes its temporary file; the error names the
  target on every rank (in-process, and ``convert`` serial and under ``mpirun -n 2``);
- OS errors that h5py and MPI-IO report only as text are I/O errors; ``collective_io`` ends the
  job with status 2 and its message; ``check_same`` raises ``ConfigError``.

Real system-call failures inside HDF5 and MPI-IO (an LD_PRELOAD shim): tests/test_real_io_errors.py.
MPI tests run on a temporary directory shared by the ranks (rank 0's, broadcast).
"""

import contextlib
import errno
import os
import subprocess
import sys

import numpy as np
import pytest

from helpers import flip_link_byte, run_cli
from lattice_hpc import faults
from lattice_hpc.comm import IO_ERRORS, collective_io, self_comm, world
from lattice_hpc.comm.fileio import BlockFileError, os_error_text
from lattice_hpc.errors import CheckpointError, CheckpointUnreadable, ConfigError, FormatError
from lattice_hpc.gauge import GaugeField
from lattice_hpc.geometry import Lattice
from lattice_hpc.groups import get_group
from lattice_hpc.io import Checkpoint, CheckpointStore, read_checkpoint, write_checkpoint, \
    write_gauge
from lattice_hpc.io.gaugefile import io_errno
from lattice_hpc.rng import CounterRNG

DATA = os.path.join(os.path.dirname(__file__), "data")
NERSC = os.path.join(DATA, "chroma_4x4x4x4.nersc")


@pytest.fixture
def shared_tmp(tmp_path):
    comm = world()
    return comm.bcast(str(tmp_path) if comm.rank == 0 else None)


@contextlib.contextmanager
def fault(spec):
    """``LATTICE_HPC_FAULT=spec`` for the body (the spec cache and the counters reset)."""
    old = os.environ.get("LATTICE_HPC_FAULT")
    os.environ["LATTICE_HPC_FAULT"] = spec
    faults._spec = None
    faults._counts.clear()
    try:
        yield
    finally:
        if old is None:
            os.environ.pop("LATTICE_HPC_FAULT", None)
        else:
            os.environ["LATTICE_HPC_FAULT"] = old
        faults._spec = None
        faults._counts.clear()


def _field(lat, seed):
    U = GaugeField.hot(lat, get_group("SU3"), CounterRNG(seed))
    U.refresh()
    return U


def _store_of_two(directory, comm=None):
    """A store holding checkpoints 10 and 20 (hot SU(3) 4^4 fields); ``(store, lattice, fields)``."""
    comm = comm or world()
    lat = Lattice([4, 4, 4, 4], "auto", comm)
    store = CheckpointStore(directory, comm, keep=2)
    fields = {}
    for step in (10, 20):
        U = _field(lat, step)
        fields[step] = U.gather()
        store.save(step, Checkpoint(U, "double", {"step": step}, {"beta": 5.7}, "h"))
    return store, lat, fields


def _snapshot(directory):
    """``{name: bytes, or "dir" for a directory}`` of everything in ``directory``."""
    out = {}
    for n in sorted(os.listdir(directory)):
        p = os.path.join(directory, n)
        out[n] = "dir" if os.path.isdir(p) else open(p, "rb").read()
    return out


def _on_root(fn, *args):
    comm = world()
    if comm.rank == 0:
        fn(*args)
    comm.barrier()


# -- could not be read -----------------------------------------------------------------------------
@pytest.mark.mpi
@pytest.mark.parametrize("spec, code", [("eio:checkpoint-read", "EIO"),
                                        ("eacces:checkpoint-read", "EACCES")])
def test_io_error_on_every_rank_is_unreadable_and_changes_no_file(shared_tmp, spec, code):
    comm = world()
    d = os.path.join(shared_tmp, "ck")
    store, lat, fields = _store_of_two(d)
    before = _snapshot(d)
    with fault(spec):
        with pytest.raises(CheckpointUnreadable) as exc:
            store.load_latest(lat)
    msg = str(exc.value)
    ranks = "ranks " + ",".join(map(str, range(comm.size))) if comm.size > 1 else "rank 0"
    assert msg.startswith(store.path(20) + ": could not be read (")  # the newest: no fall back
    assert f"{ranks}: {code}" in msg and "not a corrupt checkpoint" in msg
    assert "nothing was renamed or discarded" in msg and "rerun" in msg
    comm.barrier()
    assert _snapshot(d) == before  # names and bytes
    # once the file system answers again, the newest checkpoint is there, intact
    ck = store.load_latest(lat)
    assert ck.path == store.path(20) and ck.state == {"step": 20}
    np.testing.assert_array_equal(ck.field.gather(), fields[20])


@pytest.mark.mpi
def test_io_error_on_rank_1_only_stops_every_rank(shared_tmp):
    comm = world()
    d = os.path.join(shared_tmp, "ck")
    store, lat, fields = _store_of_two(d)
    before = _snapshot(d)
    with fault("eio:checkpoint-read@1"):
        if comm.size == 1:  # no rank 1: the fault never fires, the newest checkpoint is read
            assert store.load_latest(lat).path == store.path(20)
        else:
            with pytest.raises(CheckpointUnreadable, match=r"ckpt_00000020\.h5: could not be read "
                                                           r"\(rank 1: EIO: Input/output error"):
                store.load_latest(lat)
    comm.barrier()
    assert _snapshot(d) == before
    assert not any(n.endswith(".corrupt") for n in os.listdir(d))


@pytest.mark.mpi
def test_directory_in_place_of_the_newest_checkpoint_is_unreadable_not_corrupt(shared_tmp):
    """A real OS error that root gets as well: EISDIR (a directory named like a checkpoint)."""
    d = os.path.join(shared_tmp, "ck")
    store, lat, _ = _store_of_two(d)

    def swap():
        os.remove(store.path(20))
        os.mkdir(store.path(20))

    _on_root(swap)
    before = _snapshot(d)
    with pytest.raises(CheckpointUnreadable, match=r"ckpt_00000020\.h5: could not be read "
                                                   r"\(ranks? [0-9,]+: EISDIR: Is a directory"):
        store.load_latest(lat)
    world().barrier()
    assert _snapshot(d) == before and before["ckpt_00000020.h5"] == "dir"


@pytest.mark.mpi
def test_checkpoint_directory_that_cannot_be_listed_is_unreadable(shared_tmp):
    comm = world()
    lat = Lattice([4, 4, 4, 4], "auto", comm)
    path = os.path.join(shared_tmp, "ck")
    assert CheckpointStore(path, comm).load_latest(lat) is None  # does not exist: a fresh run
    _on_root(lambda: open(path, "wb").write(b"not a directory"))
    with pytest.raises(CheckpointUnreadable, match="ck: the checkpoint directory could not be "
                                                   "listed .*ENOTDIR"):
        CheckpointStore(path, comm).load_latest(lat)
    assert open(path, "rb").read() == b"not a directory"


def test_h5py_errors_are_io_errors_only_when_they_carry_an_errno():
    assert io_errno(OSError("Unable to open file (truncated file: eof = 2048, stored_eof = 9000)")) \
        is None
    assert io_errno(OSError("Unable to open file (file signature not found)")) is None
    assert io_errno(OSError("Can't read data (file read failed: errno = 5, error message = "
                            "'Input/output error', ...)")) == errno.EIO
    assert io_errno(OSError("Can't read data (file read failed: errno = 0, error message = "
                            "'Success')")) is None
    assert io_errno(FileNotFoundError(errno.ENOENT, "Unable to open file")) == errno.ENOENT
    assert io_errno(KeyError("gauge")) is None


def test_os_errors_that_mpi_io_reports_only_as_text_are_io_errors():
    """Under the mpio driver ROMIO's message carries the OS's text but no errno."""
    mpio = OSError("Can't read data (MPI_File_read_at failed: MPI error string is 'Other I/O "
                   "error , error stack:\nADIOI_GEN_READCONTIG(78): Other I/O error Input/output "
                   "error')")
    assert io_errno(mpio) == errno.EIO
    text = os_error_text(mpio)
    assert text.startswith("EIO: Input/output error (Can't read data (MPI_File_read_at failed")
    assert "\n" not in text
    for message, code in [("Unable to open file (Permission denied)", errno.EACCES),
                          ("Can't read data (Stale file handle)", errno.ESTALE),
                          ("Can't write data (No space left on device)", errno.ENOSPC)]:
        assert io_errno(OSError(message)) == code
        assert io_errno(RuntimeError(message)) == code  # h5py raises both
    assert io_errno(ValueError("Input/output error")) is None  # not an I/O exception type
    assert io_errno(OSError("Unable to open file (bad object header version number)")) is None
    err = BlockFileError("/d/x.lime", "written", [None, "EIO: Input/output error, at byte 8"])
    assert isinstance(err, OSError) and isinstance(err, IO_ERRORS)
    assert str(err) == "/d/x.lime: could not be written (rank 1: EIO: Input/output error, at byte 8)"


def test_collective_io_ends_the_job_with_status_2_and_says_why(tmp_path):
    partial = tmp_path / ".x.h5.partial-1"
    partial.write_bytes(b"half")
    code = f"""
import errno, os
from lattice_hpc.comm import collective_io, self_comm
with collective_io(self_comm(), "/d/x.h5: writing the field (collective)",
                   cleanup=lambda: os.remove({str(partial)!r})):
    raise OSError(errno.EIO, "Input/output error")
print("not reached")
"""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PMI_", "HYDRA_"))}
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          timeout=60, env=env)
    assert proc.returncode == 2, proc.stderr
    assert proc.stderr == ("lattice-hpc: error: /d/x.h5: writing the field (collective): EIO: "
                           "Input/output error: an I/O error inside a collective operation; "
                           "ending the job (nothing was renamed, committed or discarded)\n")
    assert proc.stdout == "" and not partial.exists()


def test_collective_io_lets_other_exceptions_and_success_through():
    comm = self_comm()
    with collective_io(comm, "x"):
        pass
    with pytest.raises(KeyError):
        with collective_io(comm, "x"):
            raise KeyError("a bug, not an I/O error: the abort handler's business")


@pytest.mark.mpi
def test_check_same_raises_config_error_on_every_rank():
    comm = world()
    comm.check_same("a", "the value")
    if comm.size > 1:
        with pytest.raises(ConfigError, match=r"the rank differs between ranks: \[0, 1"):
            comm.check_same(comm.rank, "the rank")


# -- still corrupt ---------------------------------------------------------------------------------
@pytest.mark.mpi
@pytest.mark.parametrize("damage", ["truncate", "flip"])
def test_truncated_or_flipped_newest_checkpoint_is_corrupt_and_falls_back(shared_tmp, damage):
    comm = world()
    d = os.path.join(shared_tmp, "ck")
    store, lat, fields = _store_of_two(d)
    newest = store.path(20)

    def spoil():
        if damage == "truncate":
            data = open(newest, "rb").read()
            open(newest, "wb").write(data[: len(data) // 2])
        else:
            flip_link_byte(newest, 0x10)

    _on_root(spoil)
    spoiled = open(newest, "rb").read()
    why = "truncated or corrupt" if damage == "truncate" else "checksum mismatch"
    with pytest.raises(CheckpointError, match=why):
        read_checkpoint(newest, lat)
    ck = store.load_latest(lat)
    assert ck.path == store.path(10) and ck.state == {"step": 10}
    np.testing.assert_array_equal(ck.field.gather(), fields[10])
    comm.barrier()
    assert sorted(os.listdir(d)) == ["ckpt_00000010.h5", "ckpt_00000020.h5.corrupt"]
    assert open(newest + ".corrupt", "rb").read() == spoiled  # kept for inspection


# -- writing ---------------------------------------------------------------------------------------
def _partials(directory):
    return [n for n in os.listdir(directory) if ".partial-" in n]


@pytest.mark.mpi
def test_writes_onto_a_directory_or_into_a_missing_one_are_refused_before_writing(shared_tmp):
    comm = world()
    lat = Lattice([4, 4, 4, 4], "auto", comm)
    U = _field(lat, 3)
    target = os.path.join(shared_tmp, "out.ildg")
    _on_root(os.mkdir, target)
    for fmt in ("ildg", "nersc", "hdf5"):
        for overwrite in (False, True):
            with pytest.raises(FormatError, match=f"{target}: is a directory"):
                write_gauge(target, U, fmt, overwrite=overwrite)
    with pytest.raises(CheckpointError, match=f"{target}: is a directory"):
        write_checkpoint(target, Checkpoint(U), overwrite=True)
    missing = os.path.join(shared_tmp, "nodir", "x.h5")
    with pytest.raises(FormatError, match=f"{missing}: the directory .*nodir does not exist"):
        write_gauge(missing, U, "ildg")
    with pytest.raises(CheckpointError, match=f"{missing}: the directory .*nodir does not exist"):
        write_checkpoint(missing, Checkpoint(U))
    comm.barrier()
    assert sorted(os.listdir(shared_tmp)) == ["out.ildg"] and os.listdir(target) == []


@pytest.mark.mpi
@pytest.mark.parametrize("fmt", ["ildg", "hdf5"])
def test_failed_rename_removes_the_partial_file_and_names_the_target(shared_tmp, fmt, monkeypatch):
    comm = world()
    lat = Lattice([4, 4, 4, 4], "auto", comm)
    U = _field(lat, 4)
    target = os.path.join(shared_tmp, f"out.{fmt}")

    def no_rename(src, dst):
        raise OSError(errno.EXDEV, os.strerror(errno.EXDEV), src, dst)

    monkeypatch.setattr(os, "replace", no_rename)  # the commit (rank 0) fails
    with pytest.raises(FormatError) as exc:
        write_gauge(target, U, fmt)
    monkeypatch.undo()
    msg = str(exc.value)
    assert msg.startswith(f"{target}: could not be written (") and "EXDEV" in msg
    assert ".partial-" not in msg  # names the target, not the temporary file
    comm.barrier()
    assert os.listdir(shared_tmp) == []


@pytest.mark.mpi
def test_io_error_in_the_middle_of_a_checkpoint_write_leaves_the_store_as_it_was(shared_tmp):
    comm = world()
    d = os.path.join(shared_tmp, "ck")
    store, lat, fields = _store_of_two(d)
    before = _snapshot(d)
    spec = "eio:checkpoint-write@1" if comm.size > 1 else "eio:checkpoint-write"
    who = "rank 1" if comm.size > 1 else "rank 0"
    with fault(spec):
        with pytest.raises(CheckpointError, match=rf"ckpt_00000030\.h5: could not be written "
                                                  rf"\({who}: EIO"):
            store.save(30, Checkpoint(_field(lat, 30), "double", {"step": 30}))
    comm.barrier()
    assert _snapshot(d) == before  # no partial file, nothing pruned
    assert store.load_latest(lat).path == store.path(20)


@pytest.mark.parametrize("ranks, force", [(None, False), (None, True), (2, False), (2, True)])
def test_convert_onto_a_directory_exits_2_names_it_and_leaves_nothing(tmp_path, ranks, force):
    target = tmp_path / "out.ildg"
    target.mkdir()
    proc = run_cli(["convert", NERSC, str(target), "--to", "ildg"] + (["--force"] if force else []),
                   np=ranks, timeout=60)
    assert proc.returncode == 2, proc.stderr
    assert f"{target}: is a directory" in proc.stderr and ".partial-" not in proc.stderr
    assert os.listdir(tmp_path) == ["out.ildg"] and os.listdir(target) == []


@pytest.mark.parametrize("ranks", [None, 2])
def test_convert_into_a_missing_directory_exits_2_and_creates_nothing(tmp_path, ranks):
    target = tmp_path / "nodir" / "out.h5"
    proc = run_cli(["convert", NERSC, str(target), "--to", "hdf5"], np=ranks, timeout=60)
    assert proc.returncode == 2, proc.stderr
    assert f"{target}: the directory {tmp_path / 'nodir'} does not exist" in proc.stderr
    assert os.listdir(tmp_path) == []


def test_measure_of_an_unreadable_checkpoint_does_not_call_it_corrupt(tmp_path, monkeypatch):
    lat = Lattice([4, 4, 4, 4], (1, 1, 1, 1), self_comm())
    path = str(tmp_path / "c.h5")
    write_checkpoint(path, Checkpoint(_field(lat, 5)))
    data = open(path, "rb").read()
    monkeypatch.setenv("LATTICE_HPC_FAULT", "eio:checkpoint-read@1")
    proc = run_cli(["measure", path], np=2, timeout=60)
    assert proc.returncode == 2, proc.stderr
    assert f"{path}: could not be read (rank 1: EIO" in proc.stderr
    assert "corrupt" not in proc.stderr.replace("not a corrupt checkpoint", "")
    assert open(path, "rb").read() == data
