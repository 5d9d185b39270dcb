"""The batch script of a run: directives, environment, launcher line, clean stop, chain end.

One script serves every segment of a chain (:mod:`.submit` submits it ``K`` times with scheduler
dependencies).  Each segment runs ``lattice-hpc run JOB --set lattice.grid=G --set
job.max_seconds=S`` with ``LATTICE_HPC_DEADLINE`` = the job's start + ``S``: the run stops itself
with a checkpoint before either passes (the deadline counts the start-up too), ``S`` = wall-clock
limit minus the profile's ``stop_margin_s`` (at most a tenth of the limit), so the scheduler never
kills a step or a checkpoint half-written.  After the run,
``python -m lattice_hpc.batch.chain after RUN_DIR RC`` cancels the remaining segments when the
run is complete, so the chain ends early.
"""

from __future__ import annotations

import datetime
import shlex

from ..errors import ConfigError

PREFIX = {"pbs": "#PBS", "slurm": "#SBATCH"}
SHEBANG = {"pbs": "#!/bin/bash -l", "slurm": "#!/bin/bash", "local": "#!/bin/bash"}


def fill(template: str, values: dict, where: str) -> str:
    """``template.format(**values)``, refusing a placeholder the generator does not know."""
    try:
        return template.format(**values)
    except (KeyError, IndexError, ValueError) as exc:
        raise ConfigError(f"{where}: {template!r} has an unknown or malformed placeholder "
                          f"({exc}); known: {', '.join('{' + k + '}' for k in sorted(values))}") from None


def render(plan: dict) -> str:
    """The text of the batch script of ``plan`` (from :func:`.submit.make_plan`)."""
    prof, lay, v = plan["profile"], plan["layout"], plan["values"]
    sched = prof.scheduler
    q = shlex.quote
    lines = [SHEBANG[sched],
             f"# Written by `lattice-hpc submit` on {datetime.date.today().isoformat()}: "
             f"{plan['job_name']} on {prof.name} ({prof.data['machine']['status']} profile),",
             f"# {v['nodes']} node(s) x {v['ranks_per_node']} ranks ({plan['layout_name']} layout), "
             f"process grid {plan['grid_text']}, wall-clock limit {v['walltime']}, "
             f"{plan['segments']} segment(s).",
             f"# The run stops itself with a checkpoint after {plan['max_seconds']} s of its chain; "
             "the next segment resumes from it."]
    if sched in PREFIX:
        for d in prof.data["submit"]["directives"] + plan["extra_directives"]:
            lines.append(f"{PREFIX[sched]} {fill(d, v, f'{prof.path}: submit.directives')}")
    lines += ["", "START=$(date +%s)  # the job's start: the deadline below counts from here",
              f"cd {q(plan['workdir'])} || exit 1",
              "# shellcheck source=/dev/null", f"source {q(plan['environment'])}", "set -u"]
    for k, val in lay["env"].items():
        lines.append(f"export {k}={q(fill(str(val), v, f'{prof.path}: layout env {k}'))}")
    lines += [f"export LATTICE_HPC_DEADLINE=$((START + {plan['walltime_s'] - plan['margin_s']}))",
              f"PY={q(plan['python'])}", f"RUN_DIR={q(plan['run_dir'])}", ""]
    launch = [prof.data["launcher"]["command"]]
    launch += [fill(str(a), v, f"{prof.path}: layout args") for a in lay["args"]]
    launch += [fill(str(a), v, f"{prof.path}: layout wrapper") for a in lay["wrapper"]]
    app = ["-m", "lattice_hpc.cli", "run", plan["job_path"]] + \
        [x for s in plan["sets"] for x in ("--set", s)]
    if any("$" in str(a) for a in lay["wrapper"]):  # a wrapper's own script, expanded per rank
        lines.append("# shellcheck disable=SC2016")
    lines.append(" ".join(q(a) for a in launch) + ' "$PY" ' + " ".join(q(a) for a in app))
    lines += ["rc=$?",
              '"$PY" -m lattice_hpc.batch.chain after "$RUN_DIR" "$rc"',
              'exit "$rc"', ""]
    return "\n".join(lines)
