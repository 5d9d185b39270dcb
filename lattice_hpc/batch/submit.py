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
SAFE = re.compile(r"[A-Za-z0-9_.@+-]+")  # what a directive value may hold: no blanks, no shell
MIN_WALLTIME = 10  # seconds: below this no segment can start, step and checkpoint


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


def check_charge(prof: Profile, account: str, queue: str, dry_run: bool) -> None:
    """Refuse an account or queue that a directive cannot carry, and a missing account where
    the machine charges an allocation (a dry run may omit it)."""
    for what, value in (("--account", account), ("--queue", queue)):
        if value and not SAFE.fullmatch(value):
            raise ConfigError(f"{what} {value!r}: only letters, digits and _ . @ + - are allowed")
    if prof.data["submit"]["account_required"] and not account and not dry_run:
        raise ConfigError(f"--account: machine {prof.name} charges jobs to an allocation; "
                          "give --account PROJECT")


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
    if rpn != lay["ranks_per_node"] and lay.get("binding_fixed"):
        raise ConfigError(f"--ranks-per-node {rpn}: the {layout_name} layout of {prof.name} binds "
                          f"exactly {lay['ranks_per_node']} ranks per node (its launcher arguments "
                          f"are written for that); edit {prof.path} for another layout")
    if args.nodes < 1:
        raise ConfigError(f"--nodes {args.nodes}: must be positive")
    if args.segments < 1:
        raise ConfigError(f"--segments {args.segments}: must be positive")
    ranks = args.nodes * rpn
    wall = parse_walltime(args.walltime, "--walltime")
    queue = args.queue or prof.default_queue
    prof.check_request(queue, args.nodes, wall)
    qtable = prof.data["queues"][queue]
    low = max(MIN_WALLTIME, parse_walltime(qtable.get("min_walltime", "0s"), "min_walltime"))
    if wall < low:
        raise ConfigError(f"--walltime {format_walltime(wall)} is below the minimum "
                          f"{format_walltime(low)} of queue {queue} on {prof.name}")
    if args.segments > int(qtable.get("max_queued", args.segments)):
        raise ConfigError(f"--segments {args.segments}: queue {queue} on {prof.name} takes at most "
                          f"{qtable['max_queued']} queued job(s) per user; use another queue "
                          f"({', '.join(q for q in prof.data['queues'] if q != queue)})")
    check_charge(prof, args.account, queue, args.dry_run)
    grid, replicas = _grid(cfg, ranks, f"{args.job} on {args.nodes} node(s) x {rpn} ranks "
                                       f"= {ranks} ranks")
    margin = min(int(prof.data["submit"]["stop_margin_s"]), wall // 10)
    max_seconds = wall - margin
    if cfg["job"]["max_seconds"] > 0:
        max_seconds = min(max_seconds, int(cfg["job"]["max_seconds"]))
    run_dir = os.path.abspath(cfg["output"]["dir"].replace("{name}", cfg["job"]["name"]))
    batch_dir = os.path.join(run_dir, "batch")
    if not re.fullmatch(r"[A-Za-z0-9_./@+-]+", batch_dir):
        raise ConfigError(f"output.dir: the run directory {run_dir!r} holds blanks or shell "
                          "characters, which batch directives (-o) cannot carry")
    name = re.sub(r"[^A-Za-z0-9_.-]", "_", cfg["job"]["name"])[:15] or "lattice"
    threads = int(lay["threads_per_rank"])
    if args.ranks_per_node and layout_name == "cpu" and prof.data.get("figures", {}).get(
            "cpu_cores_per_node"):
        threads = max(1, int(prof.figure("cpu_cores_per_node")) // rpn)
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
            "walltime_s": wall, "margin_s": margin,
            "grid_text": ",".join(map(str, grid)) + (f" x {replicas} replicas" if replicas > 1 else ""),
            "replicas": replicas, "job_name": cfg["job"]["name"],
            "job_path": os.path.abspath(args.job), "workdir": os.getcwd(),
            "environment": os.path.abspath(os.path.join(root, env)), "python": sys.executable,
            "run_dir": run_dir, "batch_dir": batch_dir,
            "script": os.path.join(batch_dir, f"{name}.{SUFFIX[sched]}"), "sets": sets,
            "extra_directives": list(qtable.get("extra_directives", []))}


def _log(plan: dict, k: int) -> str:
    return os.path.join(plan["batch_dir"], f"{plan['values']['name']}.{plan['stamp']}.segment{k}.log")


def _submit_one(plan: dict, after: str | None, k: int) -> str:
    prof = plan["profile"]
    cmd = prof.data["submit"]["command"]
    log = _log(plan, k)
    if prof.scheduler == "pbs":
        argv = [cmd, "-o", log] + (["-W", f"depend=afterany:{after}"] if after else [])
    else:
        argv = [cmd, "--parsable"] + ([f"--dependency=afterany:{after}"] if after else [])
    argv.append(plan["script"])
    return run_submit(argv, prof)


def run_submit(argv: list[str], prof) -> str:
    """Run the scheduler's submit command ``argv``; the job id it printed (PBS: ``123.server``,
    Slurm ``--parsable``: ``123;cluster`` -> ``123``)."""
    try:
        out = subprocess.run(argv, capture_output=True, text=True, check=False)
    except OSError as exc:
        raise ConfigError(f"{argv[0]}: cannot run the submit command ({exc.strerror}); is this a "
                          f"login node of {prof.name}?") from None
    if out.returncode != 0:
        raise ConfigError(f"{' '.join(argv)} failed (status {out.returncode}): "
                          f"{out.stderr.strip()[-500:]}")
    lines = out.stdout.strip().splitlines()
    job = lines[-1].split(";")[0].strip() if lines else ""
    if not job:
        raise ConfigError(f"{' '.join(argv)} printed no job id")
    return job


def _run_local(plan: dict) -> dict:
    """The segments of a ``local`` chain, run here one after the other."""
    ran = []
    for k in range(1, plan["segments"] + 1):
        log = _log(plan, k)
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
    import datetime

    plan = make_plan(args)
    plan["stamp"] = datetime.datetime.now().strftime("%Y%m%d-%H%M%S")
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
    # a new chain continues the list of an earlier one (whose segments may still be queued: the
    # first new segment then waits for the last old one, and either can end the other once complete)
    try:
        with open(jobs_file(plan["run_dir"])) as fh:
            jobs = list(json.load(fh).get("jobs", []))
    except FileNotFoundError:
        jobs = []
    except (OSError, ValueError) as exc:
        raise ConfigError(f"{jobs_file(plan['run_dir'])}: cannot read the earlier chain's job ids "
                          f"({exc}); move the file away to start a new list") from None
    new, prev = [], jobs[-1] if jobs else None
    for k in range(1, plan["segments"] + 1):
        try:
            job = _submit_one(plan, prev, k)
        except ConfigError:
            if k != 1 or prev is None:
                raise
            job = _submit_one(plan, None, k)  # the scheduler no longer knows the earlier chain's last job
        new.append(job)
        prev = job
        with open(jobs_file(plan["run_dir"]), "w") as fh:  # after each: a failure keeps the ids
            json.dump({"scheduler": plan["profile"].scheduler, "jobs": jobs + new}, fh)
    out["jobs"] = new
    return out
