"""``lattice-hpc run`` with job type ``hmc``: records, decomposition independence, exact restart,
input errors."""

import json

import pytest

from helpers import run_cli as _cli

JOB = """
[job]
type = "hmc"
name = "u1_hmc"
[lattice]
dims = [8, 8]
[action]
group = "U1"
beta = 2.0
[update]
start = "hot"
thermalize = 2
measure = {measure}
seed = 11
[hmc]
trajectory_length = 1.0
integrator = "omelyan"
steps = [3, 2]
reversibility_every = 4
[output]
dir = "{dir}"
log_every = 5
[checkpoint]
every = 3
"""




def _job(tmp_path, name, measure=8):
    path = tmp_path / f"{name}.toml"
    path.write_text(JOB.format(dir=(tmp_path / name).as_posix(), measure=measure))
    return path


def _records(tmp_path, name):
    with open(tmp_path / name / "records.jsonl") as fh:
        return [json.loads(line) for line in fh]


def test_hmc_job_records_and_summary(tmp_path):
    proc = _cli(["run", str(_job(tmp_path, "a"))])
    assert proc.returncode == 0, proc.stderr
    out = json.loads(proc.stdout)
    assert out["complete"] and out["trajectories"] == 10 and out["measurements"] == 8
    for key in ("plaquette", "dH", "exp_minus_dH", "acceptance", "topological_charge"):
        assert len(out[key]) == 2, key
    recs = _records(tmp_path, "a")
    assert [r["trajectory"] for r in recs] == list(range(2, 10))
    rev = [r for r in recs if "reversibility_dU" in r]
    assert rev and all(r["reversibility_dU"] < 1e-10 and abs(r["reversibility_dH"]) < 1e-8 for r in rev)
    for r in recs:
        assert set(r["seconds"]) >= {"total", "integrator", "force_gauge", "dslash"}
        assert abs(r["topological_charge"] - round(r["topological_charge"])) < 1e-9  # 2D: integer


def test_hmc_job_is_the_same_on_two_ranks(tmp_path):
    a = _cli(["run", str(_job(tmp_path, "serial"))])
    b = _cli(["run", str(_job(tmp_path, "two"))], np=2)
    assert a.returncode == 0 and b.returncode == 0, a.stderr + b.stderr
    for x, y in zip(_records(tmp_path, "serial"), _records(tmp_path, "two"), strict=True):
        assert x["accepted"] == y["accepted"]
        assert abs(x["dH"] - y["dH"]) < 1e-9
        assert abs(x["plaquette"] - y["plaquette"]) < 1e-12


def test_hmc_restart_continues_the_uninterrupted_chain(tmp_path):
    whole = _cli(["run", str(_job(tmp_path, "whole"))])
    assert whole.returncode == 0, whole.stderr
    job = _job(tmp_path, "parts", measure=3)
    first = _cli(["run", str(job)])
    second = _cli(["run", str(job), "--set", "update.measure=8"])
    assert first.returncode == 0 and second.returncode == 0, first.stderr + second.stderr
    assert "resuming" in second.stderr
    a, b = _records(tmp_path, "whole"), _records(tmp_path, "parts")
    assert len(a) == len(b) == 8
    for x, y in zip(a, b):
        assert (x["trajectory"], x["dH"], x["plaquette"], x["accepted"]) == \
            (y["trajectory"], y["dH"], y["plaquette"], y["accepted"])  # bitwise


@pytest.mark.parametrize("override,message", [
    ("fermions.flavours=2", "fermions.kappa = 0.0 must be in (0, 0.5)"),
    ("fermions.flavours=2 fermions.kappa=0.25 fermions.csw=1.0", "clover term is implemented for 4D SU3"),
    ("lattice.dims=[4,4,4] fermions.flavours=2 fermions.kappa=0.1", "needs a 4D SU3 lattice or a 2D U1"),
    ("measure.condensate_every=1", "measure.condensate_every = 1 needs 4D SU3 or 2D U1 and fermions.kappa"),
    ("hmc.steps=[0]", "hmc.steps"),
    ("hmc.gauge_level=3", "hmc.gauge_level = 3 is not a level"),
    ("hmc.integrator=\"verlet\"", "hmc.integrator"),
])
def test_bad_hmc_input_names_the_key(tmp_path, override, message):
    sets = [a for kv in override.split() for a in ("--set", kv)]
    proc = _cli(["run", str(_job(tmp_path, "bad"))] + sets)
    assert proc.returncode == 2 and message in proc.stderr, proc.stderr
    assert not (tmp_path / "bad").exists()


NF2_JOB = """
[job]
type = "hmc"
name = "nf2"
[lattice]
dims = [4, 4, 4, 4]
[action]
group = "SU3"
beta = 5.0
[update]
start = "hot"
thermalize = 1
measure = 2
seed = 5
[hmc]
steps = [2, 2]
no_metropolis = 1
[fermions]
flavours = 2
kappa = 0.11
csw = 1.0
hasenbusch_kappa = 0.08
[measure]
pion_every = 1
flow_every = 2
flow_epsilon = 0.05
flow_tmax = 1.5
[output]
dir = "{dir}"
"""


def test_nf2_clover_hasenbusch_job_with_pion_and_flow(tmp_path):
    job = tmp_path / "nf2.toml"
    job.write_text(NF2_JOB.format(dir=(tmp_path / "nf2").as_posix()))
    proc = _cli(["run", str(job)])
    assert proc.returncode == 0, proc.stderr
    out = json.loads(proc.stdout)
    assert out["complete"] and out["measurements"] == 2
    recs = _records(tmp_path, "nf2")
    for r in recs:
        assert set(r["monomials"]) == {"pf", "pf_ratio", "pf_logdet", "gauge"}
        assert r["monomials"]["pf"]["iterations"] > 0
        assert len(r["pion"]) == 4 and all(c > 0 for c in r["pion"])
        assert r["seconds"]["dslash"] > 0 and 0 < r["seconds"]["dslash_fraction"] < 1
    assert "flow_t0" not in recs[0] and "flow_t0" in recs[1]  # every 2nd measured trajectory
    flow = recs[1]
    if flow["flow_t0"] is not None:
        assert 0 < flow["flow_t0"] < 1.5 and flow["flow_E_t0"] > 0
    else:
        assert "flow_Q_tmax" in flow


SCHWINGER_JOB = """
[job]
type = "hmc"
name = "schwinger"
[lattice]
dims = [8, 8]
[action]
group = "U1"
beta = 2.0
[update]
start = "hot"
thermalize = 2
measure = 6
seed = 7
[hmc]
steps = [4]
reversibility_every = 3
[fermions]
flavours = 2
kappa = 0.26
[measure]
pion_every = 2
condensate_every = 1
condensate_noise = 2
[output]
dir = "{dir}"
[checkpoint]
every = 4
"""


def test_schwinger_nf2_job_records_and_the_same_on_two_ranks(tmp_path):
    """2D U(1) with two Wilson flavours (issue 14's HMC baseline): pion, condensate and charge in the
    records, reversible trajectories, and the same chain on 1 and 2 ranks."""
    for name, ranks in (("one", None), ("two", 2)):
        job = tmp_path / f"{name}.toml"
        job.write_text(SCHWINGER_JOB.format(dir=(tmp_path / name).as_posix()))
        proc = _cli(["run", str(job)], np=ranks)
        assert proc.returncode == 0, proc.stderr
    out = json.loads(proc.stdout)
    assert out["complete"] and out["measurements"] == 6 and "condensate" in out
    a, b = _records(tmp_path, "one"), _records(tmp_path, "two")
    for r in a:
        assert set(r["monomials"]) == {"pf", "gauge"} and r["monomials"]["pf"]["iterations"] > 0
        assert abs(r["topological_charge"] - round(r["topological_charge"])) < 1e-9
        assert r["condensate"] > 0  # (1/V) Tr D^-1 of Wilson fermions at kappa < kappa_c
    assert [len(r.get("pion", [])) for r in a] == [0, 8, 0, 8, 0, 8]  # the 2nd, 4th, ... measurement
    rev = [r for r in a if "reversibility_dU" in r]
    assert rev and all(r["reversibility_dU"] < 1e-10 and abs(r["reversibility_dH"]) < 1e-8 for r in rev)
    for x, y in zip(a, b, strict=True):
        assert x["accepted"] == y["accepted"] and abs(x["dH"] - y["dH"]) < 1e-9
        assert abs(x["plaquette"] - y["plaquette"]) < 1e-12
        assert abs(x["condensate"] - y["condensate"]) < 1e-10
