"""Shared fixtures.  Tests marked ``mpi`` run under ``mpirun -n 2`` and ``-n 4`` with ``--with-mpi``.

Every MPI test body loops over all the process grids that fit the job's size (see
:func:`helpers.on_grids`), so the same test is right at 1, 2 and 4 ranks and every grid of the
acceptance list runs in the 4-rank job.
"""

import os
import sys

sys.path.insert(0, os.path.dirname(__file__))
