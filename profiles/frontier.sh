# profiles/frontier.sh -- OLCF Frontier (4 x AMD MI250X = 8 GCDs per node; Slurm, srun, Cray MPICH).
#
# UNTESTED.  Written from OLCF's public Python guides; nobody has run it on Frontier yet.
# OLCF's guides were last tested with PrgEnv-gnu/8.5.0, cray-hdf5-parallel/1.12.2.9 and
# miniforge3/23.11.0-0; check `module avail` for current versions.  See INSTALL.md.
#
#     source profiles/frontier.sh
#
# CuPy on ROCm is experimental (OLCF builds CuPy 12.3.0 from source); the NumPy backend is the
# safe choice on Frontier for now.

module load PrgEnv-gnu
module load cray-hdf5-parallel
module load rocm                    # match the ROCm version of your PyTorch / CuPy builds
module load craype-accel-amd-gfx90a # Cray GTL library, needed for GPU-aware MPI (build and run)
module load miniforge3              # OLCF: use `source activate`, never `conda init`

# GPU-aware MPI: lattice_hpc passes CuPy device buffers to MPI directly.  Needs mpi4py linked with
# the GTL library; set to 0 if you see "GTL library is not linked" (halos then go through the host).
export MPICH_GPU_SUPPORT_ENABLED=1
