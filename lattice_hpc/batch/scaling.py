"""``lattice-hpc scaling strong|weak``: a scaling study of one kernel, point by point.

    lattice-hpc scaling strong|weak --kernel halo|dslash|cg|hmc|io|flow --ranks 1,2,4 --dims D
                        [--machine local] [--precision double] [--seconds S] [--repeat K]
                        [--out DIR]

Strong scaling keeps the global lattice ``--dims``; weak scaling keeps ``--dims`` per rank and
grows the lattice with the process grid (the balanced grid of :func:`~lattice_hpc.comm.compute_dims`,
largest factors on the slowest directions, as ``lattice.grid = "auto"`` chooses).  Each point
is one run of the kernel's benchmark (``lattice-hpc bench ...``; for ``hmc`` one job of two
Nf = 2 Wilson trajectories, timed by the job's own records) through the machine profile's
launcher, plus ``bench copy`` at the same rank count (the copy bandwidth per rank when all ranks
copy at once).  Run it where the ranks can start: on the local machine, or inside an allocation
of a big one (an interactive job); ``--batch --nodes N --walltime T [--account A]`` writes and
submits the batch script that runs the study in an allocation (:mod:`.study_script`).

``--repeat K`` measures every point ``K`` times, in rounds over all rank counts, and keeps the
round of median time (all rounds' times in ``rounds_seconds``): on a machine whose speed drifts
(shared or virtual nodes) the points then share the drift.

The results folder (``--out``) holds the raw JSON of every point (``points/``), ``table.json``
and ``table.md``:

- ``seconds``: the kernel's time (the whole halo exchange of the links, with its on-rank copies,
  and ``network_seconds``, its partitioned directions alone, which the model fits; a hop; a
  CGNE iteration; a trajectory; a checkpoint write; a training step of the flow, ``bench flow``
  with ``--group``);
- ``speedup = t(1) / t(n)`` and ``efficiency = t(1) / (n t(n))`` (strong), or
  ``efficiency = t(1) / t(n)`` (weak), relative to the smallest rank count of the study;
- ``per_rank``: the throughput per rank in ``per_rank_unit`` (GB/s of halo, GFLOP/s, sites/s);
- ``comm_fraction``: the communication time the computation did not hide (the face-exchange
  wait of the Dirac operator; all of a halo exchange) over the kernel's time;
- ``copy_GBps_per_rank``: the measured copy bandwidth per rank, all ranks copying at once;
- ``oversubscribed``: more ranks on a node than it has cores.

and ``scaling.png`` / ``scaling.pdf`` (time and efficiency against ranks; hollow markers for
oversubscribed points).  The performance model (:mod:`.model`) is calibrated on this folder.
"""

from __future__ import annotations

import datetime
import json
import math
import os
import subprocess
import sys
import tempfile

from ..errors import ConfigError
from .profiles import Profile

KERNELS = ("halo", "dslash", "cg", "hmc", "io", "flow")

HMC_JOB = """
[job]
type = "hmc"
name = "scaling"
[lattice]
dims = [{dims}]
grid = "{grid}"
[action]
group = "SU3"
beta = 5.6
[backend]
name = "{backend}"
precision = "{precision}"
[update]
start = "hot"
thermalize = 0
measure = 5
seed = 1
[hmc]
steps = [4, 2]
[fermions]
flavours = 2
kappa = 0.12
[checkpoint]
every = 1000
[output]
dir = "{dir}"
"""


def grid_for(ranks: int, ndim: int) -> list[int]:
    """The weak-scaling grid: the balanced factorisation, largest factors on the slowest
    directions (t first), as ``lattice.grid = "auto"`` tries first."""
    from ..comm import compute_dims

    return list(reversed(compute_dims(ranks, ndim)))


def _text(v) -> str:
    return ",".join(map(str, v))


def point_dims(mode: str, dims: list[int], ranks: int) -> tuple[list[int], list[int]]:
    """``(global dims, grid)`` of a point."""
    from ..geometry.decomposition import resolve_grid

    if mode == "weak":
        grid = grid_for(ranks, len(dims))
        return [d * g for d, g in zip(dims, grid)], grid
    try:
        return list(dims), list(resolve_grid(dims, "auto", ranks))
    except Exception as exc:  # a GeometryError: name the point
        raise ConfigError(f"--ranks {ranks}: {exc}") from None


def layout_of(prof: Profile, backend: str = "numpy") -> dict:
    """The rank layout of a study: the profile's ``gpu`` layout for ``--backend cupy``, else its
    ``cpu`` layout (or ``gpu`` where it has none)."""
    if backend == "cupy":
        return prof.layout("gpu")
    return prof.layout("cpu" if "cpu" in prof.data["layouts"] else "gpu")


def _per_node(prof: Profile, ranks: int, ranks_per_node: int | None, backend: str = "numpy") -> int:
    """Ranks per node of a point (all on the one node of a local machine)."""
    if prof.scheduler == "local":
        return ranks
    return min(ranks, ranks_per_node or layout_of(prof, backend)["ranks_per_node"])


def _launch(prof: Profile, ranks: int, ranks_per_node: int | None, backend: str = "numpy") -> list[str]:
    from .script import fill

    lay = layout_of(prof, backend)
    rpn = _per_node(prof, ranks, ranks_per_node, backend)
    values = {"ranks": ranks, "ranks_per_node": rpn, "nodes": math.ceil(ranks / rpn),
              "threads": lay["threads_per_rank"]}
    return [prof.data["launcher"]["command"]] + [fill(str(a), values, prof.path) for a in lay["args"]]


def _run(cmd: list[str], what: str, timeout: float) -> str:
    env = dict(os.environ, OMP_NUM_THREADS=os.environ.get("OMP_NUM_THREADS", "1"))
    try:
        out = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, env=env)
    except subprocess.TimeoutExpired:
        raise ConfigError(f"{what}: no result within {timeout:.0f} s ({' '.join(cmd)})") from None
    if out.returncode != 0:
        raise ConfigError(f"{what} failed (status {out.returncode}): {' '.join(cmd)}\n"
                          f"{out.stderr.strip()[-2000:]}")
    return out.stdout


def _bench(launch, args, what, timeout) -> dict:
    out = _run(launch + [sys.executable, "-m", "lattice_hpc.cli", "bench"] + args, what, timeout)
    return json.loads(out.strip().splitlines()[-1])


def measure_point(kernel: str, mode: str, dims, ranks: int, opts, prof: Profile) -> dict:
    """One point: the kernel's figures at ``ranks`` ranks (raw output under ``raw``)."""
    gdims, grid = point_dims(mode, dims, ranks)
    backend = getattr(opts, "backend", "numpy")
    launch = _launch(prof, ranks, opts.ranks_per_node, backend)
    what = f"{kernel} at {ranks} ranks ({_text(gdims)} on {_text(grid)})"
    sec = str(opts.seconds)
    common = ["--dims", _text(gdims), "--grid", _text(grid)]
    on = ["--backend", backend]  # halo, dslash, cg and copy run on the study's backend
    volume = math.prod(gdims)
    p = {"ranks": ranks, "dims": gdims, "grid": grid,
         "local_dims": [d // g for d, g in zip(gdims, grid)]}
    if kernel == "halo":
        raw = _bench(launch, ["halo"] + common + on + ["--field", "links", "--seconds", sec], what, opts.timeout)
        r = raw["results"][0]
        # seconds: the whole halo of the link field (on-rank copies of the unpartitioned
        # directions and the messages of the partitioned ones: what a job pays, comparable at
        # every rank count); network_seconds: the partitioned directions alone
        net = r["halo_seconds"] if ranks > 1 else 0.0
        full = r["full_exchange_seconds"]
        p.update(seconds=full, network_seconds=net,
                 per_rank=r["bytes_sent_per_rank"] / net / 1e9 if net else 0.0,
                 per_rank_unit="GB/s sent", comm_fraction=min(1.0, net / full) if full else 0.0)
    elif kernel == "dslash":
        raw = _bench(launch, ["dslash"] + common + on + ["--precision", opts.precision, "--seconds", sec],
                     what, opts.timeout)
        r = raw["results"][0]
        p.update(seconds=r["hop_seconds"], per_rank=r["per_rank_GFLOPs"], per_rank_unit="GFLOP/s",
                 comm_fraction=r["comm_fraction"], kernel_copy_ratio=r["ratio"])
    elif kernel == "cg":
        raw = _bench(launch, ["cg"] + common + on + ["--precision", opts.precision, "--solver", "cgne",
                                                "--seconds", sec], what, opts.timeout)
        r = raw["results"][0]
        p.update(seconds=r["seconds"] / max(1, r["iterations"]), iterations=r["iterations"],
                 per_rank=r["GFLOPs"] / ranks, per_rank_unit="GFLOP/s",
                 comm_fraction=r["comm_fraction"])
    elif kernel == "io":
        with tempfile.TemporaryDirectory(dir=opts.io_dir) as tmp:
            raw = _bench(launch, ["io"] + common + ["--precision", opts.precision, "--dir", tmp,
                                                    "--seconds", sec], what, opts.timeout)
        r = raw["results"][0]
        p.update(seconds=r["checkpoint_write_seconds"],
                 per_rank=r["bytes"] / r["checkpoint_write_seconds"] / 1e9 / ranks,
                 per_rank_unit="GB/s written", comm_fraction=None)
    elif kernel == "flow":  # a training step of the domain-decomposed flow (bench flow)
        local = [d // g for d, g in zip(gdims, grid)]
        if grid != grid_for(ranks, len(gdims)):
            raise ConfigError(f"{what}: bench flow splits the lattice on the grid "
                              f"{_text(grid_for(ranks, len(gdims)))}")
        raw = _bench(launch, ["flow", "--local-dims", _text(local), "--group", opts.group,
                              "--precision", opts.precision, "--proposals", "0", "--seconds", sec],
                     what, opts.timeout)
        t = raw["weak_scaling"]["all_ranks"]["seconds_per_train_step"]
        p.update(seconds=t, per_rank=raw["batch"] * math.prod(local) / t,
                 per_rank_unit="site-samples/s trained", comm_fraction=None,
                 saved_MiB_per_rank=raw["memory"]["per_rank"]["saved_for_backward_MiB"])
    elif kernel == "hmc":
        raw = _hmc(launch, gdims, grid, opts, what)
        p.update(raw["point"])
        p["per_rank"] = volume / ranks / p["seconds"]
        p["per_rank_unit"] = "sites/s"
    else:
        raise ConfigError(f"--kernel {kernel}: one of {', '.join(KERNELS)}")
    copy = _bench(launch, ["copy", "--mib", str(opts.copy_mib), "--seconds", "1"] + on, what + " (copy)",
                  opts.timeout)
    p["copy_GBps_per_rank"] = copy["per_rank_GBps"]
    p["raw"] = raw
    return p


def _hmc(launch, gdims, grid, opts, what) -> dict:
    with tempfile.TemporaryDirectory() as tmp:
        job = os.path.join(tmp, "job.toml")
        with open(job, "w") as fh:
            fh.write(HMC_JOB.format(dims=", ".join(map(str, gdims)), grid=_text(grid),
                                    backend=getattr(opts, "backend", "numpy"),
                                    precision=opts.precision, dir=os.path.join(tmp, "run")))
        _run(launch + [sys.executable, "-m", "lattice_hpc.cli", "run", job], what, opts.timeout)
        with open(os.path.join(tmp, "run", "records.jsonl")) as fh:
            recs = [json.loads(ln) for ln in fh if ln.strip()]
    # the trajectory of median time among those after the first (caches and kernels warm): one
    # trajectory's figures, robust against a trajectory that the machine's noise slowed
    warm = sorted((r["seconds"] for r in recs[1:]), key=lambda s: s["total"]) or [recs[-1]["seconds"]]
    mid = warm[(len(warm) - 1) // 2]
    return {"records": [r["seconds"] for r in recs],
            "point": {"seconds": mid["total"], "dslash_seconds": mid["dslash"],
                      "comm_fraction": mid["dslash_wait"] / mid["total"],
                      "halo_messages": mid.get("halo_messages", 0),
                      "halo_bytes": mid.get("halo_bytes", 0)}}


def study(args) -> dict:
    """The ``scaling`` command: every point, the table, the plots; returns the table."""
    from ..geometry import parse_dims

    if args.kernel not in KERNELS:
        raise ConfigError(f"--kernel {args.kernel}: one of {', '.join(KERNELS)}")
    prof = Profile.load(args.machine)
    try:
        ranks = sorted({int(r) for r in args.ranks.split(",")})
    except ValueError:
        raise ConfigError(f"--ranks {args.ranks!r}: expected a comma-separated list of rank counts") from None
    if not ranks or ranks[0] < 1:
        raise ConfigError(f"--ranks {args.ranks!r}: rank counts must be positive")
    dims = list(parse_dims(args.dims, "--dims"))
    for r in ranks:  # refuse a point the lattice cannot take before running any
        point_dims(args.mode, dims, r)
    out_dir = args.out or os.path.join(
        "scaling", f"{args.kernel}_{args.mode}_{datetime.datetime.now().strftime('%Y-%m-%dT%H%M%S')}")
    if os.path.exists(os.path.join(out_dir, "table.json")):
        raise ConfigError(f"--out {out_dir}: holds a study already (table.json); choose another "
                          "folder or move it away")
    if getattr(args, "batch", False):  # the study as one batch job of the machine (.study_script)
        from .study_script import submit_study

        return submit_study(args, ranks, out_dir)
    os.makedirs(os.path.join(out_dir, "points"), exist_ok=True)
    cores = _cores(prof)
    repeat = max(1, int(getattr(args, "repeat", 1)))
    runs = {r: [] for r in ranks}
    for k in range(repeat):  # rounds over all rank counts: a drift of the machine hits every count
        for r in ranks:
            p = measure_point(args.kernel, args.mode, dims, r, args, prof)
            runs[r].append(p)
            sys.stderr.write(f"scaling {args.kernel} {args.mode}: {r} ranks {p['seconds']:.4g} s"
                             f"{f' (round {k + 1} of {repeat})' if repeat > 1 else ''}\n")
    points = []
    for r in ranks:
        # the round of median time stands for the point (its raw figures with it)
        rs = sorted(runs[r], key=lambda q: q["seconds"])
        p = rs[(len(rs) - 1) // 2]
        p["rounds_seconds"] = [q["seconds"] for q in runs[r]]
        p["ranks_per_node"] = _per_node(prof, r, args.ranks_per_node, args.backend)
        p["oversubscribed"] = p["ranks_per_node"] > cores  # more ranks than cores on a node
        with open(os.path.join(out_dir, "points", f"{args.kernel}_{r}.json"), "w") as fh:
            json.dump(p, fh, indent=1)
        points.append(p)
    base = points[0]
    for p in points:
        n = p["ranks"] / base["ranks"]
        if args.mode == "strong":
            p["speedup"] = base["seconds"] / p["seconds"]
            p["efficiency"] = p["speedup"] / n
        else:
            p["efficiency"] = base["seconds"] / p["seconds"]
    table = {"kernel": args.kernel, "mode": args.mode, "machine": prof.name,
             "dims": dims, "dims_are": "global" if args.mode == "strong" else "per rank",
             "precision": args.precision, "cores_per_node": cores,
             "date": datetime.datetime.now().isoformat(timespec="seconds"),
             "command": "lattice-hpc " + " ".join(args.argv),
             "points": [{k: v for k, v in p.items() if k != "raw"} for p in points]}
    with open(os.path.join(out_dir, "table.json"), "w") as fh:
        json.dump(table, fh, indent=1)
    with open(os.path.join(out_dir, "table.md"), "w") as fh:
        fh.write(markdown(table))
    plot(table, out_dir)
    return {"out": out_dir, **table}


def _cores(prof: Profile) -> int:
    if prof.scheduler == "local":
        return os.cpu_count() or 1
    return int(prof.figure("cpu_cores_per_node"))


def markdown(table: dict) -> str:
    """The table as Markdown."""
    strong = table["mode"] == "strong"
    head = ["ranks", "grid", "lattice", "seconds", "speedup" if strong else "", "efficiency",
            "per rank", "comm fraction", "copy GB/s per rank", ""]
    head = [h for h in head if h != ""] + ["note"]
    rows = [f"{table['kernel']} {table['mode']} scaling on {table['machine']} "
            f"({table['precision']}; {table['dims_are']} lattice {_text(table['dims'])}); "
            f"`{table['command']}`, {table['date']}", "",
            "| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for p in table["points"]:
        cells = [str(p["ranks"]), _text(p["grid"]), _text(p["dims"]), f"{p['seconds']:.4g}"]
        if strong:
            cells.append(f"{p['speedup']:.3f}")
        cells += [f"{p['efficiency']:.3f}", f"{p['per_rank']:.4g} {p['per_rank_unit']}",
                  "-" if p.get("comm_fraction") is None else f"{p['comm_fraction']:.3f}",
                  f"{p['copy_GBps_per_rank']:.3g}",
                  "oversubscribed" if p["oversubscribed"] else ""]
        rows.append("| " + " | ".join(cells) + " |")
    return "\n".join(rows) + "\n"


def plot(table: dict, out_dir: str) -> None:
    """``scaling.png`` and ``scaling.pdf``: time (with the ideal line) and efficiency."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    pts = table["points"]
    r = [p["ranks"] for p in pts]
    fig, (a, b) = plt.subplots(1, 2, figsize=(9, 3.6))
    for ax, key in ((a, "seconds"), (b, "efficiency")):
        for p in pts:
            ax.plot(p["ranks"], p[key], "o", color="C0",
                    mfc="none" if p["oversubscribed"] else "C0")
        ax.plot(r, [p[key] for p in pts], "-", color="C0", alpha=0.6)
        ax.set_xscale("log", base=2)
        ax.set_xlabel("ranks")
    ideal = [pts[0]["seconds"] * (r[0] / x if table["mode"] == "strong" else 1.0) for x in r]
    a.plot(r, ideal, "--", color="gray", label="ideal")
    a.set_yscale("log")
    a.set_ylabel("seconds")
    a.legend()
    b.axhline(1.0, ls="--", color="gray")
    b.set_ylim(0, 1.2)
    b.set_ylabel("efficiency")
    fig.suptitle(f"{table['kernel']} {table['mode']} scaling, {table['machine']} "
                 f"({table['dims_are']} {_text(table['dims'])}; hollow: oversubscribed)", fontsize=9)
    fig.tight_layout()
    for ext in ("png", "pdf"):
        fig.savefig(os.path.join(out_dir, f"scaling.{ext}"), dpi=120)
    plt.close(fig)
