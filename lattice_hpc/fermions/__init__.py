"""Wilson and Wilson-clover fermions on the decomposed lattice.

- :mod:`.gamma`   -- DeGrand-Rossi Dirac matrices, ``sigma_{mu nu}``, spin projectors;
- :mod:`.wilson`  -- ``D``, ``D^dag``, ``gamma_5``, the hopping term with half-spinor face exchange,
  the clover term (reference implementation on the array module);
- :mod:`.spinor`  -- spinor fields: random (decomposition independent), point sources, gathers.
"""

from .gamma import GAMMA, GAMMA5, projector, sigma
from .spinor import gather_spinor, point_source, random_spinor, inner
from .wilson import WilsonDirac, field_strength

__all__ = ["GAMMA", "GAMMA5", "projector", "sigma", "WilsonDirac", "field_strength",
           "random_spinor", "point_source", "gather_spinor", "inner"]
