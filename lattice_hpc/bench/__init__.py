"""Benchmarks (``lattice-hpc bench KERNEL``): each prints JSON with its measured figures and the
reference figure they are compared with, measured in the same run (CONVENTIONS.md).

- :mod:`.timing`    -- synchronised repeat timing (median of repeats, barriers between).
- :mod:`.halo`      -- halo exchange vs raw ``MPI_Sendrecv`` of the same messages.
- :mod:`.plaquette` -- the plaquette kernel vs a copy of the same arrays.
"""
