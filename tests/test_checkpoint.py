"""Parallel HDF5 checkpoints: contents, any-grid read back, corruption detection, keep-last-K, fallback."""

import io
import os

import numpy as np
import pytest

from helpers import flip_link_byte, grids_run, on_grids
from lattice_hpc.comm import self_comm, world
from lattice_hpc.comm.fileio import open_h5
from lattice_hpc.errors import BackendError, CheckpointError
from lattice_hpc.gauge import GaugeField
from lattice_hpc.geometry import Lattice
from lattice_hpc.groups import get_group
from lattice_hpc.io import Checkpoint, CheckpointMismatch, CheckpointStore, read_checkpoint, \
    write_checkpoint
from lattice_hpc.rng import CounterRNG

GRIDS = [(1, 1, 1, 1), (1, 1, 1, 2), (1, 1, 2, 2), (2, 1, 1, 2)]


@pytest.fixture
def shared_tmp(tmp_path):
    return world().bcast(str(tmp_path))


def _field(lat, group="SU3", seed=2):
    U = GaugeField.hot(lat, get_group(group), CounterRNG(seed))
    U.refresh()
    return U


def _ckpt(U, precision="double"):
    return Checkpoint(U, precision, state={"step": 7, "sweep": 14, "records": 3},
                      config={"action": {"beta": 6.0}}, config_hash="abc",
                      rng={"generator": "philox4x32-10", "seed": 5},
                      arrays={"acceptance": np.array([1.0, 0.0, 1.0])},
                      blobs={"weights": b"\x00\x01binary\xff"}, provenance={"mpi_size": 1})


@pytest.mark.mpi
def test_checkpoint_written_on_one_grid_reads_back_bitwise_on_every_grid(shared_tmp):
    dims = (4, 4, 4, 8)
    for precision in ("double", "single"):
        path = os.path.join(shared_tmp, f"written_on_{world().size}_{precision}.h5")
        lat = Lattice(dims, "auto", comm=world())  # written by all ranks of the job
        U = _field(lat)
        write_checkpoint(path, _ckpt(U, precision))
        full = U.gather()

        def body(lat2):
            ck = read_checkpoint(path, lat2)
            return ck.state, ck.arrays["acceptance"], ck.blobs["weights"], ck.field.gather()

        res = on_grids(dims, GRIDS, body)
        if world().rank == 0:
            want = full if precision == "double" else full.astype(np.complex64).astype(np.complex128)
            for key in ["serial"] + grids_run(res):
                state, acc, blob, field = res[key]
                assert state == {"step": 7, "sweep": 14, "records": 3}
                np.testing.assert_array_equal(acc, [1.0, 0.0, 1.0])
                assert blob == b"\x00\x01binary\xff"
                np.testing.assert_array_equal(field, want)


def test_checkpoint_holds_provenance_rng_config_and_u1_fields(tmp_path):
    lat = Lattice((8, 8), (1, 1), comm=self_comm())
    U = _field(lat, "U1")
    path = str(tmp_path / "u1.h5")
    write_checkpoint(path, _ckpt(U))
    ck = read_checkpoint(path, lat)
    np.testing.assert_array_equal(ck.field.interior(), U.interior())
    assert ck.rng == {"generator": "philox4x32-10", "seed": 5}
    assert ck.config == {"action": {"beta": 6.0}} and ck.config_hash == "abc"
    assert ck.provenance["mpi_size"] == 1 and ck.precision == "double"


def test_model_weights_blob_round_trips_with_weights_only_load(tmp_path):
    torch = pytest.importorskip("torch")
    lat = Lattice((4, 4, 4, 4), (1, 1, 1, 1), comm=self_comm())
    model = torch.nn.Linear(3, 2)
    buf = io.BytesIO()
    torch.save(model.state_dict(), buf)
    ck = _ckpt(_field(lat))
    ck.blobs = {"flow_model": buf.getvalue()}
    path = str(tmp_path / "m.h5")
    write_checkpoint(path, ck)
    back = read_checkpoint(path, lat).blobs["flow_model"]
    state = torch.load(io.BytesIO(back), weights_only=True)
    for k, v in model.state_dict().items():
        assert torch.equal(state[k], v)


def test_corrupt_truncated_and_foreign_checkpoints_are_reported(tmp_path):
    lat = Lattice((4, 4, 4, 4), (1, 1, 1, 1), comm=self_comm())
    path = str(tmp_path / "c.h5")
    write_checkpoint(path, _ckpt(_field(lat)))
    data = open(path, "rb").read()
    flip_link_byte(path, 0x04)
    with pytest.raises(CheckpointError, match="c.h5: checksum mismatch"):
        read_checkpoint(path, lat)
    trunc = tmp_path / "t.h5"
    trunc.write_bytes(data[: len(data) // 2])
    with pytest.raises(CheckpointError, match="t.h5: .*truncated or corrupt"):
        read_checkpoint(str(trunc), lat)
    good = tmp_path / "g.h5"
    good.write_bytes(data)
    other = Lattice((4, 4, 4, 8), (1, 1, 1, 1), comm=self_comm())
    with pytest.raises(CheckpointMismatch, match="g.h5: checkpoint of a 4,4,4,4 lattice, but this "
                                                 "job's lattice is 4,4,4,8"):
        read_checkpoint(str(good), other)
    with pytest.raises(CheckpointError, match="exists; refusing"):
        write_checkpoint(str(good), _ckpt(_field(lat)))
    assert good.read_bytes() == data


def test_store_keeps_the_last_k_and_falls_back_over_corrupt_ones(tmp_path):
    lat = Lattice((4, 4, 4, 4), (1, 1, 1, 1), comm=self_comm())
    store = CheckpointStore(str(tmp_path / "ck"), self_comm(), keep=2)
    fields = {}
    for step in (10, 20, 30):
        U = _field(lat, seed=step)
        fields[step] = U.interior()
        store.save(step, _ckpt(U))
    assert [os.path.basename(p) for p in store.list()] == ["ckpt_00000030.h5", "ckpt_00000020.h5"]
    flip_link_byte(store.path(30), 0x04)
    (tmp_path / "ck" / ".ckpt_00000040.h5.partial-123").write_bytes(b"half a file")
    ck = store.load_latest(lat)
    assert ck.path.endswith("ckpt_00000020.h5")
    np.testing.assert_array_equal(ck.field.interior(), fields[20])
    names = sorted(os.listdir(tmp_path / "ck"))
    assert names == ["ckpt_00000020.h5", "ckpt_00000030.h5.corrupt"]  # kept, renamed, not deleted
    flip_link_byte(store.path(20), 0x04)
    assert store.load_latest(lat) is None


def test_h5py_without_mpi_fails_fast_on_several_ranks(tmp_path, monkeypatch):
    import h5py

    class Cfg:
        mpi = False

    class FakeComm:
        size, rank, mpi = 2, 0, object()

    monkeypatch.setattr(h5py, "get_config", lambda: Cfg())
    with pytest.raises(BackendError, match="built without MPI support"):
        open_h5(str(tmp_path / "x.h5"), "w", FakeComm())
    assert not (tmp_path / "x.h5").exists()


def test_checkpoint_checksum_is_decomposition_independent_and_sees_every_change():
    from lattice_hpc.io.checksums import lattice_checksum_partial, record_keys

    rng = np.random.default_rng(0)
    words = rng.integers(0, 2**63, (64, 18), dtype=np.uint64)
    keys = record_keys(np.arange(64))
    whole = lattice_checksum_partial(words, keys)
    # any split of the records into blocks adds up (mod 2^64) to the whole
    parts = [lattice_checksum_partial(words[a:b], keys[:, a:b]) for a, b in [(0, 5), (5, 40), (40, 64)]]
    with np.errstate(over="ignore"):
        assert np.array_equal(np.sum(parts, axis=0, dtype=np.uint64), whole)
    for k in range(0, 64 * 18, 97):  # every single-bit flip is seen
        w = words.copy()
        w.flat[k] ^= np.uint64(1) << np.uint64(k % 64)
        assert not np.array_equal(lattice_checksum_partial(w, keys), whole)
    w = words.copy()  # two words swapped inside a record, and two records swapped
    w[3, [0, 1]] = w[3, [1, 0]]
    assert not np.array_equal(lattice_checksum_partial(w, keys), whole)
    w = words.copy()
    w[[3, 4]] = w[[4, 3]]
    assert not np.array_equal(lattice_checksum_partial(w, keys), whole)
