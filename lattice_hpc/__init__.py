"""lattice_hpc: SPMD lattice gauge theory on decomposed lattices (MPI + NumPy/CuPy + PyTorch).

Layers, bottom to top (each calls only downward):

- ``comm``      the only package that talks to MPI: communicators, process grid, halo exchange.
- ``geometry``  global lattice, local blocks, coordinates, parity, halo slicing.
- ``backend``   array module (NumPy or CuPy) and precision, chosen in one place.
- ``rng``       counter-based random numbers keyed by (seed, global site, purpose, draw).
- ``groups``    U(1), SU(N): Haar elements, projections, exponentials.
- ``gauge``     gauge fields, the Wilson action, its force, observables, gauge transformations.
- ``update``    Monte Carlo updates (heatbath, overrelaxation).
- ``analysis``  statistics with honest errors.
- ``driver``    job files, run directories, job types.
- ``bench``     benchmarks with their in-run reference figures.
- ``cli``       the ``lattice-hpc`` command.
"""

__version__ = "0.1.0"
