"""Environment switches: one registry, validated reads, and the start-up check that every rank has
the same ones (a switch set on one rank only stops every rank with an error naming it, quickly).

Serial: ``python -m pytest -q -p no:cacheprovider --with-mpi tests/test_environment.py`` (it
starts MPMD launches through ``mpirun``); MPI: ``mpirun -n 2 python -m pytest ... -m mpi`` runs the
check on ``world()`` with a value changed on rank 1 only.
"""

from __future__ import annotations

import ast
import json
import os
import pathlib
import re
import subprocess
import sys
import time

import pytest

from lattice_hpc import __version__, switches
from lattice_hpc.comm import check_environment, mpi, self_comm, world
from lattice_hpc.comm.environment import describe_differences
from lattice_hpc.errors import ConfigError
from lattice_hpc.fermions.kernels import KERNELS

PKG = pathlib.Path(__file__).resolve().parents[1] / "lattice_hpc"
DATA = pathlib.Path(__file__).resolve().parent / "data" / "chroma_4x4x4x4.nersc"
LAUNCHER_VARS = ("PMI_SIZE", "PMI_RANK", "PMI_FD", "PMI_PORT", "OMPI_COMM_WORLD_SIZE",
                 "OMPI_COMM_WORLD_RANK", "PMIX_RANK", "PALS_RANKID", "SLURM_STEP_NUM_TASKS",
                 "SLURM_PROCID", "SLURM_NTASKS")


@pytest.fixture
def clean_env(monkeypatch):
    """No registered switch and no launcher variable set in this process (restored afterwards)."""
    for name in list(switches.REGISTRY) + list(LAUNCHER_VARS):
        monkeypatch.delenv(name, raising=False)
    return monkeypatch


# -- the registry ---------------------------------------------------------------------------------

def test_get_returns_defaults_and_validated_values(clean_env):
    assert switches.get("LATTICE_HPC_H5_READ") == "auto"
    assert switches.get("LATTICE_HPC_KERNEL") == "auto"
    assert switches.get("LATTICE_HPC_NO_MPI") is False
    assert switches.get("LATTICE_HPC_GPU_AWARE_MPI") is False
    assert switches.get("LATTICE_HPC_FAULT") == []
    clean_env.setenv("LATTICE_HPC_H5_READ", "independent")
    clean_env.setenv("MPICH_GPU_SUPPORT_ENABLED", "1")
    clean_env.setenv("LATTICE_HPC_FAULT", "eio:step@1")
    clean_env.setenv("LATTICE_HPC_KERNEL", "")  # empty counts as unset
    assert switches.get("LATTICE_HPC_H5_READ") == "independent"
    assert switches.get("MPICH_GPU_SUPPORT_ENABLED") is True
    assert switches.get("LATTICE_HPC_FAULT") == [("eio", "step", None, 1)]
    assert switches.get("LATTICE_HPC_KERNEL") == "auto"
    assert switches.get("lattice_hpc version") == __version__


@pytest.mark.parametrize("name, bad, allowed", [
    ("LATTICE_HPC_H5_READ", "indep", "collective | independent | auto"),
    ("LATTICE_HPC_KERNEL", "fast", "auto | reference | compiled | cuda"),
    ("LATTICE_HPC_NO_MPI", "yes", "0 | 1"),
    ("LATTICE_HPC_GPU_AWARE_MPI", "true", "0 | 1"),
    ("MPICH_GPU_SUPPORT_ENABLED", "2", "0 | 1"),
    ("LATTICE_HPC_FAULT", "explode:step", "ACTION:POINT[:K][@RANK]"),
])
def test_get_refuses_a_bad_value_naming_the_variable(clean_env, name, bad, allowed):
    clean_env.setenv(name, bad)
    with pytest.raises(ConfigError) as info:
        switches.get(name)
    assert name in str(info.value) and repr(bad) in str(info.value)
    assert allowed in str(info.value)


def test_kernel_choices_are_those_of_the_kernels():
    assert switches.REGISTRY["LATTICE_HPC_KERNEL"].choices == KERNELS


def test_every_variable_named_in_the_package_is_registered_and_documented():
    named = set()
    for path in PKG.rglob("*.py"):
        named |= set(re.findall(r"\bLATTICE_HPC_[A-Z0-9_]*[A-Z0-9]\b", path.read_text()))
    assert named, "the scan found no LATTICE_HPC_ variable"
    assert sorted(named - set(switches.REGISTRY)) == []
    doc = switches.__doc__
    assert [n for n in switches.REGISTRY if f"``{n}``" not in doc] == []


def _environ_reads(path):
    """(line, variable) of each os.environ.get("X") / os.environ["X"] / os.getenv("X") in a file."""
    tree = ast.parse(path.read_text())
    for node in ast.walk(tree):
        key = None
        if isinstance(node, ast.Call) and node.args and isinstance(node.args[0], ast.Constant):
            f = node.func
            if isinstance(f, ast.Attribute) and (
                    (f.attr == "get" and ast.unparse(f.value) == "os.environ")
                    or (f.attr == "getenv" and ast.unparse(f.value) == "os")):
                key = node.args[0].value
        elif isinstance(node, ast.Subscript) and ast.unparse(node.value) == "os.environ" \
                and isinstance(node.slice, ast.Constant):
            key = node.slice.value
        if isinstance(key, str):
            yield node.lineno, key


def test_switches_that_must_agree_are_read_only_through_the_registry():
    """Reads of a switch that must agree go through ``switches.get`` (faults.py reads its own)."""
    offenders = []
    for path in sorted(PKG.rglob("*.py")):
        rel = str(path.relative_to(PKG))
        if rel == "switches.py":
            continue
        for line, key in _environ_reads(path):
            sw = switches.REGISTRY.get(key)
            if sw is None or not sw.agree or (rel == "faults.py" and key == "LATTICE_HPC_FAULT"):
                continue
            offenders.append(f"lattice_hpc/{rel}:{line} reads {key}")
    assert offenders == [], "use lattice_hpc.switches.get instead: " + "; ".join(offenders)


def test_snapshot_holds_every_switch_that_must_agree_and_the_facts(clean_env):
    clean_env.setenv("LATTICE_HPC_H5_READ", "collective")
    snap = switches.snapshot()
    assert {n for n, sw in switches.REGISTRY.items() if sw.agree} == set(snap)
    assert "LATTICE_HPC_CACHE" not in snap  # may differ per node
    assert snap["LATTICE_HPC_H5_READ"] == "collective" and snap["LATTICE_HPC_KERNEL"] is None
    assert snap["lattice_hpc version"] == __version__
    assert (snap["mpi4py"] is not None) == mpi.have_mpi()


# -- the comparison -------------------------------------------------------------------------------

def test_describe_differences_names_each_setting_with_its_value_per_rank():
    same = {"LATTICE_HPC_H5_READ": None, "LATTICE_HPC_KERNEL": "auto", "mpi4py": "4.1.2"}
    assert describe_differences([same, dict(same, LATTICE_HPC_KERNEL=None)]) == []  # auto == unset
    other = dict(same, LATTICE_HPC_H5_READ="independent")
    assert describe_differences([other, same]) == [
        "LATTICE_HPC_H5_READ differs between ranks: rank 0 'independent', rank 1 unset"]
    many = [same, dict(same, mpi4py=None), same, dict(other, mpi4py=None)]
    assert describe_differences(many) == [
        "LATTICE_HPC_H5_READ differs between ranks: ranks 0, 1, 2 unset, rank 3 'independent'",
        "mpi4py differs between ranks: ranks 0, 2 '4.1.2', ranks 1, 3 unset"]
    bad = [dict(same, LATTICE_HPC_KERNEL="x"), dict(same, LATTICE_HPC_KERNEL="y")]
    assert len(describe_differences(bad)) == 1


def test_check_environment_on_self_comm(clean_env):
    snap = check_environment(self_comm())
    assert snap["lattice_hpc version"] == __version__
    clean_env.setenv("LATTICE_HPC_H5_READ", "sometimes")  # the same on every rank, but invalid
    with pytest.raises(ConfigError, match="LATTICE_HPC_H5_READ='sometimes'"):
        check_environment(self_comm())


# -- no MPI in a multi-process launch -------------------------------------------------------------

@pytest.mark.parametrize("env, expected", [
    ({}, None),
    ({"PMI_SIZE": "1", "PMI_RANK": "0"}, None),  # mpirun -n 1: a job of one
    ({"SLURM_NTASKS": "4", "SLURM_PROCID": "0"}, None),  # a serial command inside sbatch
    ({"PMI_SIZE": "2", "PMI_RANK": "0"}, "PMI_SIZE=2"),  # hydra, Cray PMI (PALS, srun)
    ({"OMPI_COMM_WORLD_SIZE": "4"}, "OMPI_COMM_WORLD_SIZE=4"),  # Open MPI
    ({"PALS_RANKID": "3"}, "PALS_RANKID=3"),
    ({"SLURM_STEP_NUM_TASKS": "2", "SLURM_PROCID": "1"}, "SLURM_STEP_NUM_TASKS=2"),  # srun
    ({"SLURM_STEP_NUM_TASKS": "2"}, None),
])
def test_launcher_processes(clean_env, env, expected):
    for k, v in env.items():
        clean_env.setenv(k, v)
    found = mpi.launcher_processes()
    if expected is None:
        assert found is None
    else:
        assert found is not None and found.startswith(expected)


def test_world_refuses_to_run_without_mpi_in_a_multi_process_launch(clean_env):
    clean_env.setattr(mpi, "MPI", None)
    clean_env.setattr(mpi, "_NO_MPI_REASON", "disabled by LATTICE_HPC_NO_MPI=1")
    assert world().size == 1  # alone: the serial stand-in
    clean_env.setenv("PMI_SIZE", "2")
    clean_env.setenv("PMI_RANK", "1")
    with pytest.raises(ConfigError) as info:
        world()
    assert "LATTICE_HPC_NO_MPI=1" in str(info.value) and "PMI_SIZE=2" in str(info.value)
    clean_env.setattr(mpi, "_NO_MPI_REASON", "No module named 'mpi4py'")
    with pytest.raises(ConfigError, match="mpi4py is not in use.*No module named"):
        world()


# -- real MPMD launches ---------------------------------------------------------------------------

def _mpmd(env0, env1, args=("measure", str(DATA)), timeout=60):
    """``mpirun -n 1 env ENV0 lattice-hpc ARGS : -n 1 env ENV1 lattice-hpc ARGS``: (result, s)."""
    base = {k: v for k, v in os.environ.items()
            if k not in switches.REGISTRY and k not in LAUNCHER_VARS}
    base["OMP_NUM_THREADS"] = "1"
    cmd = ["mpirun"]
    for i, extra in enumerate((env0, env1)):
        cmd += ([":"] if i else []) + ["-n", "1", "env"] + [f"{k}={v}" for k, v in extra.items()]
        cmd += [sys.executable, "-m", "lattice_hpc.cli"] + list(args)
    start = time.monotonic()
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, env=base)
    return proc, time.monotonic() - start


def test_matching_environments_run_normally():
    proc, seconds = _mpmd({"LATTICE_HPC_H5_READ": "independent"},
                          {"LATTICE_HPC_H5_READ": "independent"})
    assert proc.returncode == 0, proc.stderr
    assert seconds < 20, f"took {seconds:.1f} s"
    out = json.loads(proc.stdout)
    assert out["checksum"] == "ok" and out["dims"] == [4, 4, 4, 4]


@pytest.mark.parametrize("name, value", [("LATTICE_HPC_H5_READ", "independent"),
                                         ("LATTICE_HPC_KERNEL", "reference")])
def test_a_switch_on_one_rank_stops_every_rank_with_status_2(name, value):
    proc, seconds = _mpmd({name: value}, {})
    assert proc.returncode == 2, proc.stderr
    assert seconds < 20, f"took {seconds:.1f} s"
    msg = f"{name} differs between ranks: rank 0 {value!r}, rank 1 unset"
    assert f"[rank 0/2] lattice-hpc: error: {msg}" in proc.stderr
    assert f"[rank 1/2] lattice-hpc: error: {msg}" in proc.stderr
    assert "set the same environment on every rank" in proc.stderr
    assert proc.stdout == ""


@pytest.mark.parametrize("side", [0, 1])
def test_no_mpi_on_one_rank_ends_the_launch(side):
    """The rank without MPI refuses to run alone and ends the launch through hydra's PMI: without
    that, hydra leaves the other rank waiting in MPI_Init for ever."""
    envs = [{}, {}]
    envs[side] = {"LATTICE_HPC_NO_MPI": "1"}
    proc, seconds = _mpmd(*envs)
    assert proc.returncode != 0, proc.stderr
    assert seconds < 20, f"took {seconds:.1f} s"
    assert "LATTICE_HPC_NO_MPI=1" in proc.stderr and "PMI_SIZE=2" in proc.stderr
    assert f"launcher rank {side}" in proc.stderr
    assert proc.stdout == ""


# -- under mpirun ---------------------------------------------------------------------------------

@pytest.mark.mpi(min_size=2)
def test_check_environment_on_world_sees_a_value_on_rank_1_only():
    comm = world()
    check_environment(comm)  # the launcher gave every rank the same environment
    name = "LATTICE_HPC_H5_READ"
    saved = os.environ.get(name)
    new = "collective" if saved != "collective" else "independent"
    try:
        if comm.rank == 1:
            os.environ[name] = new
        with pytest.raises(ConfigError) as info:
            check_environment(comm)  # raises on every rank, with the same message
        assert f"{name} differs between ranks:" in str(info.value)
        assert f"rank 1 {new!r}" in str(info.value)
    finally:
        if saved is None:
            os.environ.pop(name, None)
        else:
            os.environ[name] = saved
    check_environment(comm)  # restored: agrees again
    comm.barrier()
