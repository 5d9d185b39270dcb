"""Errors that name the problem and say how to fix it.

``LatticeError`` is the base of every error caused by the user's input (job file, command line,
lattice geometry).  Such errors are deterministic: every rank raises the same one before any
communication, and the command line prints it and exits with status 2 on every rank.
"""


class LatticeError(Exception):
    """An error in the user's input; the message says what is wrong and how to fix it."""


class GeometryError(LatticeError):
    """Lattice dimensions and process grid do not fit together."""


class ConfigError(LatticeError):
    """A job file or a ``--set key=value`` override is invalid (the message names the key)."""


class BackendError(LatticeError):
    """The requested array backend or precision is not available."""


class FormatError(LatticeError):
    """A gauge-configuration file is unreadable, inconsistent or fails its checksum (names the file)."""


class CheckpointError(LatticeError):
    """A checkpoint cannot be used: corrupt, truncated, or from a different job (names the file)."""
