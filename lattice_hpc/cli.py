"""The ``lattice-hpc`` command.

    lattice-hpc run JOB.toml [--set section.key=value ...] [--force-unlock]
    lattice-hpc measure FILE [--format auto|nersc|ildg|milc|openqcd|hdf5] [--observables LIST]
                             [--kappa K] [--csw C] [--noise N] [--seed S] [--grid G]
    lattice-hpc convert IN OUT --to nersc|ildg|hdf5 [--precision auto|single|double] [--force]
    lattice-hpc analyze RUN_DIR [--observables LIST] [--skip N] [--S 1.5] [--json]
    lattice-hpc bench halo [--dims D ...] [--grid G] [--field links|spinor|scalar] [--depth H] [--codim C]
    lattice-hpc bench io [--dims D ...] [--grid G] [--precision double|single] [--dir DIR]
    lattice-hpc bench plaquette [--dims D ...] [--grid G] [--group SU3] [--precision double|single]
    lattice-hpc bench dslash [--dims D ...] [--precision double single] [--backend numpy|cupy]
                             [--kernel auto|reference|compiled|cuda] [--grid G] [--local] [--csw C]
    lattice-hpc bench cg [--dims D ...] [--precision ...] [--solver cgne bicgstab mixed] [--full]
                         [--kappa K] [--csw C] [--tol T] [--grid G]
    lattice-hpc bench copy [--mib M] [--backend numpy|cupy]
    lattice-hpc bench flow [--local-dims D] [--batch B] [--model FILE | --train-steps N] [--proposals N]
    lattice-hpc scaling strong|weak --kernel halo|dslash|cg|hmc|io|flow --ranks 1,2,4 --dims D
                        [--machine M] [--precision P] [--seconds S] [--out DIR]
    lattice-hpc model --calibration DIR [DIR ...] [--machines aurora,frontier,perlmutter] [--out DIR]
    lattice-hpc submit JOB.toml --machine M --nodes N --walltime T [--account A] [--queue Q]
                       [--segments K] [--layout auto|gpu|cpu] [--ranks-per-node R] [--dry-run]

Runs the same under ``mpirun -n N`` as serially.  Only rank 0 prints results: one JSON object on
stdout; logs go to stderr.  An input error prints ``lattice-hpc: error: ...`` (naming the key, file
or dimension) on every rank and ends the job with status 2; any other exception on any rank aborts
the whole job (``MPI_Abort``) instead of leaving the other ranks waiting.
"""

from __future__ import annotations

import argparse
import json
import sys
import time

from .comm import install_abort_handler, world
from .errors import LatticeError


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="lattice-hpc", description="SPMD lattice gauge theory")
    sub = p.add_subparsers(dest="command", required=True)

    r = sub.add_parser("run", help="run the job described by a TOML file")
    r.add_argument("job", help="job file (see jobs/)")
    r.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                   help="override a job-file entry, e.g. --set action.beta=5.7 (repeatable)")
    r.add_argument("--force-unlock", action="store_true",
                   help="take over the run directory's lock even if another job seems to hold it "
                        "(only when you know that job is no longer running)")

    s = sub.add_parser("submit", help="write the batch script of a job for a machine and submit it "
                                      "(or run it here on the local profile)")
    s.add_argument("job", help="job file")
    s.add_argument("--machine", required=True,
                   help="profile name (profiles/<name>.toml: local, aurora, polaris, perlmutter, "
                        "frontier) or the path of a profile")
    s.add_argument("--nodes", type=int, required=True)
    s.add_argument("--walltime", required=True, help="HH:MM:SS, or 90m, 2h")
    s.add_argument("--account", default="", help="allocation to charge (PBS -A, Slurm -A)")
    s.add_argument("--queue", default="", help="queue, QOS or partition (default: the profile's)")
    s.add_argument("--segments", type=int, default=1,
                   help="chain K jobs, each resuming from the last checkpoint (default 1)")
    s.add_argument("--layout", default="auto", choices=["auto", "gpu", "cpu"],
                   help="rank layout (auto: gpu for backend cupy, else cpu)")
    s.add_argument("--ranks-per-node", type=int, default=0, help="override the layout's ranks per node")
    s.add_argument("--dry-run", action="store_true", help="print the script; write and submit nothing")

    sc = sub.add_parser("scaling", help="strong or weak scaling study of a kernel: runs every "
                                        "point through the machine's launcher; table and plots")
    sc.add_argument("mode", choices=["strong", "weak"])
    sc.add_argument("--kernel", required=True, choices=["halo", "dslash", "cg", "hmc", "io", "flow"])
    sc.add_argument("--group", default="U1", choices=["U1", "SU2", "SU3"], help="flow: the gauge group")
    sc.add_argument("--ranks", required=True, help="comma-separated rank counts, e.g. 1,2,4")
    sc.add_argument("--dims", required=True, help="global lattice (strong) or lattice per rank (weak)")
    sc.add_argument("--machine", default="local", help="profile whose launcher starts the ranks")
    sc.add_argument("--ranks-per-node", type=int, default=0)
    sc.add_argument("--precision", choices=["double", "single"], default="double")
    sc.add_argument("--backend", choices=["numpy", "cupy"], default="numpy",
                    help="halo, dslash, cg, copy and hmc on this backend (cupy: the gpu layout)")
    sc.add_argument("--seconds", type=float, default=2.0, help="time budget of each timing")
    sc.add_argument("--repeat", type=int, default=1,
                    help="measure every point K times in rounds; keep the median (default 1)")
    sc.add_argument("--copy-mib", type=float, default=256.0, help="copy reference buffer per rank")
    sc.add_argument("--io-dir", default=".", help="io: directory to write the checkpoints in")
    sc.add_argument("--timeout", type=float, default=1800.0, help="seconds allowed per point")
    sc.add_argument("--out", default="", help="results folder (default scaling/KERNEL_MODE_DATE)")
    sc.add_argument("--batch", action="store_true",
                    help="write and submit a batch script that runs the study in an allocation")
    sc.add_argument("--nodes", type=int, default=0, help="--batch: nodes (default: the largest point's)")
    sc.add_argument("--walltime", default="", help="--batch: wall-clock limit, e.g. 1:00:00")
    sc.add_argument("--account", default="", help="--batch: allocation to charge")
    sc.add_argument("--queue", default="", help="--batch: queue (default: the profile's)")
    sc.add_argument("--dry-run", action="store_true", help="--batch: print the script, submit nothing")

    mo = sub.add_parser("model", help="performance model: calibrated on scaling studies, validated on "
                                      "their multi-rank points, extrapolated to the big machines")
    mo.add_argument("--calibration", nargs="+", required=True, metavar="DIR",
                    help="results folders of `lattice-hpc scaling` (a halo study with >= 2 multi-rank "
                         "points, and single-rank points of the other kernels)")
    mo.add_argument("--kernel", default="", help="refuse unless this kernel was measured")
    mo.add_argument("--machines", default="aurora,frontier,perlmutter",
                    help="profiles to extrapolate to (comma-separated; empty: none)")
    mo.add_argument("--out", default="", help="folder for model.json, model.md and the plot")
    mo.add_argument("--json", action="store_true", help="print JSON instead of the Markdown report")

    m = sub.add_parser("measure", help="read a gauge configuration, verify it, print observables")
    m.add_argument("file")
    m.add_argument("--format", default="auto",
                   choices=["auto", "nersc", "ildg", "milc", "openqcd", "hdf5"])
    m.add_argument("--observables", default=None,
                   help="comma-separated extra observables: polyakov, pion (Wilson point-source "
                        "correlator C(t)), condensate (Z2 estimate of Tr D^-1 / V); pion and "
                        "condensate need a 4D SU(3) field and --kappa")
    m.add_argument("--kappa", type=float, default=None,
                   help="Wilson hopping parameter, kappa = 1/(2 m0 + 8) (required for pion, condensate)")
    m.add_argument("--csw", type=float, default=None,
                   help="clover coefficient c_sw (default 0: plain Wilson)")
    m.add_argument("--noise", type=int, default=16,
                   help="condensate: number of Z2 noise vectors (default 16)")
    m.add_argument("--seed", type=int, default=0,
                   help="condensate: seed of the Z2 noise (default 0)")
    m.add_argument("--grid", default="auto")

    c = sub.add_parser("convert", help="convert a gauge configuration between formats")
    c.add_argument("input")
    c.add_argument("output")
    c.add_argument("--to", required=True, choices=["nersc", "ildg", "hdf5"])
    c.add_argument("--format", default="auto",
                   choices=["auto", "nersc", "ildg", "milc", "openqcd", "hdf5"],
                   help="format of the input (default: detected)")
    c.add_argument("--precision", default="auto", choices=["auto", "single", "double"],
                   help="precision of the output (default: that of the input)")
    c.add_argument("--grid", default="auto")
    c.add_argument("--force", action="store_true", help="replace an existing output file")

    a = sub.add_parser("analyze", help="errors of a run's records: Gamma method (tau_int, window) "
                                       "and binned jackknife")
    a.add_argument("run_dir", help="run directory of lattice-hpc run (reads its records.jsonl)")
    a.add_argument("--observables", default=None,
                   help="comma-separated names (default: all); a list key such as pion selects "
                        "every component pion[0], pion[1], ...")
    a.add_argument("--skip", type=int, default=0,
                   help="discard the first N records (thermalization is not recorded; default 0)")
    a.add_argument("--S", dest="S", type=float, default=1.5,
                   help="Wolff's windowing parameter S (default 1.5)")
    a.add_argument("--json", action="store_true",
                   help="print one JSON object instead of the table")

    b = sub.add_parser("bench", help="benchmarks with in-run reference figures")
    bsub = b.add_subparsers(dest="benchmark", required=True)
    h = bsub.add_parser("halo", help="halo exchange vs raw MPI_Sendrecv of the same messages")
    h.add_argument("--dims", nargs="+", default=["8,8,8,16", "16,16,16,32", "24,24,24,48"])
    h.add_argument("--grid", default="auto")
    h.add_argument("--field", choices=["links", "spinor", "scalar"], default="links")
    h.add_argument("--depth", type=int, default=1)
    h.add_argument("--codim", type=int, default=None,
                   help="1: faces only (direct strategy); default: full halo (slab strategy)")
    h.add_argument("--backend", choices=["numpy", "cupy"], default="numpy")
    h.add_argument("--seconds", type=float, default=2.0, help="time budget per lattice size")
    o = bsub.add_parser("io", help="checkpoint write/read vs raw sequential I/O of the same bytes")
    o.add_argument("--dims", nargs="+", default=["16,16,16,16", "24,24,24,24"])
    o.add_argument("--grid", default="auto")
    o.add_argument("--precision", choices=["double", "single"], default="double")
    o.add_argument("--dir", default=".", help="directory to write in (a temporary subdirectory)")
    o.add_argument("--seconds", type=float, default=5.0, help="time budget per lattice size")
    q = bsub.add_parser("plaquette", help="plaquette kernel vs copy bandwidth")
    q.add_argument("--dims", nargs="+", default=["8,8,8,8", "16,16,16,16"])
    q.add_argument("--grid", default="auto")
    q.add_argument("--group", default="SU3")
    q.add_argument("--precision", choices=["double", "single"], default="double")
    q.add_argument("--backend", choices=["numpy", "cupy"], default="numpy")
    q.add_argument("--seconds", type=float, default=2.0)
    d = bsub.add_parser("dslash", help="Wilson hopping term vs the copy bandwidth of the device")
    d.add_argument("--dims", nargs="+", default=["16,16,16,16", "24,24,24,24"])
    d.add_argument("--local", action="store_true",
                   help="--dims are per rank (weak scaling); also time rank 0 alone")
    d.add_argument("--csw", type=float, default=0.0)
    g = bsub.add_parser("cg", help="Krylov solve vs the bare operator it applies")
    g.add_argument("--dims", nargs="+", default=["16,16,16,16"])
    g.add_argument("--solver", nargs="+", choices=["cgne", "bicgstab", "mixed"],
                   default=["cgne", "bicgstab", "mixed"])
    g.add_argument("--full", action="store_true", help="solve D itself, not the even/odd Schur complement")
    g.add_argument("--kappa", type=float, default=0.12)
    g.add_argument("--csw", type=float, default=0.0)
    g.add_argument("--tol", type=float, default=1e-10)
    g.add_argument("--maxiter", type=int, default=10000)
    for k in (d, g):
        k.add_argument("--grid", default="auto")
        k.add_argument("--precision", nargs="+", choices=["double", "single"], default=["double", "single"])
        k.add_argument("--backend", choices=["numpy", "cupy"], default="numpy")
        k.add_argument("--kernel", choices=["auto", "reference", "compiled", "cuda"], default="auto")
        k.add_argument("--seconds", type=float, default=2.0, help="time budget per measurement")
    d.add_argument("--copy-mib", type=float, default=256.0, help="size of the reference copy per rank")
    cp = bsub.add_parser("copy", help="copy bandwidth of every rank at once (the STREAM reference)")
    cp.add_argument("--mib", type=float, default=256.0, help="buffer per rank (MiB)")
    cp.add_argument("--backend", choices=["numpy", "cupy"], default="numpy")
    cp.add_argument("--seconds", type=float, default=2.0)
    f = bsub.add_parser("flow", help="flow training and sampling: weak scaling, memory, cost vs HMC")
    f.add_argument("--local-dims", default="16,16", help="lattice per rank for the weak scaling")
    f.add_argument("--group", default="U1", choices=["U1", "SU2", "SU3"])
    f.add_argument("--beta", type=float, default=2.0)
    f.add_argument("--batch", type=int, default=16)
    f.add_argument("--layers", type=int, default=16)
    f.add_argument("--bins", type=int, default=8)
    f.add_argument("--hidden", type=int, nargs="+", default=[16, 16])
    f.add_argument("--kernel-shape", choices=["cube", "cross"], default="cube")
    f.add_argument("--precision", choices=["double", "single"], default="double")
    f.add_argument("--backend", choices=["numpy", "cupy"], default="numpy",
                   help="cupy: the flow runs on CUDA")
    f.add_argument("--threads", type=int, default=1, help="torch threads per rank")
    f.add_argument("--seconds", type=float, default=3.0, help="time budget per timing")
    f.add_argument("--cost-dims", default="8,8", help="lattice of the flow-vs-HMC comparison")
    f.add_argument("--model", default="", help="a trained model file for the comparison "
                   "(else the flow is trained for --train-steps)")
    f.add_argument("--train-steps", type=int, default=300)
    f.add_argument("--lr", type=float, default=2e-3)
    f.add_argument("--cost-masks", choices=["planes", "sweep"], default="planes",
                   help="mask order of the comparison's flow (sweep: 2D, L0 + L1 - 2 layers, "
                   "--layers ignored)")
    f.add_argument("--cost-kernel", choices=["spline", "ncp"], default="spline",
                   help="U(1) kernel of the comparison's flow")
    f.add_argument("--cost-init", choices=["identity", "plaquette"], default="identity",
                   help="start of the comparison's flow (plaquette: train.init = plaquette; its "
                   "seconds count as training)")
    f.add_argument("--proposals", type=int, default=2000, help="0: skip the comparison")
    f.add_argument("--trajectories", type=int, default=1000)
    f.add_argument("--hmc-steps", type=int, default=8)
    f.add_argument("--hmc-thermalize", type=int, default=100)
    return p


def main(argv=None) -> int:
    from .comm import abort_launch, check_environment

    install_abort_handler()
    args = build_parser().parse_args(argv)
    if args.command in ("submit", "scaling", "model"):  # serial, on a login node: no MPI
        from .batch.model import markdown, run_model
        from .batch.scaling import study
        from .batch.submit import submit

        args.argv = list(sys.argv[1:] if argv is None else argv)
        try:
            if args.command == "model":
                result = run_model(args)
                if not args.json:
                    sys.stdout.write(markdown(result))
                    result = None
            else:
                result = submit(args) if args.command == "submit" else study(args)
        except LatticeError as exc:
            sys.stderr.write(f"lattice-hpc: error: {exc}\n")
            return 2
        if result is not None:
            print(json.dumps(result))
        return 0
    comm = None
    try:
        comm = world()  # refuses to run without MPI in one process of a multi-process launch
        check_environment(comm)  # collective: the same switches on every rank, or status 2 on all
        if args.command == "run":
            from .driver import run_job

            result = run_job(args.job, args.overrides, comm, force_unlock=args.force_unlock)
        elif args.command in ("measure", "convert"):
            from .driver import files

            result = getattr(files, args.command)(args, comm)
        elif args.command == "analyze":
            from .driver.analyze import analyze

            result = analyze(args, comm)
        else:
            if args.benchmark == "halo":
                from .bench.halo import run
            elif args.benchmark == "io":
                from .bench.io import run
            elif args.benchmark == "dslash":
                from .bench.dslash import run
            elif args.benchmark == "cg":
                from .bench.cg import run
            elif args.benchmark == "flow":
                from .bench.flow import run
            elif args.benchmark == "copy":
                from .bench.copy import run
            else:
                from .bench.plaquette import run
            result = run(args, comm)
    except LatticeError as exc:
        if comm is None:  # world() refused: this process is not in the MPI job the others wait in
            sys.stderr.write(f"lattice-hpc: error: {exc}\n")
            abort_launch(2)  # ends the whole launch (hydra: through PMI) instead of a hang
            return 2
        prefix = f"[rank {comm.rank}/{comm.size}] " if comm.size > 1 else ""
        sys.stderr.write(f"{prefix}lattice-hpc: error: {exc}\n")
        sys.stderr.flush()
        if comm.size > 1:
            time.sleep(0.5)  # let the other ranks, which hit the same check, print theirs
            comm.abort(2)
        return 2
    if comm.rank == 0 and result is not None:
        print(json.dumps(result))
        sys.stdout.flush()
    return 0


if __name__ == "__main__":
    sys.exit(main())
