"""Gauge groups: U(1) and SU(N), vectorised over sites (leading axes), NumPy or CuPy.

- :mod:`.linalg` -- matrix helpers (dagger, trace, Gram-Schmidt).
- :mod:`.sun`    -- :class:`SUN`: SU(N) for any N (SU(2), SU(3) in practice).
- :mod:`.u1`     -- :class:`U1`: U(1), stored as 1x1 complex matrices so that every gauge-field
  routine (plaquettes, staples, forces) is written once for all groups.

Algebra normalisation (both classes): generators ``T^a`` are anti-Hermitian with
``Tr(T^a T^b) = -delta_ab / 2`` (``T^a = i lambda^a / 2`` for SU(3), ``T = i / sqrt 2`` for U(1)),
so an algebra element ``X = sum_a x_a T^a`` has ``-Tr X^2 = |x|^2 / 2``.
"""

from .sun import SUN
from .u1 import U1


def get_group(name: str):
    """``"U1"``, ``"SU2"``, ``"SU3"``, ... -> a group object."""
    key = str(name).upper().replace("(", "").replace(")", "")
    if key == "U1":
        return U1()
    if key.startswith("SU"):
        try:
            n = int(key[2:])
        except ValueError:
            n = 0
        if n >= 2:
            return SUN(n)
    from ..errors import ConfigError

    raise ConfigError(f"unknown gauge group {name!r}: use U1, SU2, SU3 (or SU<N>)")


__all__ = ["SUN", "U1", "get_group"]
