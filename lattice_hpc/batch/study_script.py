"""``lattice-hpc scaling ... --batch``: the scaling study as one batch job of a big machine.

On a machine with a scheduler, a study's points must run inside an allocation: the profile's
launcher (``mpiexec``, ``srun``) starts ranks only there.  With ``--batch --nodes N --walltime T
[--account A] [--queue Q]`` the ``scaling`` command writes ``OUT/scaling.<pbs|slurm>``: the
profile's directives for ``N`` nodes (at least enough for the largest point at the layout's
ranks per node, checked against the queue's limits), its environment script, and as its body the
same ``scaling`` command without ``--batch`` (so each point runs through the launcher inside
the allocation, and the results land in ``OUT``), then submits it (``--dry-run`` prints it and
submits nothing).  ``lattice-hpc model --calibration OUT ...`` reads the results once the job
has run.  Runs in one process, without MPI, on a login node.
"""

from __future__ import annotations

import datetime
import math
import os
import re
import shlex
import sys

from ..errors import ConfigError
from .profiles import Profile, format_walltime, parse_walltime
from .scaling import layout_of
from .script import PREFIX, SHEBANG, fill
from .submit import SUFFIX, check_charge, run_submit

#: options of ``scaling`` that belong to the batch job, not to the study it runs
BATCH_OPTIONS = {"--batch": 0, "--nodes": 1, "--walltime": 1, "--account": 1, "--queue": 1,
                 "--dry-run": 0}


def study_argv(argv: list[str], out_dir: str) -> list[str]:
    """The ``scaling`` arguments of the study itself: ``argv`` less the batch options, with
    ``--out`` made absolute (the job may start elsewhere)."""
    out, i = [], 1 if argv and argv[0] == "scaling" else 0
    while i < len(argv):
        a = argv[i]
        key = a.split("=", 1)[0]
        if key in BATCH_OPTIONS:
            i += 1 + (BATCH_OPTIONS[key] if "=" not in a else 0)
            continue
        if key == "--out":
            i += 1 + (1 if "=" not in a else 0)
            continue
        out.append(a)
        i += 1
    return out + ["--out", os.path.abspath(out_dir)]


def plan(args, ranks: list[int], out_dir: str) -> dict:
    """The batch job of a study: checked against the profile; refuses what the machine cannot take."""
    prof = Profile.load(args.machine)
    if prof.scheduler not in ("pbs", "slurm"):
        raise ConfigError(f"--batch: machine {prof.name} has no scheduler (scheduler = "
                          f"{prof.scheduler!r}); run the study directly, without --batch")
    lay = layout_of(prof, args.backend)
    rpn = args.ranks_per_node or lay["ranks_per_node"]
    need = math.ceil(max(ranks) / rpn)
    nodes = args.nodes or need
    if nodes < need:
        raise ConfigError(f"--nodes {nodes}: the largest point has {max(ranks)} ranks, which at "
                          f"{rpn} ranks per node on {prof.name} need {need} node(s)")
    if not args.walltime:
        raise ConfigError("--batch: give --walltime (the study's wall-clock limit)")
    wall = parse_walltime(args.walltime, "--walltime")
    queue = args.queue or prof.default_queue
    prof.check_request(queue, nodes, wall)
    check_charge(prof, args.account, queue, args.dry_run)
    out_dir = os.path.abspath(out_dir)
    if not re.fullmatch(r"[A-Za-z0-9_./@+-]+", out_dir):
        raise ConfigError(f"--out {out_dir!r}: holds blanks or shell characters, which batch "
                          "directives (-o) cannot carry")
    sched = prof.scheduler
    name = f"scal_{args.kernel}_{args.mode}"[:15]
    qtable = prof.data["queues"][queue]
    values = {"account": args.account or "ACCOUNT", "queue": qtable.get("partition", queue),
              "name": name, "nodes": nodes, "ranks": max(ranks), "ranks_per_node": rpn,
              "threads": int(lay["threads_per_rank"]), "walltime": format_walltime(wall),
              "log": os.path.join(out_dir, f"{name}.%j.log" if sched == "slurm" else f"{name}.log")}
    env = prof.data["machine"]["environment"]
    root = os.path.dirname(os.path.dirname(prof.path)) if not os.path.isabs(env) else ""
    return {"profile": prof, "layout": lay, "values": values, "out": out_dir,
            "extra_directives": list(qtable.get("extra_directives", [])),
            "environment": os.path.abspath(os.path.join(root, env)),
            "script": os.path.join(out_dir, f"scaling.{SUFFIX[sched]}"),
            "argv": study_argv(args.argv, out_dir)}


def render(p: dict) -> str:
    prof, v, q = p["profile"], p["values"], shlex.quote
    sched = prof.scheduler
    lines = [SHEBANG[sched],
             f"# Written by `lattice-hpc scaling --batch` on {datetime.date.today().isoformat()}: "
             f"the {v['name']} study on {prof.name} ({prof.data['machine']['status']} profile),",
             f"# {v['nodes']} node(s), up to {v['ranks']} ranks at {v['ranks_per_node']} per node, "
             f"wall-clock limit {v['walltime']}; results in {p['out']}."]
    for d in prof.data["submit"]["directives"] + p["extra_directives"]:
        lines.append(f"{PREFIX[sched]} {fill(d, v, f'{prof.path}: submit.directives')}")
    lines += ["", f"cd {q(os.getcwd())} || exit 1", "# shellcheck source=/dev/null",
              f"source {q(p['environment'])}", "set -u"]
    for k, val in p["layout"]["env"].items():
        lines.append(f"export {k}={q(fill(str(val), v, f'{prof.path}: layout env {k}'))}")
    lines += ["", "# every point runs through the profile's launcher inside this allocation",
              " ".join([q(sys.executable), "-m", "lattice_hpc.cli", "scaling"] +
                       [q(a) for a in p["argv"]]), ""]
    return "\n".join(lines)


def submit_study(args, ranks: list[int], out_dir: str) -> dict | None:
    """Write (or print, with ``--dry-run``) and submit the study's batch script."""
    p = plan(args, ranks, out_dir)
    text = render(p)
    if args.dry_run:
        sys.stdout.write(text)
        sys.stdout.flush()
        return None
    os.makedirs(p["out"], exist_ok=True)
    with open(p["script"], "w") as fh:
        fh.write(text)
    os.chmod(p["script"], 0o755)
    prof = p["profile"]
    argv = [prof.data["submit"]["command"]] + (["--parsable"] if prof.scheduler == "slurm" else [])
    job = run_submit(argv + [p["script"]], prof)
    return {"machine": prof.name, "script": p["script"], "job": job, "out": p["out"],
            "nodes": p["values"]["nodes"]}
