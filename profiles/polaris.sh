# profiles/polaris.sh -- ALCF Polaris (4 x NVIDIA A100 per node; PBS, mpiexec, Cray MPICH).
#
# UNTESTED.  Written from ALCF's public Polaris user guide; nobody has run it on Polaris yet.
# Check module names with `module avail` and ALCF's current documentation.  See INSTALL.md.
#
#     source profiles/polaris.sh

module use /soft/modulefiles
module load conda
conda activate base             # Python with PyTorch (CUDA), NumPy, mpi4py for Cray MPICH
module load PrgEnv-gnu          # Polaris defaults to PrgEnv-nvhpc; if refused:
                                #   module swap PrgEnv-nvhpc PrgEnv-gnu
module load cray-hdf5-parallel
module load craype-accel-nvidia80   # Cray GTL library, needed for GPU-aware MPI (build and run)

# GPU-aware MPI: lattice_hpc passes CuPy device buffers to MPI directly.  Needs mpi4py linked with
# the GTL library; set to 0 if you see "GTL library is not linked" (halos then go through the host).
export MPICH_GPU_SUPPORT_ENABLED=1
