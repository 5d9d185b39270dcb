"""``lattice-hpc scaling`` (a small study end to end) and the performance model: it reproduces its
calibration points exactly, predicts the others by its formulas, refuses a kernel it has no
measurement for, and extrapolates with the profiles' figures."""

import json
import math
import os

import pytest

from helpers import run_cli
from lattice_hpc.batch import model as M
from lattice_hpc.errors import ConfigError


def _cli(args, cwd, ok=True):
    proc = run_cli(args, cwd=cwd, timeout=900)
    if ok:
        assert proc.returncode == 0, proc.stderr[-3000:]
    return proc


@pytest.mark.parametrize("mode,kernel,dims,expect", [
    ("strong", "dslash", "4,4,4,8", [[4, 4, 4, 8], [4, 4, 4, 8]]),
    ("weak", "halo", "4,4,4,4", [[4, 4, 4, 4], [4, 4, 4, 8]]),
    ("weak", "flow", "8,8", [[8, 8], [8, 16]]),
])
def test_a_scaling_study_writes_its_points_table_and_plots(tmp_path, mode, kernel, dims, expect):
    out = tmp_path / "study"
    _cli(["scaling", mode, "--kernel", kernel, "--ranks", "1,2", "--dims", dims, "--seconds", "0.1",
          "--copy-mib", "8", "--out", str(out)], cwd=str(tmp_path))
    table = json.load(open(out / "table.json"))
    pts = table["points"]
    assert [p["ranks"] for p in pts] == [1, 2] and [p["dims"] for p in pts] == expect
    assert [p["grid"] for p in pts] == [[1] * len(expect[0]), [1] * (len(expect[0]) - 1) + [2]]
    assert pts[0]["efficiency"] == 1.0 and all(p["seconds"] > 0 for p in pts)
    if mode == "strong":
        assert pts[1]["speedup"] == pytest.approx(pts[0]["seconds"] / pts[1]["seconds"])
        assert pts[1]["efficiency"] == pytest.approx(pts[1]["speedup"] / 2)
    else:
        assert pts[1]["efficiency"] == pytest.approx(pts[0]["seconds"] / pts[1]["seconds"])
    for p in pts:
        assert p["copy_GBps_per_rank"] > 0 and p["per_rank"] >= 0
        assert p["oversubscribed"] == (p["ranks"] > os.cpu_count())
        assert os.path.exists(out / "points" / f"{kernel}_{p['ranks']}.json")
    if kernel != "flow":  # the flow's communication is inside autograd: not separated
        assert pts[1]["comm_fraction"] is not None and 0 <= pts[1]["comm_fraction"] <= 1
    for f in ("table.md", "scaling.png", "scaling.pdf"):
        assert os.path.getsize(out / f) > 100
    assert table["command"].startswith(f"lattice-hpc scaling {mode} --kernel {kernel}")


def test_a_point_the_lattice_cannot_take_is_refused_before_anything_runs(tmp_path):
    proc = _cli(["scaling", "strong", "--kernel", "dslash", "--ranks", "1,3", "--dims", "4,4,4,8",
                 "--out", str(tmp_path / "s")], cwd=str(tmp_path), ok=False)
    assert proc.returncode == 2 and "--ranks 3" in proc.stderr
    assert not os.path.exists(tmp_path / "s")


# -- the model on synthetic studies (known numbers, so the formulas are checked exactly) ----------
COPY = {1: 20e9, 2: 12e9, 4: 6e9}  # per rank, bytes/s
ALPHA, BETA, ETA = 3e-6, 4e9, 0.4


def _halo_counts(local, grid):
    return M.faces(local, grid, M.LINK_FACE_REALS, 8)


def _study(folder, kernel, pts):
    os.makedirs(os.path.join(folder, "points"), exist_ok=True)
    table = {"kernel": kernel, "mode": "strong", "machine": "local", "precision": "double",
             "dims": pts[0]["dims"], "points": []}
    for p in pts:
        p = dict(p, copy_GBps_per_rank=COPY[p["ranks"]] / 1e9, oversubscribed=False)
        p["local_dims"] = [d // g for d, g in zip(p["dims"], p["grid"])]
        with open(os.path.join(folder, "points", f"{kernel}_{p['ranks']}.json"), "w") as fh:
            json.dump(p, fh)
        table["points"].append({k: v for k, v in p.items() if k != "raw"})
    with open(os.path.join(folder, "table.json"), "w") as fh:
        json.dump(table, fh)
    return folder


def _synthetic(tmp_path):
    dims = [8, 8, 8, 16]
    grids = {1: [1, 1, 1, 1], 2: [1, 1, 1, 2], 4: [1, 1, 2, 2]}
    halo = []
    for d, r in (([8, 8, 8, 16], 2), ([16, 16, 16, 16], 2), ([8, 8, 8, 16], 4)):
        local = [a // g for a, g in zip(d, grids[r])]
        m, b = _halo_counts(local, grids[r])
        t = m * ALPHA + b / BETA * (1.1 if r == 4 else 1.0)  # the 4-rank point 10% off the line
        halo.append({"ranks": r, "dims": d, "grid": grids[r], "seconds": t,
                     "raw": {"results": [{"messages": m, "bytes_sent_per_rank": b}]}})
    ds = []
    for r in (1, 2, 4):
        local = [a // g for a, g in zip(dims, grids[r])]
        t_mem = math.prod(local) * 2880 / (ETA * COPY[r])
        t_net = M.faces(local, grids[r], 12, 8)
        t_net = t_net[0] * ALPHA + t_net[1] / BETA
        ds.append({"ranks": r, "dims": dims, "grid": grids[r], "seconds": t_mem + t_net})
    return [_study(str(tmp_path / "halo8"), "halo", [halo[0], halo[2]]),
            _study(str(tmp_path / "halo16"), "halo", [halo[1]]),
            _study(str(tmp_path / "dslash"), "dslash", ds)]


def test_the_model_reproduces_its_calibration_points_and_predicts_by_its_formulas(tmp_path):
    studies = [M.load_study(d) for d in _synthetic(tmp_path)]
    model, cal = M.calibrate(studies)
    assert model.alpha == pytest.approx(ALPHA, rel=1e-9) and model.beta == pytest.approx(BETA, rel=1e-9)
    assert model.cal["dslash"]["eta"] == pytest.approx(ETA, rel=1e-12)
    checks = M.validate(model, studies, cal)
    cal_rows = [c for c in checks if c["calibration"]]
    assert len(cal_rows) == 3  # two halo exchanges, the single-rank hop
    assert all(abs(c["error"]) < 1e-12 for c in cal_rows)
    pred = {(c["kernel"], c["ranks"]): c for c in checks if not c["calibration"]}
    # the hop at 2 and 4 ranks: memory and network add up (no overlap on CPU ranks)
    assert abs(pred[("dslash", 2)]["error"]) < 1e-12 and abs(pred[("dslash", 4)]["error"]) < 1e-12
    m, b = _halo_counts([8, 8, 4, 8], [1, 1, 2, 2])
    exact = m * ALPHA + b / BETA
    assert pred[("halo", 4)]["error"] == pytest.approx(exact / (m * ALPHA + 1.1 * b / BETA) - 1, rel=1e-9)


def test_cg_and_hmc_predictions_follow_their_formulas(tmp_path):
    """A CGNE iteration: its single-rank time scaled by volume and copy bandwidth, plus the face
    traffic of two hops and two reductions; a trajectory: its non-Dirac time scaled the same way
    plus its Dirac time in modelled hops."""
    dirs = _synthetic(tmp_path)
    grids = {1: [1, 1, 1, 1], 2: [1, 1, 1, 2], 4: [1, 1, 2, 2]}
    dims = [8, 8, 8, 16]
    t_cg1, t_h1, t_d1 = 2e-3, 1.5, 0.9
    cg = _study(str(tmp_path / "cg"), "cg", [
        {"ranks": r, "dims": dims, "grid": grids[r], "seconds": t_cg1 / r} for r in (1, 2, 4)])
    hmc = _study(str(tmp_path / "hmc"), "hmc", [
        {"ranks": r, "dims": dims, "grid": grids[r], "seconds": t_h1 / r, "dslash_seconds": t_d1 / r}
        for r in (1, 2, 4)])
    studies = [M.load_study(d) for d in dirs + [cg, hmc]]
    model, cal = M.calibrate(studies)
    rows = {(c["kernel"], c["ranks"]): c for c in M.validate(model, studies, cal)}
    assert rows[("cg", 1)]["calibration"] and abs(rows[("cg", 1)]["error"]) < 1e-12
    assert rows[("hmc", 1)]["calibration"] and abs(rows[("hmc", 1)]["error"]) < 1e-12
    for r in (2, 4):
        local = [a // g for a, g in zip(dims, grids[r])]
        scale = (math.prod(local) / math.prod(dims)) * COPY[1] / COPY[r]
        m, b = M.faces(local, grids[r], 12, 8)
        net = m * ALPHA + b / BETA
        cg_expect = t_cg1 * scale + 2 * net + 2 * ALPHA * math.ceil(math.log2(r))
        assert rows[("cg", r)]["model"] == pytest.approx(cg_expect, rel=1e-9)
        hop1 = math.prod(dims) * 2880 / (ETA * COPY[1])
        hop_r = math.prod(local) * 2880 / (ETA * COPY[r]) + net
        hmc_expect = (t_h1 - t_d1) * scale + t_d1 / hop1 * hop_r
        assert rows[("hmc", r)]["model"] == pytest.approx(hmc_expect, rel=1e-9)


def test_two_volumes_give_the_fixed_cost_and_concurrent_hops_the_node_sharing(tmp_path):
    """Single-rank hops of two volumes fix ``t0`` and ``eta`` exactly (both are calibration
    points); the concurrent single-rank hops of the 2-rank points give ``kappa_2``; the 2-rank
    hops are then ``kappa_2 (t0 + V B / (eta B_copy,1)) + t_net``, and a trajectory adds the
    alpha-beta time of the halo exchanges it counted."""
    T0, KAPPA = 2e-4, 1.25
    dirs = _synthetic(tmp_path)[:2]  # the halo studies
    grids = {1: [1, 1, 1, 1], 2: [1, 1, 1, 2]}

    def t1(local):
        return T0 + math.prod(local) * 2880 / (ETA * COPY[1])

    studies = []
    for name, dims in (("d16", [16, 16, 16, 16]), ("d8", [8, 8, 8, 16])):
        pts = []
        for r in (1, 2):
            local = [a // g for a, g in zip(dims, grids[r])]
            m, b = M.faces(local, grids[r], 12, 8)
            t = (KAPPA * t1(local) + m * ALPHA + b / BETA) if r == 2 else t1(local)
            conc = M.FLOPS_PER_SITE * math.prod(local) / (KAPPA * t1(local)) / 1e9
            pts.append({"ranks": r, "dims": dims, "grid": grids[r], "seconds": t,
                        "raw": {"results": [{"concurrent_GFLOPs": conc}] if r == 2 else [{}]}})
        studies.append(_study(str(tmp_path / name), "dslash", pts))
    dims = [8, 8, 8, 8]
    t_h1, t_d1, msgs, nbytes = 1.5, 0.9, 300, 5e7
    hop1 = t1(dims)
    local = [8, 8, 8, 4]
    m, b = M.faces(local, grids[2], 12, 8)
    hop2 = KAPPA * t1(local) + m * ALPHA + b / BETA
    t_h2 = (t_h1 - t_d1) * KAPPA / 2 + msgs * ALPHA + nbytes / BETA + t_d1 / hop1 * hop2
    hmc = _study(str(tmp_path / "hmc"), "hmc", [
        {"ranks": 1, "dims": dims, "grid": grids[1], "seconds": t_h1, "dslash_seconds": t_d1},
        {"ranks": 2, "dims": dims, "grid": grids[2], "seconds": t_h2, "dslash_seconds": 0.5,
         "halo_messages": msgs, "halo_bytes": nbytes}])
    loaded = [M.load_study(d) for d in dirs + studies + [hmc]]
    model, cal = M.calibrate(loaded)
    assert model.cal["dslash"]["t0"] == pytest.approx(T0, rel=1e-9)
    assert model.cal["dslash"]["eta"] == pytest.approx(ETA, rel=1e-9)
    assert model.kappa == {2: pytest.approx(KAPPA, rel=1e-9)}
    rows = M.validate(model, loaded, cal)
    ds = [c for c in rows if c["kernel"] == "dslash"]
    assert [c["calibration"] for c in ds] == [True, False, True, False]
    assert all(abs(c["error"]) < 1e-9 for c in ds)
    h = [c for c in rows if c["kernel"] == "hmc"]
    assert h[0]["calibration"] and not h[1]["calibration"]
    assert abs(h[1]["error"]) < 1e-9
    # without the counted halos the trajectory is predicted short by exactly their time
    bare = model.predict("hmc", local, grids[2], 2, None, COPY[2], [s for s in loaded if
                                                                  s["kernel"] == "hmc"][0]["reference"])
    assert bare == pytest.approx(t_h2 - msgs * ALPHA - nbytes / BETA, rel=1e-9)


def test_an_unphysical_halo_fit_falls_back_and_says_so(tmp_path):
    dirs = _synthetic(tmp_path)
    table = json.load(open(os.path.join(dirs[1], "table.json")))
    table["points"][0]["seconds"] *= 1e-3  # the big exchange faster than the small: alpha < 0
    json.dump(table, open(os.path.join(dirs[1], "table.json"), "w"))
    studies = [M.load_study(d) for d in dirs]
    model, cal = M.calibrate(studies)
    assert model.halo_fit.startswith("through-origin") and model.alpha > 0 and model.beta > 0
    halo = [c for c in M.validate(model, studies, cal) if c["kernel"] == "halo"]
    assert halo and not any(c["calibration"] for c in halo)  # none is passed off as exact


def test_the_model_refuses_a_kernel_it_has_no_measurement_for(tmp_path):
    dirs = _synthetic(tmp_path)
    model, _ = M.calibrate([M.load_study(d) for d in dirs])
    with pytest.raises(ConfigError, match="no measurement of kernel 'cg'"):
        model.predict("cg", [4, 4, 4, 4], [1, 1, 1, 1], 1)
    proc = _cli(["model", "--calibration"] + dirs + ["--kernel", "cg"], cwd=str(tmp_path), ok=False)
    assert proc.returncode == 2 and "no measurement of kernel 'cg'" in proc.stderr
    proc = _cli(["model", "--calibration", str(tmp_path / "none")], cwd=str(tmp_path), ok=False)
    assert proc.returncode == 2 and "not a scaling results folder" in proc.stderr
    io = _study(str(tmp_path / "io"), "io", [{"ranks": 1, "dims": [8, 8, 8, 8], "grid": [1, 1, 1, 1],
                                              "seconds": 1.0}])
    proc = _cli(["model", "--calibration", io] + dirs, cwd=str(tmp_path), ok=False)
    assert proc.returncode == 2 and "no model for kernel 'io'" in proc.stderr
    single = _study(str(tmp_path / "single"), "dslash", [{"ranks": 1, "dims": [8, 8, 8, 8],
                                                          "grid": [1, 1, 1, 1], "seconds": 1.0}])
    t = json.load(open(os.path.join(single, "table.json")))
    t["precision"] = "single"
    json.dump(t, open(os.path.join(single, "table.json"), "w"))
    with pytest.raises(ConfigError, match="mix precisions"):
        M.calibrate([M.load_study(d) for d in dirs + [single]])


def test_the_extrapolation_uses_the_profiles_figures(tmp_path):
    dirs = _synthetic(tmp_path)
    out = tmp_path / "model"
    _cli(["model", "--calibration"] + dirs + ["--machines", "aurora,frontier,perlmutter", "--out",
                                              str(out), "--json"], cwd=str(tmp_path))
    res = json.load(open(out / "model.json"))
    from lattice_hpc.batch.profiles import Profile

    for name in ("aurora", "frontier", "perlmutter"):
        prof = Profile.load(name)
        ex = res["extrapolations"][name]
        lay = prof.layout("gpu")
        bw = prof.figure("gpu_memory_bandwidth") / lay.get("ranks_per_gpu", 1) * 0.85
        assert ex["figures"]["copy_GBps_per_rank"] == pytest.approx(bw)
        weak = ex["weak_32^4_per_gpu"]
        assert weak[0]["nodes"] == 1 and weak[-1]["nodes"] == prof.data["machine"]["nodes"]
        per_gpu = lay.get("ranks_per_gpu", 1)  # Aurora: two tiles share a GPU's 32^4
        assert all(r["local_dims"] == [32, 32, 32, 32 // per_gpu] for r in weak)
        # one node, memory bound: the rank's sites x 2880 bytes at 0.6 of the copy bandwidth
        r0 = weak[0]
        assert r0["memory_seconds"] == pytest.approx(32 ** 4 / per_gpu * 2880 / (0.6 * bw * 1e9))
        assert r0["seconds"] == pytest.approx(max(r0["memory_seconds"], r0["network_seconds"]))
        strong = ex["strong_64^3x128"]
        assert all(r["dims"] == [64, 64, 64, 128] for r in strong) and strong[0]["efficiency"] == 1.0
        assert all(math.prod(r["grid"]) == r["ranks"] for r in strong)
    for f in ("model.md", "model.png", "model.pdf"):
        assert os.path.getsize(out / f) > 100
