"""Monte Carlo updates of gauge fields.

- :mod:`.samplers`  -- exact samplers for the one-link distributions: SU(2) ``a0`` (Kennedy-Pendleton
  and Creutz), von Mises for U(1).
- :mod:`.heatbath`  -- checkerboard heatbath and overrelaxation sweeps (Cabibbo-Marinari for SU(N)).
"""

from .heatbath import heatbath_sweep, overrelax_sweep, update_links

__all__ = ["heatbath_sweep", "overrelax_sweep", "update_links"]
