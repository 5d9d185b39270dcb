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


class CheckpointUnreadable(LatticeError):
    """A checkpoint (or another file of a run directory) could not be read because of an I/O error
    (permission, EIO, a file system that went away): not corruption.  Nothing is renamed or
    discarded; the job stops on every rank with status 2 and can be rerun once the file system
    answers again."""


class RunDirLocked(LatticeError):
    """The run directory belongs to another job (its lock is held); the message says by whom and
    how to take over a stale lock."""


class ChainError(LatticeError):
    """A Markov chain cannot go on (a solver that fails inside a step): the message names the
    step; the last checkpoint stays valid.  (A trajectory with a non-finite ``dH`` is not an
    error: it is rejected and recorded with ``"nonfinite": true``.)"""


class FlowError(LatticeError):
    """A normalizing flow cannot go on: a non-finite loss, gradient or log-weight (the step is not
    applied), or a model file that does not fit the job (names the file and the mismatch)."""
