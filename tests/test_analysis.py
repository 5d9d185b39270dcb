"""Error analysis: the Gamma method against exactly known autocorrelations, the binned jackknife,
and ``lattice-hpc analyze`` on synthetic and real run directories.

The reference process is AR(1), ``x_t = a x_{t-1} + sqrt(1 - a^2) eta_t`` with unit variance:
``rho(t) = a^t``, ``tau_int = (1 + a) / (2 (1 - a))`` and the asymptotic error of the mean
``sqrt(2 tau_int / N)``.  Every series is drawn from a seeded generator.
"""

import json

import numpy as np
import pytest

from helpers import run_cli as _cli, U1_QUENCHED_JOB

from lattice_hpc.analysis import (MIN_LENGTH, autocorrelation, binned_jackknife, error_vs_bin_size,
                                  gamma_derived, gamma_method)


def ar1(a, n, seed):
    """A stationary AR(1) series of unit variance (the first value drawn from the stationary law)."""
    eta = np.random.default_rng(seed).standard_normal(n)
    x = np.empty(n)
    x[0] = eta[0]
    c = np.sqrt(1 - a * a)
    for i in range(1, n):
        x[i] = a * x[i - 1] + c * eta[i]
    return x


def tau_exact(a):
    return (1 + a) / (2 * (1 - a))


# --- Gamma method: primary observables ------------------------------------------------------------

@pytest.mark.parametrize("a", [0.9, 0.5])
def test_ar1_tau_int_and_error_match_the_exact_values(a):
    n = 100_000
    x = ar1(a, n, seed=11)
    r = gamma_method(x)
    tau = tau_exact(a)
    assert r.n == n and r.replica == 1 and r.window >= 1
    assert abs(r.tau_int - tau) < 2 * r.dtau_int, (r.tau_int, r.dtau_int, tau)
    # Madras-Sokal: dtau = tau sqrt((4W+2)/N)
    assert r.dtau_int == pytest.approx(r.tau_int * np.sqrt((4 * r.window + 2) / n), rel=1e-12)
    exact_error = np.sqrt(2 * tau / n)
    assert abs(r.error / exact_error - 1) < 0.10, (r.error, exact_error)
    assert r.error_of_error == pytest.approx(r.error * np.sqrt((r.window + 0.5) / n), rel=1e-12)
    assert r.value == x.mean()
    # the uncorrelated estimate underestimates the error by about sqrt(2 tau_int)
    naive = x.std() / np.sqrt(n)
    assert abs(r.error / naive / np.sqrt(2 * tau) - 1) < 0.10
    assert r.error / naive > 1.5


@pytest.mark.parametrize("S", [1.0, 1.5, 2.0])
def test_window_and_bias_correction_follow_wolffs_formulas(S):
    """W is the first W with g(W) = exp(-W/tau(W)) - tau(W)/sqrt(W N) < 0, tau(W) = S /
    ln((2 tau_int(W) + 1)/(2 tau_int(W) - 1)); then C(W) -> C(W) (1 + (2W + 1)/N)."""
    n = 20_000
    x = ar1(0.8, n, seed=13)
    r = gamma_method(x, S=S)
    gam = autocorrelation(x)
    tau_int = 0.5 + np.cumsum(gam[1:]) / gam[0]  # tau_int(W), W = 1, 2, ...

    def g(w):
        ti = tau_int[w - 1]
        tau = S / np.log((2 * ti + 1) / (2 * ti - 1))
        return np.exp(-w / tau) - tau / np.sqrt(w * n)

    w = r.window
    assert g(w) < 0 and all(g(v) >= 0 for v in range(1, w))
    c = gam[0] + 2 * gam[1:w + 1].sum()
    assert r.error ** 2 * n == pytest.approx(c * (1 + (2 * w + 1) / n), rel=1e-10)
    assert r.tau_int == pytest.approx(c * (1 + (2 * w + 1) / n) / (2 * (gam[0] + c / n)), rel=1e-10)
    assert r.rho[0] == 1 and r.rho[1] == pytest.approx((gam[1] + c / n) / (gam[0] + c / n))


def test_short_chains_error_is_nearly_unbiased():
    """Over many short chains (N = 200, tau_int = 2.83) the mean of error^2 matches the exact
    variance of the mean; the bias correction matters here (without it: about 7% low)."""
    a, n, m = 0.7, 200, 8000
    eta = np.random.default_rng(17).standard_normal((m, n))
    x = np.empty((m, n))
    x[:, 0] = eta[:, 0]
    for i in range(1, n):
        x[:, i] = a * x[:, i - 1] + np.sqrt(1 - a * a) * eta[:, i]
    lag = np.abs(np.subtract.outer(np.arange(n), np.arange(n)))
    exact = (a ** lag).sum() / n ** 2
    ratio = np.array([gamma_method(row).error ** 2 for row in x]) / exact
    assert abs(ratio.mean() - 1) < 0.05, (ratio.mean(), ratio.std() / np.sqrt(m))


def test_uncorrelated_series_has_tau_one_half():
    x = np.random.default_rng(5).standard_normal(100_000)
    r = gamma_method(x)
    assert abs(r.tau_int - 0.5) < 2 * r.dtau_int, (r.tau_int, r.dtau_int)
    assert r.window <= 3
    assert abs(r.error / (x.std() / np.sqrt(len(x))) - 1) < 0.02


def test_autocorrelation_fft_equals_direct_sums_with_replica():
    """Gamma(t) = 1/(N - R t) sum_r sum_i d_{i,r} d_{i+t,r}, about the mean of all replica."""
    rng = np.random.default_rng(2)
    reps = [rng.standard_normal(n) + 0.3 * r for r, n in enumerate([40, 23, 31])]
    mean = np.concatenate(reps).mean()
    got = autocorrelation(reps, tmax=15)
    n, R = sum(map(len, reps)), len(reps)
    for t in range(16):
        direct = sum(((x[: len(x) - t] - mean) * (x[t:] - mean)).sum() for x in reps) / (n - R * t)
        assert got[t] == pytest.approx(direct, rel=1e-10, abs=1e-12)
    rho = autocorrelation(ar1(0.5, 100_000, seed=3), tmax=5, normalized=True)
    assert np.max(np.abs(rho - 0.5 ** np.arange(6))) < 0.02


def test_replica_agree_with_one_long_chain():
    a, n = 0.9, 100_000
    long = gamma_method(ar1(a, n, seed=21))
    reps = [ar1(a, n // 4, seed=100 + k) for k in range(4)]
    rep = gamma_method(reps)
    assert rep.replica == 4 and rep.n == n
    assert rep.value == pytest.approx(np.concatenate(reps).mean(), rel=1e-13)
    assert abs(rep.value - long.value) < 3 * np.hypot(rep.error, long.error)
    assert abs(rep.tau_int - long.tau_int) < 2 * np.hypot(rep.dtau_int, long.dtau_int)
    assert abs(rep.error - long.error) < 3 * np.hypot(rep.error_of_error, long.error_of_error)
    assert abs(rep.tau_int - tau_exact(a)) < 2 * rep.dtau_int
    assert abs(rep.error / np.sqrt(2 * tau_exact(a) / n) - 1) < 0.10
    # one chain cut into replica of unequal lengths: same mean, nearly the same tau_int
    x = ar1(a, n, seed=21)
    cut = gamma_method([x[:30_000], x[30_000:55_000], x[55_000:]])
    assert cut.value == pytest.approx(long.value, rel=1e-12, abs=1e-15)
    assert abs(cut.tau_int - long.tau_int) < long.dtau_int


def test_replica_cancel_the_bias_of_a_nonlinear_function():
    """f = A^2 with A = 0: f(abar) is biased by var/N; the replica formula removes the bias."""
    rng = np.random.default_rng(8)
    plain, corrected = [], []
    for _ in range(400):
        reps = [rng.standard_normal(n) for n in (12, 20, 16, 12)]
        plain.append(gamma_derived(lambda m: m[0] ** 2, [np.concatenate(reps)]).value)
        corrected.append(gamma_derived(lambda m: m[0] ** 2, [reps]).value)
    n = 60
    assert abs(np.mean(plain) - 1 / n) < 3 * np.std(plain) / np.sqrt(len(plain))
    assert abs(np.mean(corrected)) < 3 * np.std(corrected) / np.sqrt(len(corrected))
    assert np.mean(plain) > 0.5 / n


# --- Gamma method: derived observables ------------------------------------------------------------

def test_ratio_of_correlated_means_matches_a_binned_jackknife():
    n = 50_000
    u, v = ar1(0.8, n, seed=31), ar1(0.8, n, seed=32)
    x = 1 + 0.1 * u
    y = 2 + 0.1 * (0.6 * u + 0.8 * v)
    r = gamma_derived(lambda m: m[0] / m[1], [x, y])
    assert r.value == pytest.approx(x.mean() / y.mean(), rel=1e-14)
    assert abs(r.tau_int - tau_exact(0.8)) < 2 * r.dtau_int
    _, jk = binned_jackknife(np.column_stack([x, y]), 500, f=lambda m: m[0] / m[1])
    assert abs(r.error / jk - 1) < 0.10, (r.error, jk)
    # the correlation matters: propagating the two errors as if independent is clearly wrong
    ex, ey = gamma_method(x).error, gamma_method(y).error
    independent = np.hypot(ex / y.mean(), x.mean() * ey / y.mean() ** 2)
    assert r.error / independent < 0.85
    # an analytic gradient gives the same
    ra = gamma_derived(lambda m: m[0] / m[1], [x, y], gradient=lambda m: [1 / m[1], -m[0] / m[1] ** 2])
    assert ra.error == pytest.approx(r.error, rel=1e-6)


def test_linear_derived_observable_equals_the_primary_one():
    x, y = ar1(0.7, 20_000, seed=41), ar1(0.2, 20_000, seed=42)
    d = gamma_derived(lambda m: m[0], [x, y])
    p = gamma_method(x)
    assert d.value == pytest.approx(p.value, rel=1e-12)
    assert d.error == pytest.approx(p.error, rel=1e-8)
    assert d.tau_int == pytest.approx(p.tau_int, rel=1e-8) and d.window == p.window


# --- degenerate input -----------------------------------------------------------------------------

def test_constant_series():
    r = gamma_method(np.full(100, 0.1))
    assert r.value == pytest.approx(0.1, rel=1e-15)
    assert (r.error, r.error_of_error, r.tau_int, r.dtau_int, r.window, r.n) == (0, 0, 0.5, 0, 0, 100)
    d = gamma_derived(lambda m: m[0] * m[1], [np.full(50, 3.0), np.full(50, 0.7)])
    assert d.error == 0 and d.tau_int == 0.5 and d.value == pytest.approx(2.1)


def test_too_short_series_is_refused_naming_its_length():
    with pytest.raises(ValueError, match=f"holds 5 measurements.*at least {MIN_LENGTH}"):
        gamma_method(np.arange(5.0))
    with pytest.raises(ValueError, match="replicum 1 .* holds 3 measurements"):
        gamma_method([np.arange(20.0), np.arange(3.0)])


def test_nan_is_refused_naming_its_index():
    x = np.random.default_rng(0).standard_normal(50)
    x[7] = np.nan
    with pytest.raises(ValueError, match="nan.*index 7"):
        gamma_method(x)
    with pytest.raises(ValueError, match="observable 1 .*index 7"):
        gamma_derived(lambda m: m[0] / m[1], [np.ones(50), x])


def test_no_window_warns_and_uses_the_largest():
    """Replica stuck at different levels (chains far too short for their tau): Gamma(t) stays
    positive, tau_int(W) grows like W and no window satisfies the criterion."""
    reps = [ar1(0.5, 100, seed=k) + 5 * (-1) ** k for k in range(8)]
    with pytest.warns(RuntimeWarning, match="no window W <= 50"):
        r = gamma_method(reps)
    assert r.window == 50 and r.tau_int > 30


# --- binned jackknife -----------------------------------------------------------------------------

def test_binned_jackknife_plateau_approaches_the_gamma_error():
    x = ar1(0.9, 100_000, seed=51)
    sizes, errs = error_vs_bin_size(x, [1, 500])
    g = gamma_method(x)
    assert list(sizes) == [1, 500]
    assert errs[0] == pytest.approx(x.std(ddof=1) / np.sqrt(len(x)), rel=1e-10)
    assert abs(errs[1] / g.error - 1) < 0.15, (errs[1], g.error)
    # the default sizes: 1, 2, 4, ... while >= 16 bins remain; the error grows towards the plateau
    sizes, errs = error_vs_bin_size(x)
    assert sizes[0] == 1 and all(b == 2 * a for a, b in zip(sizes, sizes[1:]))
    assert len(x) // sizes[-1] >= 16 > len(x) // (2 * sizes[-1])
    assert errs[0] < errs[3] < errs[6]


# --- lattice-hpc analyze --------------------------------------------------------------------------

JOB = U1_QUENCHED_JOB.replace("{measure}", "200").replace("{log}", "50")




SYNTHETIC = {"a": 0.9, "b": 0.5, "pion[0]": 0.0, "pion[1]": 0.5, "pion[2]": 0.8}


@pytest.fixture(scope="module")
def synthetic_run(tmp_path_factory):
    """A run directory whose records hold AR(1) series with known tau_int."""
    n = 20_000
    d = tmp_path_factory.mktemp("synthetic") / "run"
    d.mkdir()
    data = {k: ar1(a, n, seed=60 + i) for i, (k, a) in enumerate(SYNTHETIC.items())}
    with open(d / "records.jsonl", "w") as fh:
        for i in range(3):  # records flagged as thermalization are dropped
            fh.write(json.dumps({"step": i, "thermalizing": True, "a": 1e6, "b": 1e6,
                                 "pion": [1e6] * 3}) + "\n")
        for i in range(n):
            rec = {"step": i + 3, "seconds": 0.01 * i, "note": "text", "a": data["a"][i],
                   "b": data["b"][i], "pion": [data[f"pion[{k}]"][i] for k in range(3)]}
            if i % 5000 == 0:  # a sparse observable: 4 values
                rec["rare"] = 1.0 + i
            fh.write(json.dumps(rec) + "\n")
    return d, data


def test_analyze_json_on_synthetic_records(synthetic_run):
    d, data = synthetic_run
    proc = _cli(["analyze", str(d), "--json"])
    assert proc.returncode == 0, proc.stderr
    out = json.loads(proc.stdout)
    assert out["run_dir"] == str(d) and out["records"] == 20_003
    obs = out["observables"]
    assert list(obs) == list(SYNTHETIC)  # step, seconds, note and the flag are not observables
    assert out["skipped"] == {"rare": 4} and "rare (4)" in proc.stderr
    for name, a in SYNTHETIC.items():
        e = obs[name]
        assert e["n"] == 20_000
        assert e["mean"] == pytest.approx(data[name].mean(), rel=1e-12, abs=1e-15)
        assert abs(e["tau_int"] - tau_exact(a)) < 3 * e["dtau_int"], (name, e)
        assert e["error"] > 0 and e["jackknife_error"] > 0 and e["window"] >= 1
        assert abs(e["jackknife_error"] / e["error"] - 1) < 0.3
    assert obs["a"]["tau_int"] > 5 * obs["b"]["tau_int"]


def test_analyze_selects_skips_and_prints_a_table(synthetic_run):
    d, _ = synthetic_run
    proc = _cli(["analyze", str(d), "--observables", "pion,a", "--skip", "100", "--json"])
    assert proc.returncode == 0, proc.stderr
    obs = json.loads(proc.stdout)["observables"]
    assert list(obs) == ["pion[0]", "pion[1]", "pion[2]", "a"]
    assert all(e["n"] == 19_900 for e in obs.values())
    table = _cli(["analyze", str(d)])
    assert table.returncode == 0, table.stderr
    lines = table.stdout.splitlines()
    assert "tau_int" in lines[1] and "jackknife" in lines[1]
    for name in SYNTHETIC:
        assert any(line.split()[0] == name for line in lines[3:]), name


def test_analyze_input_errors_exit_2_naming_the_cause(synthetic_run, tmp_path):
    d, _ = synthetic_run
    missing = tmp_path / "nope"
    proc = _cli(["analyze", str(missing)])
    assert proc.returncode == 2 and str(missing) in proc.stderr
    (tmp_path / "empty").mkdir()
    proc = _cli(["analyze", str(tmp_path / "empty")])
    assert proc.returncode == 2 and str(tmp_path / "empty" / "records.jsonl") in proc.stderr
    proc = _cli(["analyze", str(d), "--observables", "plaquette"])
    assert proc.returncode == 2 and "unknown observable 'plaquette'" in proc.stderr
    proc = _cli(["analyze", str(d), "--skip", "19995"])
    assert proc.returncode == 2 and "'a' has 5 measurements" in proc.stderr
    proc = _cli(["analyze", str(d), "--observables", "rare"])
    assert proc.returncode == 2 and "'rare' has 4 measurements" in proc.stderr
    bad = tmp_path / "bad"
    bad.mkdir()
    (bad / "records.jsonl").write_text("".join(json.dumps({"x": float(i % 7)}) + "\n" for i in range(30))
                                       + '{"x": NaN}\n')
    proc = _cli(["analyze", str(bad)])
    assert proc.returncode == 2 and "'x' is nan in record 31" in proc.stderr


def test_analyze_a_real_quenched_run(tmp_path):
    job = tmp_path / "job.toml"
    job.write_text(JOB.format(dir=(tmp_path / "run").as_posix()))
    run = _cli(["run", str(job)])
    assert run.returncode == 0, run.stderr
    summary = json.loads(run.stdout)
    proc = _cli(["analyze", str(tmp_path / "run"), "--json"])
    assert proc.returncode == 0, proc.stderr
    obs = json.loads(proc.stdout)["observables"]
    assert {"plaquette", "link_trace", "polyakov_re", "polyakov_im"} <= set(obs)
    p = obs["plaquette"]
    mean, err = summary["plaquette"]
    assert p["n"] == summary["measurements"] == 200
    assert p["mean"] == pytest.approx(mean, rel=1e-14)
    assert p["jackknife_error"] == pytest.approx(err, rel=1e-12)  # the summary's own estimator
    assert p["error"] >= 0.5 * err and p["tau_int"] > 0 and p["window"] >= 1
