#!/usr/bin/env python3
"""The scaling study of issue 13 on one machine, rerunnable: strong and weak scaling of halo,
dslash, cg and hmc at 1, 2 and 4 ranks, then the performance model calibrated on them.

    python tools/scaling_study.py [--machine local] [--ranks 1,2,4] [--out bench/results/DIR]
                                  [--seconds 2] [--repeat 3] [--only halo,dslash,cg,hmc]
                                  [--model-only]

Each study is ``lattice-hpc scaling MODE --kernel K ...`` (its folder under ``--out``); the model
is ``lattice-hpc model --calibration <all of them> --out OUT/model``.  Run it on an idle machine:
the figures are ratios within one run, but oversubscribed points (more ranks than cores) and
background load make the absolute times meaningless.
"""

from __future__ import annotations

import argparse
import datetime
import os
import socket
import subprocess
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)

# (kernel, mode, dims): strong dims are global, weak dims per rank
STUDIES = [
    ("halo", "strong", "8,8,8,8"), ("halo", "strong", "16,16,16,16"), ("halo", "weak", "8,8,8,8"),
    ("dslash", "strong", "16,16,16,16"), ("dslash", "weak", "8,8,8,16"),
    ("cg", "strong", "8,8,8,16"), ("cg", "weak", "8,8,8,8"),
    ("hmc", "strong", "8,8,8,8"), ("hmc", "weak", "4,4,4,8"),
]


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--machine", default="local")
    ap.add_argument("--ranks", default="1,2,4")
    ap.add_argument("--seconds", default="2")
    ap.add_argument("--repeat", default="3", help="rounds per point (the median is kept)")
    ap.add_argument("--only", default="halo,dslash,cg,hmc")
    ap.add_argument("--out", default=os.path.join(
        ROOT, "bench", "results", f"scaling_{socket.gethostname()}_{datetime.date.today().isoformat()}"))
    ap.add_argument("--model-only", action="store_true", help="only recompute the model")
    args = ap.parse_args()
    only = set(args.only.split(","))
    dirs = []
    for kernel, mode, dims in STUDIES:
        if kernel not in only:
            continue
        d = os.path.join(args.out, f"{kernel}_{mode}_{dims.replace(',', 'x')}")
        dirs.append(d)
        if args.model_only:
            continue
        cmd = ["lattice-hpc", "scaling", mode, "--kernel", kernel, "--ranks", args.ranks, "--dims",
               dims, "--machine", args.machine, "--seconds", args.seconds, "--repeat", args.repeat,
               "--out", d]
        if kernel == "io":
            cmd += ["--io-dir", args.out]
        print("+", " ".join(cmd), flush=True)
        subprocess.run(cmd, check=True, cwd=ROOT, stdout=subprocess.DEVNULL)
    cmd = ["lattice-hpc", "model", "--calibration", *dirs, "--out", os.path.join(args.out, "model")]
    print("+", " ".join(cmd), flush=True)
    subprocess.run(cmd, check=True, cwd=ROOT)
    return 0


if __name__ == "__main__":
    sys.exit(main())
