"""``lattice-hpc submit``: a job file and a machine profile make a batch script, submitted.

    lattice-hpc submit JOB.toml --machine M --nodes N --walltime T [--account A] [--queue Q]
                       [--segments K] [--layout auto|gpu|cpu] [--ranks-per-node R] [--dry-run]

The plan: ``R`` ranks per node from the profile's layout (``gpu`` when the job's backend is
``cupy``, else ``cpu``), ``N R`` ranks, a process grid for the job's lattice on them (the job's
explicit ``lattice.grid``, checked, or the one ``lattice.grid = "auto"`` would choose, written
into the script), the queue's limits checked, and the clean stop ``job.max_seconds`` before the
wall-clock limit.  The script goes to ``RUN_DIR/batch/<name>.<pbs|slurm|sh>``; ``--segments K``
submits it ``K`` times, each segment depending on the one before (``afterany``: a segment killed
at the limit still hands on to the next, which resumes from the last checkpoint), and the job ids
go to ``RUN_DIR/batch/jobs.json`` so that the chain ends early (:mod:`.chain`).  On a ``local``
profile the segments run here, one after the other, until the run is complete.  ``--dry-run``
prints the script and writes and submits nothing.

Runs in one process, without MPI: it is called on a login node.
"""

from __future__ import annotations

import json
import math
import os
import re
import subprocess
import sys

from ..errors import ConfigError, LatticeError
from .chain import is_complete, jobs_file
from .profiles import Profile, format_walltime, parse_walltime
from .script import render

SUFFIX = {"pbs": "pbs", "slurm": "slurm", "local": "sh"}


def _grid(cfg: dict, ranks: int, where: str) -> tuple[list[int], int]:
    """``(grid, replicas)``: the process grid of one field and the data-parallel replicas."""
    from ..geometry.decomposition import parse_dims, resolve_grid

    dims = cfg["lattice"]["dims"]
    grid = cfg["lattice"]["grid"]
    try:
        if isinstance(grid, str) and grid.strip().lower() == "auto":
            return list(resolve_grid(dims, "auto", ranks)), 1
        g = list(parse_dims(grid, "lattice.grid"))
        n = math.prod(g)
        if cfg["job"]["type"] == "flow" and n < ranks and ranks % n == 0:
            resolve_grid(dims, g, n)
            return g, ranks // n
        resolve_grid(dims, g, ranks)
        return g, 1
    except LatticeError as exc:
        raise ConfigError(f"{where}: {exc}") from None


def make_plan(args) -> dict:
    """Everything the script needs, checked; refuses a request the machine or lattice cannot take."""
    from ..driver.config import load_config

    prof = Profile.load(args.machine)
    cfg = load_config(args.job)
    sched = prof.scheduler
    backend = cfg["backend"]["name"]
    layout_name = args.layout if args.layout != "auto" else ("gpu" if backend == "cupy" else "cpu")
    if backend == "cupy" and not prof.cupy:
        raise ConfigError(f"{args.job}: backend.name = 'cupy', but CuPy does not run on the GPUs "
                          f"of {prof.name} ({prof.data['machine']['description']}); use "
                          "backend.name = 'numpy'")
    lay = prof.layout(layout_name)
    rpn = args.ranks_per_node or lay["ranks_per_node"]
    if rpn < 1:
        raise ConfigError(f"--ranks-per-node {rpn}: must be positive")
    if args.nodes < 1:
        raise ConfigError(f"--nodes {args.nodes}: must be positive")
    if args.segments < 1:
        raise ConfigError(f"--segments {args.segments}: must be positive")
    ranks = args.nodes * rpn
    wall = parse_walltime(args.walltime, "--walltime")
    queue = args.queue or prof.default_queue
    prof.check_request(queue, args.nodes, wall)
    if prof.data["submit"]["account_required"] and not args.account and not args.dry_run:
        raise ConfigError(f"--account: machine {prof.name} charges jobs to an allocation; "
                          "give --account PROJECT")
    grid, replicas = _grid(cfg, ranks, f"{args.job} on {args.nodes} node(s) x {rpn} ranks "
                                       f"= {ranks} ranks")
    margin = min(int(prof.data["submit"]["stop_margin_s"]), wall // 10)
    max_seconds = wall - margin
    if cfg["job"]["max_seconds"] > 0:
        max_seconds = min(max_seconds, int(cfg["job"]["max_seconds"]))
    run_dir = os.path.abspath(cfg["output"]["dir"].replace("{name}", cfg["job"]["name"]))
    batch_dir = os.path.join(run_dir, "batch")
    name = re.sub(r"[^A-Za-z0-9_.-]", "_", cfg["job"]["name"])[:15] or "lattice"
    threads = int(lay["threads_per_rank"])
    if args.ranks_per_node and layout_name == "cpu" and prof.data.get("figures", {}).get(
            "cpu_cores_per_node"):
        threads = max(1, int(prof.figure("cpu_cores_per_node")) // rpn)
    qtable = prof.data["queues"][queue]
    values = {"account": args.account or "ACCOUNT", "queue": qtable.get("partition", queue), "name": name,
              "nodes": args.nodes, "ranks": ranks, "ranks_per_node": rpn, "threads": threads,
              "walltime": format_walltime(wall),
              "log": os.path.join(batch_dir, f"{name}.%j.log" if sched == "slurm" else f"{name}.log")}
    sets = [f"job.max_seconds={max_seconds}"]
    if str(cfg["lattice"]["grid"]).strip().lower() == "auto":
        sets.insert(0, "lattice.grid=" + ",".join(map(str, grid)))
    env = prof.data["machine"]["environment"]
    root = os.path.dirname(os.path.dirname(prof.path)) if not os.path.isabs(env) else ""
    return {"profile": prof, "layout": lay, "layout_name": layout_name, "values": values,
            "segments": args.segments, "max_seconds": max_seconds, "grid": grid,
            "grid_text": ",".join(map(str, grid)) + (f" x {replicas} replicas" if replicas > 1 else ""),
            "replicas": replicas, "job_name": cfg["job"]["name"],
            "job_path": os.path.abspath(args.job), "workdir": os.getcwd(),
            "environment": os.path.abspath(os.path.join(root, env)), "python": sys.executable,
            "run_dir": run_dir, "batch_dir": batch_dir,
            "script": os.path.join(batch_dir, f"{name}.{SUFFIX[sched]}"), "sets": sets,
            "extra_directives": list(qtable.get("extra_directives", []))}


def _submit_one(plan: dict, after: str | None, k: int) -> str:
    prof = plan["profile"]
    cmd = prof.data["submit"]["command"]
    log = os.path.join(plan["batch_dir"], f"{plan['values']['name']}.segment{k}.log")
    if prof.scheduler == "pbs":
        argv = [cmd, "-o", log] + (["-W", f"depend=afterany:{after}"] if after else [])
    else:
        argv = [cmd, "--parsable"] + ([f"--dependency=afterany:{after}"] if after else [])
    argv.append(plan["script"])
    try:
        out = subprocess.run(argv, capture_output=True, text=True, check=False)
    except OSError as exc:
        raise ConfigError(f"{cmd}: cannot run the submit command ({exc.strerror}); is this a "
                          f"login node of {prof.name}?") from None
    if out.returncode != 0:
        raise ConfigError(f"{' '.join(argv)} failed (status {out.returncode}): "
                          f"{out.stderr.strip()[-500:]}")
    job = out.stdout.strip().splitlines()[-1].split(";")[0].strip()
    if not job:
        raise ConfigError(f"{' '.join(argv)} printed no job id")
    return job


def _run_local(plan: dict) -> dict:
    """The segments of a ``local`` chain, run here one after the other."""
    ran = []
    for k in range(1, plan["segments"] + 1):
        log = os.path.join(plan["batch_dir"], f"{plan['values']['name']}.segment{k}.log")
        with open(log, "w") as fh:
            rc = subprocess.run(["bash", plan["script"]], stdout=fh, stderr=subprocess.STDOUT).returncode
        ran.append({"segment": k, "status": rc, "log": log})
        if rc != 0:
            raise ConfigError(f"segment {k} of {plan['segments']} failed with status {rc}; see "
                              f"{log}. The run resumes from its last checkpoint when submitted again")
        if is_complete(plan["run_dir"]):
            break
    return {"segments_run": ran, "complete": is_complete(plan["run_dir"])}


def submit(args) -> dict:
    """The ``submit`` command; returns what it wrote and submitted (printed as JSON)."""
    plan = make_plan(args)
    text = render(plan)
    if args.dry_run:
        sys.stdout.write(text)
        sys.stdout.flush()
        return None
    os.makedirs(plan["batch_dir"], exist_ok=True)
    tmp = plan["script"] + ".tmp"
    with open(tmp, "w") as fh:
        fh.write(text)
    os.chmod(tmp, 0o755)
    os.replace(tmp, plan["script"])
    out = {"machine": plan["profile"].name, "script": plan["script"], "run_dir": plan["run_dir"],
           "nodes": plan["values"]["nodes"], "ranks": plan["values"]["ranks"],
           "grid": plan["grid"], "replicas": plan["replicas"],
           "walltime": plan["values"]["walltime"], "max_seconds": plan["max_seconds"],
           "segments": plan["segments"]}
    if plan["profile"].scheduler == "local":
        out.update(_run_local(plan))
        return out
    jobs, prev = [], None
    for k in range(1, plan["segments"] + 1):
        prev = _submit_one(plan, prev, k)
        jobs.append(prev)
        with open(jobs_file(plan["run_dir"]), "w") as fh:  # after each: a failure keeps the ids
            json.dump({"scheduler": plan["profile"].scheduler, "jobs": jobs}, fh)
    out["jobs"] = jobs
    return out
