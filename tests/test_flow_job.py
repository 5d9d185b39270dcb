"""Job type ``flow`` end to end: train, sample, records and summary; exact resume after a kill
during training and during sampling; other process grids and data-parallel replicas to rounding;
model reuse; bad input stops with a message that names it and leaves the last checkpoint valid."""

import json
import os

import h5py
import numpy as np
import pytest

from helpers import final_field, run_cli, run_records

JOB = """
[job]
type = "flow"
name = "f"
[lattice]
dims = [4, 4]
grid = "{grid}"
[action]
group = "{group}"
beta = {beta}
[flow]
layers = 8
bins = 4
hidden = [4]
model = "{model}"
[train]
steps = {steps}
batch = 8
lr = 0.01
seed = 5
[sample]
measure = 14
batch = 6
[checkpoint]
every = 3
keep = 10
[output]
dir = "{dir}"
log_every = 4
"""


def _job(tmp_path, name, grid="auto", group="U1", beta=1.5, steps=6, model=""):
    path = tmp_path / f"{name}.toml"
    path.write_text(JOB.format(grid=grid, group=group, beta=beta, steps=steps, model=model,
                               dir=(tmp_path / name).as_posix()))
    return str(path), str(tmp_path / name)


def _run(job, np_=None, env=None, ok=True, sets=()):
    args = ["run", job] + [a for s in sets for a in ("--set", s)]
    proc = run_cli(args, np_, env=env, timeout=400)
    if ok:
        assert proc.returncode == 0, proc.stderr[-3000:]
        return json.loads(proc.stdout.strip().splitlines()[-1])
    return proc


def _weights(run_dir):
    with h5py.File(os.path.join(run_dir, "model.h5"), "r") as f:
        out = {}
        f["weights"].visititems(lambda n, o: out.__setitem__(n, o[()]) if isinstance(o, h5py.Dataset) else None)
        return out


@pytest.fixture(scope="module")
def reference(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("flowref")
    job, rd = _job(tmp, "ref")
    return _run(job), rd


def test_flow_job_trains_samples_and_summarises(reference):
    out, rd = reference
    recs = run_records(rd)
    assert len(recs) == 14 and [r["step"] for r in recs] == list(range(6, 20))
    for k in ("plaquette", "topological_charge_sq", "acceptance", "ess"):
        assert len(out[k]) == 2 and out[k][1] is not None, k
    assert 0 < out["ess"][0] <= 1 and 0 < out["acceptance"][0] <= 1
    assert out["train_kl_last"] > 0  # KL(q || p) = loss + exact ln Z >= 0 (an untrained flow)
    assert all(isinstance(r["accepted"], bool) and np.isfinite(r["log_w"]) for r in recs)
    # a rejected proposal keeps the previous state's observables
    for a, b in zip(recs, recs[1:]):
        if not b["accepted"]:
            assert b["plaquette"] == a["plaquette"]
    hist = json.load(open(os.path.join(rd, "training.json")))
    assert len(hist["loss"]) == 6 and all(np.isfinite(hist["loss"]))
    assert os.path.getsize(os.path.join(rd, "training.png")) > 1000
    assert set(_weights(rd))


@pytest.mark.parametrize("kill_at", [4, 11])  # during training (steps 0-5), during sampling
def test_killed_flow_job_resumes_bit_identically(tmp_path, reference, kill_at):
    ref, ref_dir = reference
    job, rd = _job(tmp_path, "k")
    proc = _run(job, env={"LATTICE_HPC_FAULT": f"kill:step:{kill_at}"}, ok=False)
    assert proc.returncode != 0
    out = _run(job)
    assert run_records(rd) == run_records(ref_dir)
    a, b = final_field(rd), final_field(ref_dir)
    assert np.array_equal(a[0], b[0])
    assert json.load(open(os.path.join(rd, "training.json")))["loss"] == \
        json.load(open(os.path.join(ref_dir, "training.json")))["loss"]
    wa, wb = _weights(rd), _weights(ref_dir)
    assert all(np.array_equal(wa[k], wb[k]) for k in wb)
    assert out["acceptance"] == ref["acceptance"]


@pytest.mark.parametrize("np_,grid", [(2, "1,2"), (4, "1,2"), (4, "2,2")])
def test_other_grids_and_replicas_give_the_same_chain_to_rounding(tmp_path, reference, np_, grid):
    ref, ref_dir = reference
    job, rd = _job(tmp_path, f"g{np_}", grid=grid)
    _run(job, np_=np_)
    ra, rb = run_records(rd), run_records(ref_dir)
    assert [r["accepted"] for r in ra] == [r["accepted"] for r in rb]
    for x, y in zip(ra, rb):
        assert abs(x["log_w"] - y["log_w"]) < 1e-9 * max(1.0, abs(y["log_w"]))
        assert abs(x["plaquette"] - y["plaquette"]) < 1e-12
    wa, wb = _weights(rd), _weights(ref_dir)
    assert all(np.abs(wa[k] - wb[k]).max() < 1e-10 for k in wb)


def test_a_trained_model_is_reused_and_a_mismatch_is_refused(tmp_path, reference):
    _, ref_dir = reference
    model = os.path.join(ref_dir, "model.h5")
    job, rd = _job(tmp_path, "reuse", steps=0, model=model)
    out = _run(job)
    assert 0 < out["acceptance"][0] <= 1 and _weights(rd).keys() == _weights(ref_dir).keys()
    assert all(np.array_equal(_weights(rd)[k], _weights(ref_dir)[k]) for k in _weights(rd))
    for sets, what in ((["flow.layers=4"], "layers: model 8, job 4"),
                       (["flow.bins=5"], "bins: model 4, job 5"),
                       (["lattice.dims=[8,4]"], "dims: model [4, 4], job [8, 4]")):
        job2, rd2 = _job(tmp_path, "bad" + sets[0][5:9], steps=0, model=model)
        proc = _run(job2, ok=False, sets=sets)
        assert proc.returncode == 2 and what in proc.stderr, proc.stderr[-2000:]
        assert not os.path.exists(os.path.join(rd2, "checkpoints"))
    # flow.resize: a model of another lattice size is taken (the same weights), and trains on
    job5, rd5 = _job(tmp_path, "resized", steps=2, model=model)
    out = _run(job5, sets=["lattice.dims=[8,4]", "flow.resize=true"])
    assert 0 <= out["acceptance"][0] <= 1 and _weights(rd5).keys() == _weights(ref_dir).keys()
    job3, _ = _job(tmp_path, "badgroup", steps=0, model=model, group="SU2")
    proc = _run(job3, ok=False)
    assert proc.returncode == 2 and "group: model 'U1', job 'SU2'" in proc.stderr
    job4, _ = _job(tmp_path, "nomodel", steps=0, model=str(tmp_path / "absent.h5"))
    proc = _run(job4, ok=False)
    assert proc.returncode == 2 and "absent.h5: no such model file" in proc.stderr


def test_a_lattice_the_masks_cannot_tile_is_refused_before_anything_is_written(tmp_path):
    job, rd = _job(tmp_path, "tile")
    proc = _run(job, ok=False, sets=["lattice.dims=[6,4]"])
    assert proc.returncode == 2 and "direction x is not a multiple of 4" in proc.stderr
    assert not os.path.exists(rd)


def test_non_finite_action_stops_naming_the_training_step(tmp_path):
    job, rd = _job(tmp_path, "inf", beta=1e308)
    proc = _run(job, ok=False)
    assert proc.returncode == 2 and "training step 0: the loss is -inf" in proc.stderr, proc.stderr[-2000:]
    assert "not applied" in proc.stderr and "no checkpoint was written yet" in proc.stderr


@pytest.mark.parametrize("point,k,what", [("flow-loss", 5, "training step 4: the loss is nan"),
                                          ("flow-log-weight", 2, "proposal 6: its log-weight")])
def test_non_finite_values_stop_naming_them_and_the_last_checkpoint_stays_valid(
        tmp_path, reference, point, k, what):
    """A NaN injected into the 5th training step (after the checkpoint of step 3), or into the
    second batch of proposals (proposals 6-11, after the checkpoint of step 9): the job stops
    naming it, nothing of that step is written, and a rerun without the fault resumes from the
    intact checkpoint and gives the uninterrupted chain."""
    _, ref_dir = reference
    job, rd = _job(tmp_path, "nan" + point)
    proc = _run(job, env={"LATTICE_HPC_FAULT": f"nan:{point}:{k}"}, ok=False)
    assert proc.returncode == 2 and what in proc.stderr, proc.stderr[-2000:]
    assert "is intact" in proc.stderr
    assert run_records(rd) == run_records(ref_dir)[:len(run_records(rd))]
    _run(job)
    assert run_records(rd) == run_records(ref_dir)
    assert np.array_equal(final_field(rd)[0], final_field(ref_dir)[0])


def test_composite_chain_interleaves_heatbath_and_resumes_exactly(tmp_path):
    """Flow proposals with a heatbath + overrelaxation step after every 2: the heatbath steps'
    records come at the right steps, their log q comes from the inverse flow (finite), and a kill
    in the middle resumes bit for bit."""
    job, rd = _job(tmp_path, "comp")
    sets = ["sample.heatbath_every=2", "sample.overrelax=1"]
    _run(job, sets=sets)
    recs = run_records(rd)
    hb = [r["proposal"] for r in recs if r.get("heatbath")]
    assert hb == [i for i in range(14) if i % 3 == 2]
    assert all("accepted" in r for r in recs if not r.get("heatbath"))
    job2, rd2 = _job(tmp_path, "comp2")
    proc = _run(job2, sets=sets, env={"LATTICE_HPC_FAULT": "kill:step:14"}, ok=False)
    assert proc.returncode != 0
    _run(job2, sets=sets)
    assert run_records(rd2) == recs
    assert np.array_equal(final_field(rd2)[0], final_field(rd)[0])
    # after a heatbath step the chain's field changed, so the next record differs in the plaquette
    for a, b in zip(recs, recs[1:]):
        if b.get("heatbath"):
            assert b["plaquette"] != a["plaquette"]


def test_a_run_killed_on_one_rank_resumes_on_two_to_rounding(tmp_path, reference):
    """Killed during sampling on one rank, resumed on a 1x2 grid: the same chain, to rounding."""
    _, ref_dir = reference
    job, rd = _job(tmp_path, "regrid")
    proc = _run(job, env={"LATTICE_HPC_FAULT": "kill:step:11"}, ok=False)
    assert proc.returncode != 0
    _run(job, np_=2, sets=["lattice.grid=1,2"])
    ra, rb = run_records(rd), run_records(ref_dir)
    assert [r["accepted"] for r in ra] == [r["accepted"] for r in rb]
    assert max(abs(x["plaquette"] - y["plaquette"]) for x, y in zip(ra, rb)) < 1e-12


def test_a_key_added_later_counts_as_its_default_when_a_run_resumes():
    """Run directories written before ``flow.kernel_shape`` existed resume (it was ``cube``)."""
    import copy

    from lattice_hpc.driver.config import chain_changes, load_config

    new = load_config(os.path.join(os.path.dirname(__file__), "..", "jobs", "flow_u1_b2.0_8x8.toml"))
    old = copy.deepcopy(new)
    del old["flow"]["kernel_shape"]
    assert chain_changes(old, new) == []
    new["flow"]["kernel_shape"] = "cross"
    assert chain_changes(old, new) == ["flow.kernel_shape: 'cube' -> 'cross'"]


def test_mask_order_added_later_resumes_old_runs_as_stripes_and_models_must_match(tmp_path):
    """``flow.masks`` (default ``planes``) did not exist before: an old 4D run directory resumes
    only as ``stripes``, the order it was made with; in 2D both orders are one and any old run
    resumes.  A 4D model file of the other order is refused, naming the key."""
    import copy

    from lattice_hpc.driver.config import chain_changes, load_config

    src = os.path.join(os.path.dirname(__file__), "..", "jobs", "flow_u1_b2.0_8x8.toml")
    new2 = load_config(src)
    assert new2["flow"]["masks"] == "stripes"  # the canonical 2D form
    old2 = copy.deepcopy(new2)
    del old2["flow"]["masks"]
    assert chain_changes(old2, new2) == []
    job = tmp_path / "su2.toml"
    job.write_text('[job]\ntype = "flow"\nname = "su2"\n[lattice]\ndims = [4, 4, 4, 4]\n'
                   '[action]\ngroup = "SU2"\nbeta = 1.0\n[flow]\nlayers = 2\nhidden = [2]\n'
                   f'[train]\nsteps = 1\nbatch = 1\n[sample]\nmeasure = 1\nbatch = 1\n'
                   f'[output]\ndir = "{tmp_path}/run"\n')
    new4 = load_config(str(job))
    assert new4["flow"]["masks"] == "planes"
    old4 = copy.deepcopy(new4)
    del old4["flow"]["masks"]
    assert chain_changes(old4, new4) == ["flow.masks: 'stripes' -> 'planes'"]
    new4["flow"]["masks"] = "stripes"
    assert chain_changes(old4, new4) == []
    # a model of the stripes order does not fit a planes job (the weights would, silently)
    proc = _run(str(job), sets=["flow.masks=stripes"])
    model = os.path.join(tmp_path, "run", "model.h5")
    assert os.path.isfile(model)
    job2 = tmp_path / "su2b.toml"
    job2.write_text(job.read_text().replace(f'{tmp_path}/run', f'{tmp_path}/run2')
                    .replace("hidden = [2]", f'hidden = [2]\nmodel = "{model}"'))
    proc = _run(str(job2), ok=False)
    assert proc.returncode == 2
    assert "masks: model 'stripes', job 'planes'" in proc.stderr, proc.stderr[-2000:]
    assert not os.path.exists(os.path.join(tmp_path, "run2", "model.h5"))


def test_training_in_single_precision_samples_in_double_and_resumes_exactly(tmp_path):
    """``train.precision = single``: float32 training, then the same weights sample in float64:
    the chain equals that of a double-precision job reusing the float32 model; a kill during
    sampling resumes bit for bit."""
    single = ["train.precision=single"]
    job, rd = _job(tmp_path, "mixed")
    out = _run(job, sets=single)
    with h5py.File(os.path.join(rd, "model.h5"), "r") as f:
        assert json.loads(f.attrs["precision"]) == "single"
    assert all(w.dtype == np.float32 for w in _weights(rd).values())
    job2, rd2 = _job(tmp_path, "as_double", steps=0, model=os.path.join(rd, "model.h5"))
    _run(job2)
    ra, rb = run_records(rd), run_records(rd2)
    assert [r["accepted"] for r in ra] == [r["accepted"] for r in rb]
    for x, y in zip(ra, rb):  # float64 proposals: equal to float64 rounding, not float32's
        assert abs(x["log_w"] - y["log_w"]) < 1e-12 * max(1.0, abs(y["log_w"]))
        assert x["plaquette"] == y["plaquette"]
    job3, rd3 = _job(tmp_path, "mixed_killed")
    proc = _run(job3, env={"LATTICE_HPC_FAULT": "kill:step:11"}, ok=False, sets=single)
    assert proc.returncode != 0
    out3 = _run(job3, sets=single)
    assert run_records(rd3) == ra and out3["acceptance"] == out["acceptance"]


def test_4d_chains_record_the_polyakov_loop_of_the_accepted_field(tmp_path):
    """A 4D pure-gauge chain (flow proposals and heatbath steps) records the Polyakov loop of
    the chain's field: unchanged by a rejected proposal, ``|P| = hypot(Re P, Im P)``, and the
    last record's value is ``(1/N) Tr prod_t U_t`` of the field the chain ends on."""
    job = tmp_path / "su2p.toml"
    job.write_text('[job]\ntype = "flow"\nname = "su2p"\n[lattice]\ndims = [4, 4, 4, 4]\n'
                   '[action]\ngroup = "SU2"\nbeta = 1.0\n[flow]\nlayers = 2\nhidden = [2]\n'
                   '[train]\nsteps = 1\nbatch = 1\n[sample]\nmeasure = 10\nbatch = 3\n'
                   f'heatbath_every = 3\n[output]\ndir = "{tmp_path}/run"\n')
    out = _run(str(job))
    recs = run_records(str(tmp_path / "run"))
    assert len(recs) == 10 and "polyakov_abs" in out
    for a, b in zip(recs, recs[1:]):
        if not b.get("heatbath") and not b["accepted"]:
            assert (b["polyakov_re"], b["polyakov_im"]) == (a["polyakov_re"], a["polyakov_im"])
    assert any(r.get("heatbath") for r in recs)
    for r in recs:
        assert abs(r["polyakov_abs"] - np.hypot(r["polyakov_re"], r["polyakov_im"])) < 1e-15
    links, _ = final_field(str(tmp_path / "run"))
    Ut = links[3]  # the time direction's links, memory axis 0 = t
    prod = Ut[0]
    for t in range(1, Ut.shape[0]):
        prod = prod @ Ut[t]
    p = np.trace(prod, axis1=-2, axis2=-1).mean() / 2
    assert abs(p - complex(recs[-1]["polyakov_re"], recs[-1]["polyakov_im"])) < 1e-12
    assert len({r["polyakov_re"] for r in recs}) > 1


def test_the_sweep_order_with_the_plaquette_start_resumes_exactly_and_bad_keys_are_named(tmp_path):
    """``flow.masks = "sweep"`` with ``train.init = "plaquette"`` as a job: a kill during training
    resumes to the same records (the start is deterministic and only made once); a layer count
    that is not a whole number of sweeps, the start for SU(N), and ``flow.resize`` with the sweep
    (its masks are made for one lattice size) are refused naming the key, before anything is
    written."""
    sweep = ["flow.masks=sweep", "flow.layers=6", "flow.kernel=ncp", "flow.bins=3",
             "train.init=plaquette"]
    job, rd = _job(tmp_path, "sweep")
    out = _run(job, sets=sweep)
    assert 0 < out["acceptance"][0] <= 1
    job2, rd2 = _job(tmp_path, "sweep_killed")
    proc = _run(job2, env={"LATTICE_HPC_FAULT": "kill:step:4"}, ok=False, sets=sweep)
    assert proc.returncode != 0
    out2 = _run(job2, sets=sweep)
    assert run_records(rd2) == run_records(rd) and out2["acceptance"] == out["acceptance"]
    for extra, msg in ((["flow.layers=7"], "flow.layers = 7: the sweep order of a 4x4 lattice has 6"),
                       (["action.group=SU2", "flow.kernel=spline"],
                        "train.init = 'plaquette' starts the kernels of a U(1) flow"),
                       (["flow.resize=true"], "flow.resize = true with flow.masks = 'sweep'")):
        job3, rd3 = _job(tmp_path, "bad")
        proc = _run(job3, ok=False, sets=sweep + extra)
        assert proc.returncode == 2 and msg in proc.stderr, proc.stderr[-2000:]
        assert not os.path.exists(rd3)
