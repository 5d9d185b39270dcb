"""Statistics with honest errors.

- :mod:`.stats` -- binned jackknife errors with automatic bin-size choice, and the error as a
  function of the bin size.
- :mod:`.gamma` -- the Gamma method (Wolff, hep-lat/0306017): autocorrelation function,
  integrated autocorrelation time with automatic windowing, replica, derived observables.
"""

from .gamma import MIN_LENGTH, GammaResult, autocorrelation, gamma_derived, gamma_method
from .stats import binned_error, binned_jackknife, error_vs_bin_size, mean_and_error

__all__ = ["binned_error", "binned_jackknife", "error_vs_bin_size", "mean_and_error",
           "GammaResult", "MIN_LENGTH", "autocorrelation", "gamma_derived", "gamma_method"]
