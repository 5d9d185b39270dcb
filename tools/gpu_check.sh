#!/usr/bin/env bash
# Issue 4's GPU work in one call, for a machine with an NVIDIA GPU and CuPy (e.g. the lent H100):
#   1. the fused CUDA kernels against the reference (tests/test_kernels.py collects the `cuda`
#      kernel whenever CuPy sees a GPU), with the operator and solver tests;
#   2. `bench dslash` at 16^4, 24^4, 32^4 in single and double precision, and `bench cg`.
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
for f in "$OUT"/*"$TAG".json; do echo "== $f"; "$PY" -c "
import json, sys
d = json.load(open(sys.argv[1]))
for r in d['results']:
    print({k: (round(v, 4) if isinstance(v, float) else v) for k, v in r.items()})" "$f"; done
exit $status
