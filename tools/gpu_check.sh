#!/usr/bin/env bash
# Issue 4's GPU work in one call, for a machine with an NVIDIA GPU and CuPy (e.g. the lent H100):
#   1. the fused CUDA kernels against the reference (tests/test_kernels.py collects the `cuda`
#      kernel whenever CuPy sees a GPU), with the operator and solver tests;
#   2. `bench dslash` at 16^4, 24^4, 32^4 in single and double precision, and `bench cg`;
#   3. the flows on CUDA (issue 12): a flow on the GPU against the same flow on the CPU (float64,
#      outputs and log-densities to 1e-11, a training step), a flow job with backend cupy, and
#      `bench flow --backend cupy` in single and double precision.
# JSON results go to $OUT (default bench/results) named with $TAG (default: the GPU's name + date).
set -uo pipefail
cd "$(dirname "$0")/.."
export PYTHONPATH=$PWD OMP_NUM_THREADS=${OMP_NUM_THREADS:-1}
PY=${PYTHON:-python3}
OUT=${OUT:-bench/results}
mkdir -p "$OUT"
name=$("$PY" -c "import cupy; p = cupy.cuda.runtime.getDeviceProperties(0); print(p['name'].decode() if isinstance(p['name'], bytes) else p['name'])") || {
  echo "gpu_check: CuPy sees no GPU"; exit 1; }
TAG=${TAG:-$(echo "$name" | tr -cs 'A-Za-z0-9' '-' | sed 's/-$//')_$(date +%F)}
echo "device: $name  tag: $TAG"
status=0
"$PY" -m pytest -q -p no:cacheprovider tests/test_kernels.py tests/test_wilson.py tests/test_solvers.py \
  2>&1 | tail -25 || status=1
"$PY" -m lattice_hpc.cli bench dslash --backend cupy --dims 16,16,16,16 24,24,24,24 32,32,32,32 \
  --seconds 2 > "$OUT/dslash_$TAG.json" || status=1
"$PY" -m lattice_hpc.cli bench dslash --backend cupy --dims 32,32,32,32 --csw 1.0 --precision double \
  --seconds 2 > "$OUT/dslash_clover_$TAG.json" || status=1
"$PY" -m lattice_hpc.cli bench cg --backend cupy --dims 16,16,16,16 32,32,32,32 --seconds 2 \
  > "$OUT/cg_$TAG.json" || status=1
"$PY" - <<'PYEOF' || status=1
import sys, torch
sys.path.insert(0, "tests")
from flow_helpers import arch, prior, randomise
from lattice_hpc.comm import self_comm
from lattice_hpc.flows.geometry import FlowLattice
from lattice_hpc.flows.model import GaugeFlow
from lattice_hpc.geometry import Lattice
for group, dims in (("U1", (16, 16)), ("SU3", (4, 4, 4, 4))):
    lat = Lattice(dims, (1,) * len(dims), comm=self_comm())
    out = []
    for dev in ("cpu", "cuda"):
        fl = FlowLattice(lat, dev)
        flow = randomise(GaugeFlow(fl, arch(group, dims, layers=8 if len(dims) == 2 else 4), seed=3),
                         scale=0.2 if len(dims) == 2 else 0.05).to(dev)
        z = prior(fl, group, n=4)
        U, lq = flow.sample(z)
        lq.sum().backward()
        out.append((U.detach().cpu(), lq.detach().cpu(), next(flow.parameters()).grad.cpu()))
    d = [float((a - b).abs().max()) for a, b in zip(*out)]
    print(f"flow {group} cuda vs cpu (float64): max |dU| {d[0]:.2e}, |d log q| {d[1]:.2e}, |d grad| {d[2]:.2e}")
    assert d[0] < 1e-11 and d[1] < 1e-9, d
PYEOF
rundir=$(mktemp -d)
"$PY" -m lattice_hpc.cli run jobs/flow_u1_b2.0_8x8.toml --set backend.name=cupy --set train.steps=50 \
  --set sample.measure=500 --set output.dir="$rundir/run" > "$OUT/flow_job_cuda_$TAG.json" || status=1
for prec in single double; do
  "$PY" -m lattice_hpc.cli bench flow --backend cupy --precision $prec --local-dims 32,32 --batch 64 \
    --seconds 2 --proposals 0 > "$OUT/flow_${prec}_$TAG.json" || status=1
done
for f in "$OUT"/*"$TAG".json; do echo "== $f"; "$PY" -c "
import json, sys
d = json.load(open(sys.argv[1]))
for r in d.get('results', [d]):
    print({k: (round(v, 4) if isinstance(v, float) else v) for k, v in r.items()})" "$f"; done
exit $status
