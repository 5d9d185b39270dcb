"""Statistics with honest errors.

- :mod:`.stats` -- binned jackknife errors with automatic bin-size choice.
"""

from .stats import binned_error, binned_jackknife, mean_and_error

__all__ = ["binned_error", "binned_jackknife", "mean_and_error"]
