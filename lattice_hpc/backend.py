"""Array backend (NumPy or CuPy) and floating-point precision, chosen in one place.

Every field-creating function takes a :class:`Backend`; kernels use ``backend.xp`` as their array
module, so the same code runs on NumPy (CPU) and CuPy (GPU).  Precision ``double`` means float64 /
complex128, ``single`` means float32 / complex64.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .errors import BackendError

_PRECISIONS = {
    "double": (np.float64, np.complex128),
    "single": (np.float32, np.complex64),
}


@dataclass(frozen=True)
class Backend:
    """An array module and a precision.

    Attributes:
        name: ``"numpy"`` or ``"cupy"``.
        precision: ``"double"`` or ``"single"``.
    """

    name: str = "numpy"
    precision: str = "double"

    def __post_init__(self):
        if self.name not in ("numpy", "cupy"):
            raise BackendError(f"unknown backend {self.name!r}: use 'numpy' or 'cupy'")
        if self.precision not in _PRECISIONS:
            raise BackendError(f"unknown precision {self.precision!r}: use 'double' or 'single'")
        if self.name == "cupy":
            try:
                import cupy  # noqa: F401
            except ImportError as exc:  # pragma: no cover - needs a GPU machine
                raise BackendError(
                    "backend 'cupy' requested but CuPy is not installed: "
                    "pip install 'lattice_hpc[gpu]' on a GPU machine, or use backend='numpy'"
                ) from exc

    @property
    def xp(self):
        """The array module (``numpy`` or ``cupy``)."""
        if self.name == "cupy":
            import cupy

            return cupy
        return np

    @property
    def real(self):
        """Real dtype of this precision."""
        return _PRECISIONS[self.precision][0]

    @property
    def complex(self):
        """Complex dtype of this precision."""
        return _PRECISIONS[self.precision][1]

    def asnumpy(self, a):
        """Copy an array of this backend to host NumPy (no copy for NumPy)."""
        if self.name == "cupy":
            return self.xp.asnumpy(a)
        return np.asarray(a)

    def asarray(self, a, dtype=None):
        """Move a host array onto this backend."""
        return self.xp.asarray(a, dtype=dtype)


def array_module(a):
    """The array module (numpy or cupy) that owns array ``a``."""
    mod = type(a).__module__
    if mod.startswith("cupy"):
        import cupy

        return cupy
    return np


DEFAULT = Backend()
