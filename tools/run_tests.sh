#!/usr/bin/env bash
# The test command of the README (`make test`): serial tests, then the MPI tests at 2 and 4 ranks
# (4 is oversubscribed on small machines).  Exits non-zero on any failure.
set -uo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}
export OMP_NUM_THREADS=${OMP_NUM_THREADS:-1} OPENBLAS_NUM_THREADS=${OPENBLAS_NUM_THREADS:-1}
status=0
step() { printf '\n=== %s ===\n' "$*"; }

step "serial: every test on one process"
timeout 2400 "$PY" -m pytest -q -p no:cacheprovider --with-mpi --durations=25 tests || status=1

for n in 2 4; do
  step "MPI: mpirun -n $n, tests marked mpi"
  # rank 0 reports on the terminal; every rank's report goes to a log, printed if the run fails
  logdir=$(mktemp -d)
  if ! timeout 1200 mpirun -n "$n" "$PY" -m pytest -q -p no:cacheprovider --with-mpi -m mpi tests \
        > "$logdir/all.log" 2>&1; then
    status=1
    cat "$logdir/all.log"
  else
    grep -E "^[0-9]+ passed" "$logdir/all.log" | head -1 | sed "s/^/mpirun -n $n: /"
  fi
  rm -rf "$logdir"
done

if [ $status -ne 0 ]; then echo "TESTS FAILED"; else echo "ALL TESTS PASSED"; fi
exit $status
