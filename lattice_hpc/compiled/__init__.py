"""Compiled kernels: one C++ source per kernel, built by g++ for the CPU and by NVRTC for the GPU.

- ``common.cuh`` -- what every kernel source starts with: the CPU/GPU macros (``DEV``, ``KERNEL``,
  ``SITE_LOOP``), complex numbers, the OpenMP thread count;
- :mod:`.build`  -- puts a kernel source together (common part, prelude, kernel file) and builds
  it into a cached shared library for the CPU (ctypes).

The kernels themselves live with the physics they compute (``fermions/kernels/wilson.cuh``,
``gauge/force.cuh``), each next to the reference it is tested against.
"""

from .build import compose, shared_library

__all__ = ["compose", "shared_library"]
