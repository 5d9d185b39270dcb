# profiles/debian.sh -- local defaults on a Debian or Ubuntu machine.
# Tested on Debian 12 (bookworm).  Source it before building or running:
#
#     source profiles/debian.sh
#
# Nothing here is required: tools/install.sh, `make run` and `make test` work without it.  This
# file only records what the local setup is, so that the profiles of the big machines have a
# baseline to compare against.  It exports nothing.
#
# MPI     Debian's MPICH 4.0.2 (packages mpich, libmpich-dev), launched with `mpirun` (Hydra).
#         MPICH starts more ranks than there are cores without any extra flag, so the 4-rank
#         tests of `make test` run on a 2-core machine; no oversubscription option is needed.
#         (Open MPI would need `--oversubscribe`; lattice_hpc expects MPICH here.)
# HDF5    libhdf5-mpich-dev: HDF5 1.10.8, mpich flavour, pkg-config name `hdf5-mpich`.
#         h5py is built from source against it with HDF5_MPI=ON CC=mpicc.
# Python  tools/install.sh installs into $PYTHON (default: python3).  On a stock Debian/Ubuntu the
#         system python3 refuses pip installs, so use a virtual environment:
#             python3 -m venv .venv && source .venv/bin/activate
# GPU     none; the NumPy backend runs on the CPU.  PyTorch is the CPU build.
#
# Optional settings (uncomment if you want them):
# export PYTHON=python3                  # interpreter for tools/install.sh
# export LATTICE_HPC_SKIP_TORCH=1        # leave PyTorch out of tools/install.sh
# export LATTICE_HPC_NO_MPI=1            # run serially without importing mpi4py
# export OMP_NUM_THREADS=1               # one BLAS thread per rank when running many ranks
