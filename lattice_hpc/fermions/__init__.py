"""Wilson and Wilson-clover fermions on the decomposed lattice.

- :mod:`.gamma`   -- DeGrand-Rossi Dirac matrices, ``sigma_{mu nu}``, spin projectors;
- :mod:`.wilson`  -- ``D``, ``D^dag``, ``gamma_5``, the hopping term with half-spinor face exchange,
  the clover term and its inverse blocks, at any precision;
- :mod:`.kernels` -- the hopping kernels kept in step: reference (array module), fused C++ compiled
  for the CPU, the same source on the GPU (CuPy/NVRTC);
- :mod:`.evenodd` -- even/odd preconditioning: the Schur complement ``D_hat`` and its solve;
- :mod:`.spinor`  -- spinor fields: random (decomposition independent), point sources, gathers;
- :mod:`.propagator` -- point-source propagators (pluggable solver) and the pion correlator;
- :mod:`.condensate` -- Z2-noise estimate of the chiral condensate ``(1/V) Tr D^{-1}``;
- :mod:`.free`    -- free-field momentum-space references (propagator, pion, ``Tr D^{-1}``).
"""

from .gamma import GAMMA, GAMMA5, projector, sigma
from .spinor import gather_spinor, point_source, random_spinor, inner
from .wilson import WilsonDirac, field_strength
from .evenodd import SchurOperator, solve_evenodd
from .propagator import Propagator, pion_correlator, point_propagator
from .condensate import CondensateResult, chiral_condensate, z2_noise

__all__ = ["GAMMA", "GAMMA5", "projector", "sigma", "WilsonDirac", "field_strength",
           "SchurOperator", "solve_evenodd",
           "random_spinor", "point_source", "gather_spinor", "inner",
           "Propagator", "point_propagator", "pion_correlator",
           "CondensateResult", "chiral_condensate", "z2_noise"]
