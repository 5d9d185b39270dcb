"""The ``lattice-hpc`` command end to end: results JSON, run directory, clear errors, no overwrite."""

import json
import time

import pytest

from helpers import run_cli as _cli, U1_QUENCHED_JOB

JOB = U1_QUENCHED_JOB.replace("{measure}", "40").replace("{log}", "5")




@pytest.fixture
def job(tmp_path):
    path = tmp_path / "job.toml"
    path.write_text(JOB.format(dir=(tmp_path / "run").as_posix()))
    return path


def test_run_prints_results_and_writes_run_dir(job, tmp_path):
    proc = _cli(["run", str(job)])
    assert proc.returncode == 0, proc.stderr
    out = json.loads(proc.stdout)
    assert out["run_dir"] == str(tmp_path / "run")
    mean, err = out["plaquette"]
    assert 0.5 < mean < 0.85 and 0 < err < 0.1
    assert "plaquette_spatial" not in out  # 2D: no spatial planes
    records = (tmp_path / "run" / "records.jsonl").read_text().splitlines()
    assert len(records) == 40
    assert json.loads(records[0])["step"] == 5
    assert "step 5/45" in proc.stderr and "ETA" in proc.stderr
    cfg = json.loads((tmp_path / "run" / "config.json").read_text())
    assert cfg["config"]["action"]["beta"] == 2.0 and len(cfg["config_hash"]) == 64


def test_existing_run_dir_is_not_overwritten(job, tmp_path):
    """A finished run started again resumes at its end: records and results stay as they were."""
    first = _cli(["run", str(job)])
    assert first.returncode == 0
    before = (tmp_path / "run" / "records.jsonl").read_text()
    proc = _cli(["run", str(job)])
    assert proc.returncode == 0, proc.stderr
    assert "already complete" in proc.stderr
    assert (tmp_path / "run" / "records.jsonl").read_text() == before
    a, b = json.loads(first.stdout), json.loads(proc.stdout)
    assert a["plaquette"] == b["plaquette"] and b["steps_this_segment"] == 0


@pytest.mark.parametrize("override,message", [
    ("action.betta=1", "unknown key action.betta (did you mean 'beta'?)"),
    ("update.start=warm", "update.start = 'warm': warm: no such file (give cold, hot, near_identity or the path"),
    ("lattice.dims=[8,7]", "direction t: local extent 7"),
    ("update.measure=0", "update.measure = 0 must be >= 1"),
    ("action.group=SO3", "unknown gauge group 'SO3'"),
])
def test_bad_input_names_the_problem_and_writes_nothing(job, tmp_path, override, message):
    proc = _cli(["run", str(job), "--set", override])
    assert proc.returncode == 2
    assert message in proc.stderr
    assert not (tmp_path / "run").exists()


def test_missing_job_file(tmp_path):
    proc = _cli(["run", str(tmp_path / "nope.toml")])
    assert proc.returncode == 2 and "nope.toml: not found" in proc.stderr


def test_bad_grid_under_mpi_stops_every_rank_quickly(job, tmp_path):
    start = time.time()
    proc = _cli(["run", str(job), "--set", "lattice.grid=1,3"], np=2)
    assert proc.returncode != 0
    assert time.time() - start < 30
    assert "needs 3 ranks but the job has 2" in proc.stderr
    assert not (tmp_path / "run").exists()


def test_two_ranks_run_equals_serial_run(job, tmp_path):
    """The same job on 1 and 2 ranks gives the same chain (plaquettes to rounding)."""
    serial = _cli(["run", str(job)])
    assert serial.returncode == 0, serial.stderr
    (tmp_path / "job2.toml").write_text(JOB.format(dir=(tmp_path / "run2").as_posix()))
    par = _cli(["run", str(tmp_path / "job2.toml"), "--set", "lattice.grid=1,2"], np=2)
    assert par.returncode == 0, par.stderr
    a = [json.loads(l)["plaquette"] for l in (tmp_path / "run" / "records.jsonl").read_text().splitlines()]
    b = [json.loads(l)["plaquette"] for l in (tmp_path / "run2" / "records.jsonl").read_text().splitlines()]
    assert len(a) == len(b) == 40
    assert max(abs(x - y) for x, y in zip(a, b)) < 1e-12


def test_bench_halo_reports_reference_from_same_run():
    proc = _cli(["bench", "halo", "--dims", "4,4,4,8", "--seconds", "0.2"], np=2)
    assert proc.returncode == 0, proc.stderr
    out = json.loads(proc.stdout)
    r = out["results"][0]
    assert r["grid"] == [1, 1, 1, 2] and r["partitioned_directions"] == [3]
    assert r["halo_GBps"] > 0 and r["raw_sendrecv_GBps"] > 0 and "ratio" in r


def test_bench_plaquette_reports_copy_bandwidth():
    proc = _cli(["bench", "plaquette", "--dims", "4,4,4,4", "--seconds", "0.2"])
    assert proc.returncode == 0, proc.stderr
    r = json.loads(proc.stdout)["results"][0]
    assert r["GFLOPs"] > 0 and r["copy_GBps"] > 0 and 0 < r["ratio"]


def test_bench_dslash_weak_scaling_reports_copy_and_single_rank_reference():
    proc = _cli(["bench", "dslash", "--dims", "4,4,4,4", "--local", "--seconds", "0.2",
                 "--copy-mib", "8"], np=2)
    assert proc.returncode == 0, proc.stderr
    out = json.loads(proc.stdout)
    assert out["flops_per_site"] == 1320 and out["bytes_per_site_double"] == 2880
    assert [r["precision"] for r in out["results"]] == ["double", "single"]
    for r in out["results"]:
        assert r["dims"] == [4, 4, 4, 8] and r["local_dims"] == [4, 4, 4, 4]
        assert r["kernel"] == "compiled"
        assert r["GFLOPs"] > 0 and r["copy_GBps"] > 0 and r["ratio"] > 0
        # QUDA's byte model: 2880 (double) or 1440 (single) bytes per 1320 flops
        per_site = 2880 if r["precision"] == "double" else 1440
        assert abs(r["GBps"] / r["GFLOPs"] - per_site / 1320) < 1e-9
        assert r["single_rank_GFLOPs"] > 0 and r["per_rank_ratio"] > 0
        # the decomposition of the weak-scaling shortfall holds exactly (ratios of one run)
        assert r["per_rank_ratio"] == pytest.approx(r["node_sharing"] * r["comm_efficiency"], rel=1e-12)
        assert r["node_sharing"] == pytest.approx(r["concurrent_GFLOPs"] / r["single_rank_GFLOPs"], rel=1e-12)
        assert r["copy_sharing"] > 0 and r["per_rank_ratio_over_copy_sharing"] == pytest.approx(
            r["per_rank_ratio"] / r["copy_sharing"], rel=1e-12)


def test_bench_cg_reports_solves_next_to_the_bare_operator():
    proc = _cli(["bench", "cg", "--dims", "4,4,4,8", "--seconds", "0.2"])
    assert proc.returncode == 0, proc.stderr
    out = json.loads(proc.stdout)
    runs = {(r["precision"], r["solver"]): r for r in out["results"]}
    assert set(runs) == {("double", "cgne"), ("double", "bicgstab"), ("double", "mixed"),
                         ("single", "cgne"), ("single", "bicgstab")}
    for (precision, _), r in runs.items():
        assert r["true_residual"] < (1e-10 if precision == "double" else 1e-5)
        assert r["iterations"] > 0 and 0 < r["ratio"]
    assert runs[("double", "mixed")]["restarts"] >= 2


def test_bench_flow_reports_scaling_memory_and_cost_against_hmc():
    proc = _cli(["bench", "flow", "--local-dims", "4,4", "--batch", "4", "--layers", "8",
                 "--hidden", "4", "--seconds", "0.2", "--cost-dims", "4,4", "--train-steps", "3",
                 "--proposals", "40", "--trajectories", "30", "--hmc-thermalize", "2"], np=2)
    assert proc.returncode == 0, proc.stderr
    out = json.loads(proc.stdout)
    ws = out["weak_scaling"]
    assert ws["global_dims"] == [4, 8] and out["grid"] == [1, 2]
    for side in ("one_rank", "all_ranks"):
        assert ws[side]["seconds_per_train_step"] > 0 and ws[side]["proposals_per_second"] > 0
    # one sample split over two ranks: each saves about half the activations for the backward
    assert 0.4 < out["memory"]["ratio"] < 0.7 and out["memory"]["ideal_ratio"] == 0.5
    c = out["cost_per_independent_sample"]
    assert c["flow"]["proposals"] >= 40 and c["hmc"]["trajectories"] == 30
    assert c["hmc_over_flow"] > 0 and c["flow"]["tau_int_Q"] >= 0.5


def test_bench_flow_compares_the_sweep_flow_from_the_plaquette_start():
    """``--cost-masks sweep --cost-init plaquette``: the comparison's flow is the 2D sweep (its
    own layer count, whatever ``--layers``) started at the one-plaquette map; after 2 training
    steps its acceptance at beta = 2 is near that of a flow exact but for one plaquette."""
    proc = _cli(["bench", "flow", "--local-dims", "4,4", "--batch", "4", "--layers", "8",
                 "--hidden", "4", "--bins", "4", "--seconds", "0.1", "--cost-dims", "4,4",
                 "--cost-masks", "sweep", "--cost-kernel", "ncp", "--cost-init", "plaquette",
                 "--train-steps", "2", "--lr", "1e-4", "--proposals", "300", "--trajectories",
                 "30", "--hmc-thermalize", "2"])
    assert proc.returncode == 0, proc.stderr
    c = json.loads(proc.stdout)["cost_per_independent_sample"]
    assert c["arch"]["masks"] == "sweep" and c["arch"]["layers"] == 6 and c["init"] == "plaquette"
    assert c["flow"]["acceptance"] > 0.4
