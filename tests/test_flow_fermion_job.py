"""Flow jobs with two flavours of Wilson fermions (issue 14): the three determinant treatments.

- each treatment (``exact``, ``pseudofermion``, ``stochastic``) leaves the target invariant: on a
  4x4 Schwinger-model lattice, a chain of each reproduces the exact-determinant expectation value
  of the plaquette within 2 combined sigma, the reference coming from importance sampling of Haar
  fields weighted by ``exp(-S_g) det(D^dag D)`` with dense determinants
  (:mod:`lattice_hpc.fermions.dense`); the exact chain also differs from the quenched value;
- the learned pseudofermion conditional (``proposal = "learned"``) is trained before the chain,
  written to ``conditional.json`` and the summary, and its chain is exact too;
- the ``pseudofermion`` and ``stochastic`` chains (with the learned conditional as well) are the
  same on 1 and 2 ranks (4D SU(3), grid
  1x1x1x2) to rounding, and resume bit-identically after a kill during sampling;
- fermions on a lattice or with a chain they do not fit are refused with a message.
"""

import json

import numpy as np
import pytest

from helpers import run_cli, run_records
from lattice_hpc.fermions.dense import logdet_normal_dense

BETA, KAPPA, L = 0.5, 0.25, 4
KAPPAS = (0.25, 0.15)

JOB = """
[job]
type = "flow"
name = "{name}"
[lattice]
dims = {dims}
grid = "{grid}"
[action]
group = "{group}"
beta = {beta}
[flow]
layers = {layers}
hidden = [{hidden}]
[train]
steps = {steps}
batch = {batch}
lr = 0.003
seed = 3
[sample]
measure = {measure}
batch = {sbatch}
seed = 4
[fermions]
flavours = 2
kappa = {kappa}
determinant = "{det}"
[checkpoint]
every = 4
keep = 10
[output]
dir = "{dir}"
log_every = 100
"""


def _job(tmp_path, name, det, extra="", **kw):
    p = dict(name=name, dims=f"[{L}, {L}]", grid="auto", group="U1", beta=BETA, layers=8,
             hidden=8, steps=20, batch=16, measure=2000, sbatch=500, kappa=KAPPA, det=det,
             dir=(tmp_path / name).as_posix())
    p.update(kw)
    path = tmp_path / f"{name}.toml"
    path.write_text(JOB.format(**p).replace(f'determinant = "{det}"', f'determinant = "{det}"\n{extra}'))
    return str(path), str(tmp_path / name)


def _run(job, np_=None, env=None, ok=True, sets=()):
    args = ["run", job] + [a for s in sets for a in ("--set", s)]
    proc = run_cli(args, np_, env=env, timeout=600)
    if ok:
        assert proc.returncode == 0, proc.stderr[-3000:]
        return json.loads(proc.stdout.strip().splitlines()[-1])
    return proc


def _plaquette(theta):
    tx, tt = theta[:, 0], theta[:, 1]  # directions x (memory axis -1) and t (axis -2)
    P = tx + np.roll(tt, -1, axis=-1) - np.roll(tx, -1, axis=-2) - tt
    return np.cos(P).mean(axis=(-1, -2))


@pytest.fixture(scope="module")
def reference():
    """``<P>`` without the determinant and with it at each kappa of the tests, by importance
    sampling of Haar fields (100k)."""
    rng = np.random.default_rng(2026)
    p, lw, ld = [], [], {k: [] for k in KAPPAS}
    for _ in range(10):
        th = rng.uniform(-np.pi, np.pi, (10000, 2, L, L))
        pl = _plaquette(th)
        p.append(pl)
        lw.append(BETA * pl * L * L)
        links = np.exp(1j * th)[..., None, None]
        for k in KAPPAS:
            ld[k].append(logdet_normal_dense(links, k))
    p, lw = np.concatenate(p), np.concatenate(lw)
    out = {}
    for name, logw in [("quenched", lw)] + [(k, lw + np.concatenate(ld[k])) for k in KAPPAS]:
        w = np.exp(logw - logw.max())
        w /= w.sum()
        m = float((w * p).sum())
        out[name] = (m, float(np.sqrt((w * w * (p - m) ** 2).sum())))
    return out


# (treatment, kappa, extra keys, proposals).  The pseudofermion chains' weights are heavier
# tailed than the exact ones (var log w_fermion ~2 with the triangular conditional, 120 with the
# free one at kappa = 0.25: a few accepted moves in 2000), so their Gamma errors lag: the
# triangular one gets a longer chain (a 16000-proposal chain of it gave -0.4 sigma), the free one
# is tested at kappa = 0.15.  The Hasenbusch factors [0.15, 0.21] bring var log w_fermion to 1.0;
# for the stochastic route they bring var log r from ~120 to 9.7 and the acceptance from 0.02 to
# 0.12 (a 5000-proposal chain: plaquette +1.2 sigma), still too heavy-tailed for a short chain's
# Gamma error, so that route's factors are checked on fixed fields (test_flow_hasenbusch.py) and
# through the job on two ranks and after a kill below.  The pseudofermion Hasenbusch chain uses
# the learned conditional (lattice_hpc.flows.conditional; its dense properties are in
# test_flow_conditional.py), so one chain checks both the factorised weights and the learned
# proposals; the triangular one-factor chain above checks the unlearned proposal.
CASES = [("exact", KAPPA, "", 2000), ("stochastic", KAPPA, "", 2000),
         ("pseudofermion", KAPPA, "", 6000), ("pseudofermion", 0.15, 'proposal = "free"', 1000),
         ("pseudofermion", KAPPA, 'hasenbusch = [0.15, 0.21]\nproposal = "learned"\nconditional_steps = 20\nconditional_batch = 4', 3000)]


@pytest.mark.parametrize("det,kappa,extra,measure", CASES)
def test_each_determinant_treatment_reproduces_the_exact_determinant_plaquette(tmp_path, reference,
                                                                             det, kappa, extra, measure):
    job, rd = _job(tmp_path, det, det, extra, kappa=kappa, measure=measure)
    out = _run(job)
    m, e = out["plaquette"]
    rm, re = reference[kappa]
    sigma = float(np.hypot(e, re))
    print(f"{det} {extra} at kappa {kappa}: plaquette {m:.4f}({e:.4f}) vs exact-determinant reference "
          f"{rm:.4f}({re:.4f}): {(m - rm) / sigma:+.2f} sigma; acceptance "
          f"{out['acceptance'][0]:.3f}; var log w_fermion {out['log_w_fermion_var']:.1f}")
    assert abs(m - rm) < 2 * sigma
    recs = run_records(rd)
    assert len(recs) == measure and all("log_w_fermion" in r for r in recs)
    if "hasenbusch" in extra:  # each factor's part of log w (log r) in the records and summary
        facs = [r["log_w_fermion_factors"] for r in recs if "log_w_fermion_factors" in r]
        assert len(facs) >= measure - 1 and all(len(f) == 3 for f in facs)
        assert len(out["log_w_fermion_var_factors"]) == 3
    assert 0 < out["acceptance"][0] < 1
    if "learned" in extra:  # the trained conditional: its history and parameters
        with open(f"{rd}/conditional.json") as fh:
            cond = json.load(fh)
        assert len(cond["history"]) == 20 and cond["theta"] == out["conditional"]["theta"]
        start = [[0.0, 0.0, 1.0, 1.0, 1.0, 1.0]] * 3  # one set per Hasenbusch factor, from the triangular one
        assert cond["history"][0]["theta"] == start
        assert np.abs(np.array(cond["theta"]) - start).max() > 0.05  # it was trained
    if det == "exact":  # the determinant matters here: the quenched value is excluded
        qm, qe = reference["quenched"]
        assert abs(m - qm) > 2 * np.hypot(e, qe), (m, qm)
        assert rm - qm > 4 * np.hypot(re, qe)


FOUR_D = dict(dims="[4, 4, 4, 4]", group="SU3", beta=1.0, layers=4, hidden=4, steps=2, batch=2,
              measure=8, sbatch=4, kappa=0.1)
OBS = "pion = true\ncondensate_noise = 2"


@pytest.mark.parametrize("det,extra", [("pseudofermion", ""), ("stochastic", ""),
                                       ("stochastic", "hasenbusch = [0.06]"),
                                       ("pseudofermion", 'proposal = "learned"\nhasenbusch = [0.06]\n'
                                                         'conditional_steps = 3\nconditional_batch = 2')])
def test_fermion_chains_are_the_same_on_two_ranks_and_resume_exactly(tmp_path, det, extra):
    obs = OBS + "\n" + extra
    job1, rd1 = _job(tmp_path, "one", det, obs, **FOUR_D)
    _run(job1)
    job2, rd2 = _job(tmp_path, "two", det, obs, **{**FOUR_D, "grid": "1,1,1,2"})
    _run(job2, np_=2)
    a, b = run_records(rd1), run_records(rd2)
    assert len(a) == 8 and [r["accepted"] for r in a] == [r["accepted"] for r in b]
    for x, y in zip(a, b):
        assert abs(x["log_w"] - y["log_w"]) < 1e-9 * max(1.0, abs(y["log_w"]))
        assert abs(x["log_w_fermion"] - y["log_w_fermion"]) < 1e-9 * max(1.0, abs(y["log_w_fermion"]))
        assert abs(x["plaquette"] - y["plaquette"]) < 1e-12
        assert np.allclose(x["pion"], y["pion"], rtol=1e-10) and abs(x["condensate"] - y["condensate"]) < 1e-10
        if extra:  # Hasenbusch: each factor's part of log w (stochastic: from the first acceptance on)
            assert ("log_w_fermion_factors" in x) == ("log_w_fermion_factors" in y)
            if "log_w_fermion_factors" in x:
                assert np.allclose(x["log_w_fermion_factors"], y["log_w_fermion_factors"], rtol=1e-9)
    if extra:
        assert sum("log_w_fermion_factors" in r for r in a) >= len(a) - 2
    for r in a:  # the accepted fields' fermionic observables, kept by rejected proposals
        assert len(r["pion"]) == 4 and all(c > 0 for c in r["pion"]) and r["condensate"] > 0
        assert 0 <= r["polyakov_abs"] < 1
    job3, rd3 = _job(tmp_path, "killed", det, obs, **FOUR_D)
    proc = _run(job3, env={"LATTICE_HPC_FAULT": "kill:step:6"}, ok=False)  # during sampling
    assert proc.returncode != 0
    _run(job3)
    assert run_records(rd3) == a


@pytest.mark.parametrize("sets,message", [
    (["lattice.dims=[4,4,4,4]"], "needs a 2D U1 lattice (the Schwinger model) or a 4D SU3 one"),
    (["fermions.kappa=0.6"], "fermions.kappa = 0.6 must be in (0, 0.5)"),
    (["sample.heatbath_every=3"], "the heatbath is that of the pure gauge action"),
    (["fermions.determinant=\"noisy\""], "fermions.determinant"),
    (["fermions.hasenbusch=[0.1]"], "fermions.hasenbusch factorises the weights of determinant = "
                                    "'pseudofermion'"),
    (["fermions.determinant=\"pseudofermion\"", "fermions.hasenbusch=[0.3]"],
     "the kappas must increase, be positive and stay below fermions.kappa = 0.25"),
    (["fermions.flavours=0", "fermions.hasenbusch=[0.1]"], "but fermions.flavours = 0"),
    (["fermions.determinant=\"stochastic\"", "fermions.proposal=\"learned\""],
     "fermions.proposal = 'learned' is the learned pseudofermion conditional"),
])
def test_fermion_settings_that_do_not_fit_are_refused(tmp_path, sets, message):
    job, rd = _job(tmp_path, "bad", "exact")
    proc = _run(job, ok=False, sets=sets)
    assert proc.returncode == 2 and message in proc.stderr, proc.stderr[-2000:]
