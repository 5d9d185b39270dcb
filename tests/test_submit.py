"""``lattice-hpc submit``: batch scripts from machine profiles, checked by shellcheck and against
the values the profiles ask for; refused requests; chains of segments on the local profile
(bit-identical to an uninterrupted run) and through stand-ins of qsub/sbatch."""

import json
import os
import shutil
import stat
import subprocess
import sys
import sysconfig

import numpy as np
import pytest

from helpers import U1_QUENCHED_JOB, final_field, run_cli, run_records
from lattice_hpc.batch.profiles import Profile, available
from lattice_hpc.batch.scaling import grid_for

MACHINES = ("local", "aurora", "polaris", "perlmutter", "frontier")

SU3_JOB = """
[job]
name = "{name}"
type = "{type}"
[lattice]
dims = {dims}
[action]
group = "SU3"
beta = 6.0
[backend]
name = "{backend}"
[output]
dir = "{dir}"
"""


def _shellcheck():
    return shutil.which("shellcheck") or os.path.join(sysconfig.get_path("scripts"), "shellcheck")


def _job(tmp_path, name="prod", dims="[32, 32, 32, 64]", backend="numpy", type_="quenched"):
    path = tmp_path / f"{name}.toml"
    path.write_text(SU3_JOB.format(name=name, dims=dims, backend=backend, type=type_,
                                   dir=(tmp_path / "runs" / "{name}").as_posix()))
    return str(path)


def _submit(args, cwd, env=None, ok=True, cmd="submit"):
    proc = run_cli([cmd] + args, cwd=cwd, env=env, timeout=600)
    if ok:
        assert proc.returncode == 0, proc.stderr[-3000:]
    return proc


def test_the_five_profiles_exist_and_load():
    assert set(MACHINES) <= set(available())
    for m in MACHINES:
        p = Profile.load(m)
        assert p.name == m and p.scheduler in ("pbs", "slurm", "local")
        assert os.path.exists(os.path.join(os.path.dirname(p.path), os.path.basename(
            p.data["machine"]["environment"]))), m
        for name in p.data.get("figures", {}):
            assert p.data["figures"][name].get("source"), f"{m}: figures.{name} has no source"


def _directives(text, prefix):
    return [ln[len(prefix) + 1:] for ln in text.splitlines() if ln.startswith(prefix + " ")]


def _launch_line(text, launcher):
    lines = [ln for ln in text.splitlines() if ln.startswith(launcher + " ")]
    assert len(lines) == 1, text
    return lines[0]


# every profile with each backend it runs (CuPy does not run on Aurora: its refusal is tested below)
SCRIPTS = [(m, b) for m in MACHINES for b in ("numpy", "cupy") if b == "numpy" or Profile.load(m).cupy]


@pytest.mark.parametrize("machine,backend", SCRIPTS)
def test_scripts_pass_shellcheck_and_carry_what_the_profile_asks_for(tmp_path, machine, backend):
    prof = Profile.load(machine)
    lay_name = "gpu" if backend == "cupy" else "cpu"
    lay = prof.layout(lay_name)
    queue = prof.default_queue
    nodes = min(2, prof.queue_bins(queue)[0][1])
    ranks = nodes * lay["ranks_per_node"]
    dims = [8 * g for g in grid_for(ranks, 4)]  # 8^4 per rank on the grid "auto" chooses
    job = _job(tmp_path, backend=backend, dims=str(dims))
    wall = "00:30:00"
    args = [job, "--machine", machine, "--nodes", str(nodes), "--walltime", wall, "--dry-run"]
    if prof.data["submit"]["account_required"]:
        args += ["--account", "LGT123"]
    text = _submit(args, cwd=str(tmp_path)).stdout
    script = tmp_path / "job.sh"
    script.write_text(text)
    sc = subprocess.run([_shellcheck(), "-s", "bash", str(script)], capture_output=True, text=True)
    assert sc.returncode == 0, sc.stdout + sc.stderr
    # the directives, environment and launcher the profile asks for
    if prof.scheduler != "local":
        prefix = {"pbs": "#PBS", "slurm": "#SBATCH"}[prof.scheduler]
        d = _directives(text, prefix)
        assert len(d) == len(prof.data["submit"]["directives"])
        assert "-A LGT123" in d
        joined = " ".join(d)
        if prof.scheduler == "pbs":
            assert f"-l select={nodes}" in joined and "-l walltime=00:30:00" in joined
            assert f"-q {queue}" in joined
        else:
            assert f"-N {nodes}" in joined and "-t 00:30:00" in joined
    env = os.path.join(os.path.dirname(prof.path), os.path.basename(prof.data["machine"]["environment"]))
    assert f"source {os.path.abspath(env)}" in text
    launch = _launch_line(text, prof.data["launcher"]["command"])
    assert f" {ranks} " in launch  # the total rank count
    for w in lay["wrapper"]:
        assert w in launch
    threads = lay["threads_per_rank"]
    if "OMP_NUM_THREADS" in lay["env"]:
        assert f"export OMP_NUM_THREADS={threads}" in text
    # a process grid of exactly that many ranks, and the clean stop before the limit
    grid = [int(g) for g in launch.split("--set lattice.grid=")[1].split()[0].split(",")]
    assert int(np.prod(grid)) == ranks
    assert grid == grid_for(ranks, 4) and all(L % g == 0 for L, g in zip(dims, grid))
    margin = min(prof.data["submit"]["stop_margin_s"], 180)
    assert f"--set job.max_seconds={1800 - margin}" in launch
    assert "lattice_hpc.batch.chain after" in text


# what each centre documents, written out here by hand (not generated from the profile)
EXPECTED = {
    "aurora": {"sched": "#PBS", "lines": ["-l filesystems=home:flare", "-l place=scatter"],
               "launch": ["mpiexec", "--ppn"], "gpu": ["gpu_tile_compact.sh", "--cpu-bind"]},
    "polaris": {"sched": "#PBS", "lines": ["-l filesystems=home:eagle"],
                "launch": ["mpiexec", "--ppn", "--depth"], "gpu": ["CUDA_VISIBLE_DEVICES=$((3 - PMI_LOCAL_RANK % 4))"]},
    "perlmutter": {"sched": "#SBATCH", "lines": ["-C gpu"], "launch": ["srun"],
                   "gpu": ["--gpus-per-task=1"]},
    "frontier": {"sched": "#SBATCH", "lines": [], "launch": ["srun"],
                 "gpu": ["--gpus-per-task=1", "--gpu-bind=closest", "-c 7"]},
}


@pytest.mark.parametrize("machine", sorted(EXPECTED))
def test_big_machine_scripts_hold_the_documented_settings(tmp_path, machine):
    prof = Profile.load(machine)
    exp = EXPECTED[machine]
    layout = "gpu"
    dims = [8 * g for g in grid_for(2 * prof.layout(layout)["ranks_per_node"], 4)]
    job = _job(tmp_path, backend="cupy" if prof.cupy else "numpy", dims=str(dims))
    text = _submit([job, "--machine", machine, "--nodes", "2", "--walltime", "0:30:00", "--account",
                    "LGT123", "--layout", layout, "--dry-run"], cwd=str(tmp_path)).stdout
    d = " ".join(_directives(text, exp["sched"]))
    for line in exp["lines"]:
        assert line in d, (line, d)
    launch = _launch_line(text, exp["launch"][0])
    for word in exp["launch"][1:] + exp["gpu"]:
        assert word in launch or word in text, (word, launch)


def test_invalid_requests_are_refused_naming_the_problem(tmp_path):
    job = _job(tmp_path, dims="[8, 8, 8, 8]")
    cases = [
        (["--machine", "summit", "--nodes", "1", "--walltime", "1h"], "unknown machine"),
        (["--machine", "aurora", "--nodes", "1", "--walltime", "3h", "--account", "A"],
         "--walltime 03:00:00 exceeds the limit 01:00:00 of queue debug on aurora"),
        (["--machine", "aurora", "--nodes", "8", "--walltime", "1h", "--account", "A"],
         "--nodes 8: queue debug on aurora takes 1-2 nodes"),
        (["--machine", "local", "--nodes", "1", "--walltime", "1h", "--ranks-per-node", "4096"],
         "= 4096 ranks: no process grid of 4096 ranks"),
        (["--machine", "aurora", "--nodes", "1", "--walltime", "1h", "--account", "A",
          "--ranks-per-node", "16"], "the cpu layout of aurora binds exactly 64 ranks per node"),
        (["--machine", "aurora", "--nodes", "1", "--walltime", "4m", "--account", "A"],
         "--walltime 00:04:00 is below the minimum 00:05:00 of queue debug on aurora"),
        (["--machine", "local", "--nodes", "1", "--walltime", "5s"], "below the minimum 00:00:10"),
        (["--machine", "aurora", "--nodes", "1", "--walltime", "1h", "--account", "A",
          "--segments", "3"], "--segments 3: queue debug on aurora takes at most 1 queued job"),
        (["--machine", "aurora", "--nodes", "1", "--walltime", "1h", "--account", "A\ntouch x"],
         "--account 'A\\ntouch x': only letters"),
        (["--machine", "perlmutter", "--nodes", "1", "--walltime", "10m", "--account", "A B"],
         "--account 'A B': only letters"),
        (["--machine", "local", "--nodes", "1", "--walltime", "an hour"], "--walltime = 'an hour'"),
        (["--machine", "aurora", "--nodes", "1", "--walltime", "1h"], "--account"),
        (["--machine", "local", "--nodes", "1", "--walltime", "1h", "--queue", "prod"], "--queue prod"),
    ]
    for args, what in cases:
        proc = _submit([job] + args, cwd=str(tmp_path), ok=False)
        assert proc.returncode == 2 and what in proc.stderr, (args, proc.stderr)
    cupy = _job(tmp_path, name="gpu", backend="cupy")
    proc = _submit([cupy, "--machine", "aurora", "--nodes", "1", "--walltime", "1h", "--account",
                    "A"], cwd=str(tmp_path), ok=False)
    assert proc.returncode == 2 and "CuPy does not run on the GPUs of aurora" in proc.stderr
    assert not os.path.exists(tmp_path / "runs")  # nothing written
    blank = tmp_path / "blank.toml"
    blank.write_text(SU3_JOB.format(name="b", dims="[8, 8, 8, 8]", backend="numpy", type="quenched",
                                    dir=(tmp_path / "a b" / "{name}").as_posix()))
    proc = _submit([str(blank), "--machine", "local", "--nodes", "1", "--walltime", "1h"],
                   cwd=str(tmp_path), ok=False)
    assert proc.returncode == 2 and "holds blanks or shell characters" in proc.stderr
    assert not os.path.exists(tmp_path / "a b")


def _u1_job(tmp_path, name):
    path = tmp_path / f"{name}.toml"
    path.write_text(U1_QUENCHED_JOB.format(dir=(tmp_path / name).as_posix(), measure=64, log=10))
    return str(path), str(tmp_path / name)


def test_local_segments_forced_by_the_wall_clock_give_the_uninterrupted_chain(tmp_path):
    """69 steps; a virtual clock of 1 s per step and a 30 s limit (27 s after the margin): each
    segment stops itself after 26 steps, so ``--segments 3`` finishes the run, bit for bit; with
    two it stops short, and a later submit of four segments needs one."""
    ref, ref_dir = _u1_job(tmp_path, "ref")
    out = json.loads(_submit([ref, "--machine", "local", "--nodes", "1", "--walltime", "1h"],
                             cwd=str(tmp_path)).stdout)
    assert out["complete"] and len(out["segments_run"]) == 1
    job, rd = _u1_job(tmp_path, "seg")
    clock = {"LATTICE_HPC_FAULT": "clock:chain:1000"}
    out = json.loads(_submit([job, "--machine", "local", "--nodes", "1", "--walltime", "0:00:30",
                              "--segments", "3"], cwd=str(tmp_path), env=clock).stdout)
    assert out["complete"] and [s["segment"] for s in out["segments_run"]] == [1, 2, 3]
    assert out["max_seconds"] == 27
    logs = [open(s["log"]).read() for s in out["segments_run"]]
    assert "stopping at step 26/69" in logs[0] and "resuming from" in logs[1]
    assert run_records(rd) == run_records(ref_dir)
    a, b = final_field(rd), final_field(ref_dir)
    assert np.array_equal(a[0], b[0])
    # two segments are not enough: the chain stops incomplete, and a later submit finishes it
    job2, rd2 = _u1_job(tmp_path, "short")
    out = json.loads(_submit([job2, "--machine", "local", "--nodes", "1", "--walltime", "30s",
                              "--segments", "2"], cwd=str(tmp_path), env=clock).stdout)
    assert not out["complete"] and len(out["segments_run"]) == 2
    out = json.loads(_submit([job2, "--machine", "local", "--nodes", "1", "--walltime", "30s",
                              "--segments", "4"], cwd=str(tmp_path), env=clock).stdout)
    assert out["complete"] and len(out["segments_run"]) == 1  # the chain ends once complete
    assert run_records(rd2) == run_records(ref_dir)


def _fake_scheduler(bin_dir, log):
    """Stand-ins of qsub/sbatch/qdel/scancel that log their arguments and print job ids."""
    bin_dir.mkdir()
    for name, out in (("qsub", 'echo "$n.pbs-server"'), ("sbatch", 'echo "$n;cluster"'),
                      ("qdel", ":"), ("scancel", ":")):
        p = bin_dir / name
        p.write_text("#!/bin/bash\n"
                     f'echo "{name} $*" >> {log}\n'
                     f'n=$(( $(wc -l < {log}) + 100 ))\n{out}\n')
        p.chmod(p.stat().st_mode | stat.S_IEXEC)


@pytest.mark.parametrize("machine,submit,dep", [("polaris", "qsub", "-W depend=afterany:"),
                                                ("perlmutter", "sbatch", "--dependency=afterany:")])
def test_segments_are_chained_by_dependencies_and_cancelled_once_complete(tmp_path, machine,
                                                                           submit, dep):
    log = tmp_path / "calls.log"
    _fake_scheduler(tmp_path / "bin", log)
    env = {"PATH": f"{tmp_path / 'bin'}:{os.environ['PATH']}"}
    job = _job(tmp_path, dims="[8, 8, 8, 16]")
    out = json.loads(_submit([job, "--machine", machine, "--nodes", "1", "--walltime", "0:20:00",
                              "--account", "LGT123", "--segments", "3"], cwd=str(tmp_path),
                             env=env).stdout)
    calls = log.read_text().splitlines()
    assert len(calls) == 3 and all(c.startswith(submit + " ") for c in calls)
    assert dep not in calls[0]
    ids = out["jobs"]
    assert len(ids) == 3 and len(set(ids)) == 3
    for k in (1, 2):
        assert f"{dep}{ids[k - 1]}" in calls[k] and calls[k].endswith(out["script"])
    assert json.load(open(os.path.join(out["run_dir"], "batch", "jobs.json")))["jobs"] == ids
    assert os.access(out["script"], os.X_OK)
    # a second chain continues the list: its first segment waits for the last of the first
    out2 = json.loads(_submit([job, "--machine", machine, "--nodes", "1", "--walltime", "0:20:00",
                               "--account", "LGT123", "--segments", "2"], cwd=str(tmp_path),
                              env=env).stdout)
    calls = log.read_text().splitlines()
    assert len(calls) == 5 and f"{dep}{ids[2]}" in calls[3] and f"{dep}{out2['jobs'][0]}" in calls[4]
    ids = ids + out2["jobs"]
    assert json.load(open(os.path.join(out["run_dir"], "batch", "jobs.json")))["jobs"] == ids
    chain = [sys.executable, "-m", "lattice_hpc.batch.chain", "after", out["run_dir"]]
    me = {"PBS_JOBID": ids[0]} if submit == "qsub" else {"SLURM_JOB_ID": ids[0]}
    # an incomplete run leaves the chain alone, whatever the status (2: e.g. a file system that
    # did not answer, which the next segment retries)
    for rc in ("0", "2", "137"):
        subprocess.run(chain + [rc], env={**os.environ, **env, **me}, check=True)
    assert len(log.read_text().splitlines()) == 5
    # the first segment finds the run complete: it cancels the queued ones, the last first
    with open(os.path.join(out["run_dir"], "summary.json"), "w") as fh:
        json.dump({"complete": True}, fh)
    cancel = "qdel" if submit == "qsub" else "scancel"
    subprocess.run(chain + ["0"], env={**os.environ, **env, **me}, check=True)
    assert log.read_text().splitlines()[5:] == [f"{cancel} {j}" for j in reversed(ids[1:])]


EXAMPLES = sorted(os.path.join("jobs", "machines", n) for n in os.listdir(
    os.path.join(os.path.dirname(__file__), "..", "jobs", "machines")) if n.endswith(".toml"))


@pytest.mark.parametrize("example", EXAMPLES)
def test_the_machine_examples_submit_as_their_header_says(tmp_path, example):
    """Each example's ``# submit:`` line is a valid request (dry run), and its script passes
    shellcheck: the examples of the README's "Running on a supercomputer" stay runnable."""
    root = os.path.join(os.path.dirname(__file__), "..")
    line = [ln for ln in open(os.path.join(root, example)) if ln.startswith("# submit: ")]
    assert len(line) == 1, example
    args = line[0].split()[4:]  # after "# submit: lattice-hpc submit"
    assert args[0] == example and args[args.index("--machine") + 1] in example
    proc = _submit(args + ["--dry-run"], cwd=root)
    script = tmp_path / "job.sh"
    script.write_text(proc.stdout)
    sc = subprocess.run([_shellcheck(), "-s", "bash", str(script)], capture_output=True, text=True)
    assert sc.returncode == 0, sc.stdout


def test_the_deadline_of_a_batch_job_stops_the_run_cleanly(tmp_path):
    """``LATTICE_HPC_DEADLINE`` (set by the batch scripts from the job's start): a run whose
    deadline has passed stops after its first step with a checkpoint; run again without it, the
    chain is the uninterrupted one."""
    import time

    ref, ref_dir = _u1_job(tmp_path, "ref")
    assert run_cli(["run", ref]).returncode == 0
    job, rd = _u1_job(tmp_path, "late")
    proc = run_cli(["run", job], env={"LATTICE_HPC_DEADLINE": str(time.time() - 1)})
    assert proc.returncode == 0 and "LATTICE_HPC_DEADLINE" in proc.stderr
    assert "stopping at step 1/69" in proc.stderr
    assert run_cli(["run", job]).returncode == 0
    assert run_records(rd) == run_records(ref_dir)
    assert np.array_equal(final_field(rd)[0], final_field(ref_dir)[0])


@pytest.mark.parametrize("machine,backend,ranks", [("aurora", "cupy", "12,24"),
                                                   ("polaris", "cupy", "4,8"),
                                                   ("perlmutter", "numpy", "1,2,4"),
                                                   ("frontier", "cupy", "8,16")])
def test_a_scaling_study_becomes_one_batch_job(tmp_path, machine, backend, ranks):
    """``scaling --batch``: the profile's directives for enough nodes for the largest point, its
    environment, and as the body the same study without the batch options, into the (absolute)
    results folder; shellcheck passes; submitted with the profile's command (a stand-in)."""
    prof = Profile.load(machine)
    log = tmp_path / "calls.log"
    _fake_scheduler(tmp_path / "bin", log)
    env = {"PATH": f"{tmp_path / 'bin'}:{os.environ['PATH']}"}
    args = ["scaling", "weak", "--kernel", "dslash", "--ranks", ranks, "--dims", "16,16,16,16",
            "--machine", machine, "--backend", backend, "--batch", "--walltime", "0:30:00",
            "--account", "LGT123", "--out", "study"]
    out = json.loads(_submit(args[1:], cwd=str(tmp_path), env=env, cmd="scaling").stdout)
    script = out["script"]
    assert script == str(tmp_path / "study" / f"scaling.{'pbs' if prof.scheduler == 'pbs' else 'slurm'}")
    text = open(script).read()
    sc = subprocess.run([_shellcheck(), "-s", "bash", script], capture_output=True, text=True)
    assert sc.returncode == 0, sc.stdout
    lay = prof.layout("gpu" if backend == "cupy" else ("cpu" if "cpu" in prof.data["layouts"] else "gpu"))
    nodes = -(-max(map(int, ranks.split(","))) // lay["ranks_per_node"])
    assert out["nodes"] == nodes
    prefix = "#PBS" if prof.scheduler == "pbs" else "#SBATCH"
    d = _directives(text, prefix)
    assert any(("-A LGT123" in x) for x in d)
    assert any((f"select={nodes}" in x) if prof.scheduler == "pbs" else (x == f"-N {nodes}") for x in d), d
    assert f"source {prof.path[:-5]}.sh" in text or prof.data["machine"]["environment"] in text
    body = [ln for ln in text.splitlines() if "lattice_hpc.cli scaling" in ln]
    assert len(body) == 1
    assert "--batch" not in body[0] and "--walltime" not in body[0] and "--account" not in body[0]
    assert body[0].endswith(f"--out {tmp_path / 'study'}") and f"--backend {backend}" in body[0]
    calls = log.read_text().splitlines()
    assert len(calls) == 1 and calls[0].endswith(script)


def test_a_batch_study_the_machine_cannot_take_is_refused(tmp_path):
    base = ["weak", "--kernel", "dslash", "--ranks", "12,48", "--dims", "8,8,8,8", "--batch",
            "--walltime", "0:30:00", "--dry-run", "--backend", "cupy"]
    for extra, what in ((["--machine", "aurora", "--nodes", "2"], "--nodes 2: the largest point has 48 ranks"),
                        (["--machine", "local"], "machine local has no scheduler"),
                        (["--machine", "aurora", "--ranks", "12,24", "--walltime", "3:00:00"],
                         "walltime 03:00:00")):
        proc = _submit(base + extra, cwd=str(tmp_path), ok=False, cmd="scaling")
        assert proc.returncode == 2 and what in proc.stderr, proc.stderr
    assert not os.path.exists(tmp_path / "scaling")
