# profiles/aurora.sh -- ALCF Aurora (Intel GPUs; PBS, mpiexec, Aurora MPICH).
#
# UNTESTED.  Written from ALCF's public Aurora user guide; nobody has run it on Aurora yet.
# Check module names with `module avail` and ALCF's current documentation.  See INSTALL.md.
#
#     source profiles/aurora.sh
#
# CuPy does not run on Intel GPUs: on Aurora lattice_hpc uses its NumPy backend on the CPUs.
# An Intel GPU path (dpnp or PyTorch on XPU) is future work.

module load frameworks          # conda Python with PyTorch + IPEX, NumPy, mpi4py (Aurora MPICH)
                                # (older ALCF pages: `module use /soft/modulefiles` first)
module load hdf5                # Aurora PE HDF5; must be MPI-enabled (h5pcc -showconfig)

# lattice_hpc hands no GPU buffers to MPI on Aurora; ALCF suggests switching GPU support off for
# applications that do not need it.
export MPIR_CVAR_ENABLE_GPU=0
unset LATTICE_HPC_GPU_AWARE_MPI
