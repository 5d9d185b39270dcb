# profiles/perlmutter.sh -- NERSC Perlmutter GPU nodes (4 x NVIDIA A100; Slurm, srun, Cray MPICH).
#
# UNTESTED.  Written from NERSC's public Python documentation; nobody has run it on Perlmutter yet.
# Check module names with `module avail` and NERSC's current documentation.  See INSTALL.md.
#
#     source profiles/perlmutter.sh

module load PrgEnv-gnu
module load cudatoolkit
module load craype-accel-nvidia80   # Cray GTL library, needed for GPU-aware MPI (build and run)
module load cray-hdf5-parallel
module load python                  # NERSC's conda Python, used to create the venv

# GPU-aware MPI: lattice_hpc passes CuPy device buffers to MPI directly.  Needs mpi4py linked with
# the GTL library; set to 0 if you see "GTL library is not linked" (halos then go through the host).
export MPICH_GPU_SUPPORT_ENABLED=1
# NERSC: HDF5 file locking must be off for files outside $SCRATCH (for example on CFS).
export HDF5_USE_FILE_LOCKING=FALSE
