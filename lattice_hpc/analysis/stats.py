"""Binned jackknife errors for Monte Carlo time series.

Autocorrelated samples underestimate the error of the mean if treated as independent.  Binning the
series into blocks longer than the autocorrelation time removes that bias (Flyvbjerg and Petersen,
J. Chem. Phys. 91 (1989) 461).  :func:`binned_error` takes the largest jackknife error over bin
sizes ``1, 2, 4, ...`` that still leave at least ``min_bins`` bins: a conservative plateau estimate.
:func:`error_vs_bin_size` gives the whole curve.  The Gamma method with automatic windowing
(Wolff, hep-lat/0306017) is the refined alternative: :mod:`.gamma`.
"""

from __future__ import annotations

import numpy as np


def binned_jackknife(x, bin_size: int, f=None):
    """Jackknife estimate and error of ``f(mean)`` (default: the mean) with bins of ``bin_size``.

    The tail that does not fill a whole bin is dropped.
    """
    x = np.asarray(x, dtype=np.float64)
    nb = len(x) // bin_size
    if nb < 2:
        raise ValueError(f"{len(x)} samples make fewer than 2 bins of size {bin_size}")
    bins = x[: nb * bin_size].reshape(nb, bin_size, *x.shape[1:]).mean(axis=1)
    total = bins.sum(axis=0)
    jk = (total - bins) / (nb - 1)
    f = f or (lambda m: m)
    vals = np.array([f(j) for j in jk])
    est = f(bins.mean(axis=0))
    err = np.sqrt((nb - 1) / nb * ((vals - vals.mean(axis=0)) ** 2).sum(axis=0))
    return est, err


def binned_error(x, min_bins: int = 16) -> float:
    """Error of the mean: the largest binned-jackknife error over bin sizes 1, 2, 4, ...

    Bin sizes stop where fewer than ``min_bins`` bins remain.  Needs at least ``2 * min_bins``
    samples for more than one bin size; with fewer than 2 samples the error is ``nan``.
    """
    x = np.asarray(x, dtype=np.float64)
    if len(x) < 2:
        return float("nan")
    errs = []
    b = 1
    while len(x) // b >= max(min_bins, 2) or b == 1:
        errs.append(float(binned_jackknife(x, b)[1]))
        b *= 2
        if len(x) // b < 2:
            break
    return max(errs)


def error_vs_bin_size(x, bin_sizes=None, min_bins: int = 16, f=None):
    """Binned-jackknife error of the mean (or of ``f(mean)``) as a function of the bin size.

    ``bin_sizes`` default: ``1, 2, 4, ...`` while at least ``min_bins`` bins remain (at least bin
    size 1).  Returns ``(bin_sizes, errors)`` as arrays.  For a series with integrated
    autocorrelation time ``tau_int`` the error grows with the bin size ``B`` and reaches a plateau
    ``sqrt(2 tau_int) * naive error`` once ``B >> tau_int`` (the plateau is what
    :func:`binned_error` estimates).
    """
    x = np.asarray(x, dtype=np.float64)
    if bin_sizes is None:
        bin_sizes = [1]
        while len(x) // (2 * bin_sizes[-1]) >= max(min_bins, 2):
            bin_sizes.append(2 * bin_sizes[-1])
    sizes = np.asarray([int(b) for b in bin_sizes])
    if np.any(sizes < 1):
        raise ValueError(f"bin sizes must be >= 1, got {sizes.tolist()}")
    errors = np.array([binned_jackknife(x, int(b), f)[1] for b in sizes], dtype=np.float64)
    return sizes, errors


def mean_and_error(x, min_bins: int = 16) -> list[float]:
    """``[mean, error]`` of a series (see :func:`binned_error`)."""
    x = np.asarray(x, dtype=np.float64)
    return [float(x.mean()), binned_error(x, min_bins)]
