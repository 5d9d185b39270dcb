"""Monte Carlo errors with the Gamma method: autocorrelation function, tau_int, automatic window.

U. Wolff, "Monte Carlo errors with less errors", Comput. Phys. Commun. 156 (2004) 143,
hep-lat/0306017 (below: "the paper").  Notation of the paper: ``R`` replica (independent chains of
the same ensemble), replicum ``r`` holds ``N_r`` measurements ``a^alpha_{i,r}`` of the primary
observables ``alpha``, ``N = sum_r N_r``.  Only the formulas are taken from the paper; the code is
our own.

Public functions (all pure NumPy, serial, no MPI):

- :func:`gamma_method` -- value and error of a primary observable (the mean of one series);
- :func:`gamma_derived` -- value and error of ``F = f(A_1, ..., A_n)``, a function of several means,
  through the linearised propagation of the paper's section 3 (gradient by central differences);
- :func:`autocorrelation` -- the estimator ``Gamma(t)`` of the autocorrelation function (FFT-based).

Each returns or uses :class:`GammaResult`: ``value, error, error_of_error, tau_int, dtau_int,
window, n``.

What is computed (the paper's formulas; its section 3 is the linearised error propagation
of derived quantities, the rest follows its sections on estimators, windowing and replica):

- projected fluctuations (linearisation of ``f`` about the overall means):
  ``delta_{i,r} = sum_alpha f_alpha (a^alpha_{i,r} - abar_alpha)``, ``abar_alpha = (1/N) sum_{i,r}
  a^alpha_{i,r}`` (for a primary observable ``f_alpha = 1``);
- autocorrelation function with replica:
  ``Gamma(t) = 1/(N - R t) sum_r sum_{i=1}^{N_r - t} delta_{i,r} delta_{i+t,r}``, for
  ``t = 0 .. W_max``, ``W_max = min_r N_r // 2``; the sums are circular correlations of the
  zero-padded series (padded to at least ``2 N_r``), computed with the FFT;
- ``rho(t) = Gamma(t) / Gamma(0)``, ``C(W) = Gamma(0) + 2 sum_{t=1}^W Gamma(t)``,
  ``tau_int(W) = C(W) / (2 Gamma(0)) = 1/2 + sum_{t=1}^W rho(t)``;
- automatic windowing: with ``tau(W) = S / ln((2 tau_int(W) + 1) / (2 tau_int(W) - 1))``
  (``tau(W) = 0`` where ``tau_int(W) <= 1/2``) and
  ``g(W) = exp(-W / tau(W)) - tau(W) / sqrt(W N)``, the window is the first ``W >= 1`` with
  ``g(W) < 0``; ``S = 1.5`` by default (the paper: results are stable for ``1 <= S <= 2``);
- bias correction: subtracting the estimated mean biases ``Gamma(t)`` by about
  ``-C/N``; so ``Gamma(t) -> Gamma(t) + C(W)/N`` for all ``t``, i.e. ``C(W) -> C(W) (1 + (2W+1)/N)``,
  and ``tau_int = C(W) / (2 Gamma(0))`` with the corrected ``Gamma``;
- error of the value: ``sigma = sqrt(C(W) / N)``; error of the error
  ``sigma * sqrt((W + 1/2) / N)`` (from the Madras-Sokal variance of ``C(W)``, as in the paper);
  error of ``tau_int``: ``tau_int * sqrt((4 W + 2) / N)`` (Madras and Sokal, J. Stat. Phys. 50
  (1988) 109, as quoted in the paper);
- value: ``f(abar)``; with ``R >= 2`` replica a derived value is corrected for its ``O(1/N)``
  bias, ``F = (R f(abar) - sum_r (N_r/N) f(abar_r)) / (R - 1)`` (the paper's replica
  formula); for a primary
  observable this correction is exactly zero and the value is the plain mean of all measurements.

Limits and degenerate cases: a series (each replicum) must hold at least :data:`MIN_LENGTH`
measurements, and NaN or infinite values are refused (``ValueError`` naming the length or the
index).  A constant series (all fluctuations exactly equal) has error 0, ``tau_int = 1/2``,
``dtau_int = 0`` and window 0.  Two situations give a :class:`RuntimeWarning` rather than an error:
no window ``W <= W_max`` satisfies the criterion (the chain is too short for its autocorrelation
time; ``W = W_max`` is used), and ``C(W) <= 0`` (strongly anticorrelated data, where the criterion
stops too early; the window-0 estimate ``tau_int = 1/2``, ``sigma = sqrt(Gamma(0)/N)`` is used,
which overestimates the error of an anticorrelated series).  The criterion assumes
``rho(t) >= 0``: for a mildly anticorrelated series (``rho(1) < 0``, e.g. from overrelaxation) it
stops at ``W = 1`` and the error is that of the first lag only (for an AR(1) series with
``rho(1) = -0.3`` it is about 15% too small); ``dtau_int`` does not include this truncation bias.
"""

from __future__ import annotations

import math
import warnings
from dataclasses import dataclass, field

import numpy as np

#: the fewest measurements a replicum may hold (the window search needs W_max = N_r // 2 >= 5)
MIN_LENGTH = 10


@dataclass(frozen=True)
class GammaResult:
    """Result of the Gamma method for one (primary or derived) observable.

    Attributes:
        value: the estimate (mean of a primary observable; bias-corrected ``f`` for a derived one).
        error: its statistical error ``sqrt(C(W)/N)``.
        error_of_error: the statistical error of ``error``.
        tau_int: integrated autocorrelation time at the chosen window (bias-corrected), in units
            of the spacing of the measurements; ``1/2`` for uncorrelated data.
        dtau_int: the statistical error of ``tau_int``.
        window: the summation window ``W`` chosen by the automatic criterion.
        n: total number of measurements ``N`` (all replica).
        replica: number of replica ``R``.
        rho: normalised autocorrelation function ``rho(t)``, ``t = 0 .. W_max`` (bias-corrected).
    """

    value: float
    error: float
    error_of_error: float
    tau_int: float
    dtau_int: float
    window: int
    n: int
    replica: int = 1
    rho: np.ndarray = field(default=None, repr=False, compare=False)

    def as_dict(self) -> dict:
        """The scalar fields as a JSON-ready dictionary."""
        return {"value": self.value, "error": self.error, "error_of_error": self.error_of_error,
                "tau_int": self.tau_int, "dtau_int": self.dtau_int, "window": self.window,
                "n": self.n, "replica": self.replica}


def _replica(data, what: str = "the series") -> list[np.ndarray]:
    """``data`` as a list of 1-D float arrays, one per replicum; checks length and finiteness.

    ``data`` is a 1-D array (one chain), a 2-D array (one row per replicum) or a sequence of 1-D
    arrays (replica of possibly different lengths).
    """
    if isinstance(data, np.ndarray) and data.ndim == 2:
        reps = [np.asarray(row, dtype=np.float64) for row in data]
    elif isinstance(data, np.ndarray) or all(np.ndim(s) == 0 for s in data):
        reps = [np.asarray(data, dtype=np.float64)]
    else:
        reps = [np.asarray(s, dtype=np.float64) for s in data]
    if not reps:
        raise ValueError(f"{what} holds no replica")
    for r, x in enumerate(reps):
        name = what if len(reps) == 1 else f"replicum {r} of {what}"
        if x.ndim != 1:
            raise ValueError(f"{name} must be one-dimensional, got shape {x.shape}")
        if len(x) < MIN_LENGTH:
            raise ValueError(f"{name} holds {len(x)} measurements; the Gamma method needs at "
                             f"least {MIN_LENGTH}")
        bad = np.flatnonzero(~np.isfinite(x))
        if len(bad):
            raise ValueError(f"{name} holds a non-finite value ({x[bad[0]]}) at index {bad[0]}"
                             f"{f' and {len(bad) - 1} more' if len(bad) > 1 else ''}")
    return reps


def _correlation_sums(deltas: list[np.ndarray], tmax: int) -> np.ndarray:
    """``sum_r sum_{i=1}^{N_r - t} delta_{i,r} delta_{i+t,r}`` for ``t = 0 .. tmax`` (FFT)."""
    acc = np.zeros(tmax + 1)
    for d in deltas:
        size = 1 << (2 * len(d) - 1).bit_length()  # >= 2 N_r: no wrap-around for t < N_r
        spec = np.fft.rfft(d, size)
        acc += np.fft.irfft(spec.real ** 2 + spec.imag ** 2, size)[: tmax + 1]
    return acc


def _gamma(deltas: list[np.ndarray], tmax: int) -> np.ndarray:
    """The replica estimator ``Gamma(t) = sums(t) / (N - R t)``, ``t = 0 .. tmax``."""
    n = sum(len(d) for d in deltas)
    t = np.arange(tmax + 1)
    return _correlation_sums(deltas, tmax) / (n - len(deltas) * t)


def autocorrelation(data, tmax: int | None = None, normalized: bool = False) -> np.ndarray:
    """Estimated autocorrelation function ``Gamma(t)`` (or ``rho(t)``) of a primary observable.

    ``data`` is one chain or several replica (see :func:`gamma_method`); fluctuations are taken
    about the mean of all replica.  ``t = 0 .. tmax``, by default ``tmax = min_r N_r // 2``.  Not
    bias-corrected (the correction depends on the window; :class:`GammaResult` holds the corrected
    ``rho``).
    """
    reps = _replica(data)
    mean = np.concatenate(reps).mean()
    shortest = min(len(x) for x in reps)
    tmax = shortest // 2 if tmax is None else int(tmax)
    if not 0 <= tmax < shortest:
        raise ValueError(f"tmax = {tmax} must lie in [0, {shortest - 1}]")
    g = _gamma([x - mean for x in reps], tmax)
    if normalized:
        return g / g[0] if g[0] > 0 else np.where(np.arange(tmax + 1) == 0, 1.0, 0.0)
    return g


def _window(gam: np.ndarray, n: int, S: float) -> tuple[int, bool]:
    """First ``W`` in ``1 .. W_max`` with ``g(W) < 0`` (automatic windowing), and whether one was found."""
    wmax = len(gam) - 1
    w = np.arange(1, wmax + 1)
    tau_int = 0.5 + np.cumsum(gam[1:]) / gam[0]
    with np.errstate(divide="ignore", over="ignore", invalid="ignore"):
        tau = np.where(tau_int > 0.5, S / np.log((2 * tau_int + 1) / (2 * tau_int - 1)), 0.0)
        g = np.where(tau > 0, np.exp(-w / tau), 0.0) - tau / np.sqrt(w * n)
    # tau(W) -> 0+ where tau_int(W) <= 1/2: exp(-W/tau) vanishes faster than tau, so g(W) < 0
    found = np.flatnonzero((g < 0) | (tau_int <= 0.5))
    if len(found):
        return int(w[found[0]]), True
    return wmax, False


def _analyse(deltas: list[np.ndarray], value: float, S: float, what: str) -> GammaResult:
    """Window, bias correction and errors for the projected fluctuations ``deltas``."""
    if not S > 0:
        raise ValueError(f"S = {S} must be positive (Wolff recommends 1 <= S <= 2)")
    n, nrep = sum(len(d) for d in deltas), len(deltas)
    wmax = min(len(d) for d in deltas) // 2
    flat = np.concatenate(deltas)
    if flat.max() == flat.min():  # constant series: no fluctuation at all
        rho = np.where(np.arange(wmax + 1) == 0, 1.0, 0.0)
        return GammaResult(float(value), 0.0, 0.0, 0.5, 0.0, 0, n, nrep, rho)
    gam = _gamma(deltas, wmax)
    window, found = _window(gam, n, S)
    if not found:
        warnings.warn(f"{what}: no window W <= {wmax} satisfies Wolff's criterion (S = {S}); "
                      f"using W = {wmax}: the chain is too short for its autocorrelation time",
                      RuntimeWarning, stacklevel=3)
    c = gam[0] + 2 * gam[1:window + 1].sum()
    if c <= 0:
        warnings.warn(f"{what}: C(W = {window}) = {c:.3g} <= 0 (anticorrelated data); using the "
                      f"window-0 estimate tau_int = 1/2", RuntimeWarning, stacklevel=3)
        window, c = 0, gam[0]
    gam = gam + c / n  # bias from subtracting the estimated mean: Gamma(t) -> Gamma(t) + C/N
    c = gam[0] + 2 * gam[1:window + 1].sum()
    tau_int = c / (2 * gam[0])
    error = math.sqrt(c / n)
    return GammaResult(value=float(value), error=error,
                       error_of_error=error * math.sqrt((window + 0.5) / n),
                       tau_int=float(tau_int), dtau_int=float(tau_int * math.sqrt((4 * window + 2) / n)),
                       window=int(window), n=n, replica=nrep, rho=gam / gam[0])


def gamma_method(data, S: float = 1.5) -> GammaResult:
    """Mean of a primary observable with its Gamma-method error and ``tau_int``.

    Args:
        data: the measurements: a 1-D array (one chain), a 2-D array with one row per replicum,
            or a sequence of 1-D arrays (independent replica, lengths may differ).
        S: Wolff's windowing parameter (``tau_exp ~ S tau_int`` is assumed), default 1.5.

    Raises:
        ValueError: a replicum shorter than :data:`MIN_LENGTH`, a NaN or infinite value, ``S <= 0``.
    """
    reps = _replica(data)
    allx = np.concatenate(reps)
    mean = allx.mean()
    return _analyse([x - mean for x in reps], mean, S, "the series")


def gamma_derived(f, observables, S: float = 1.5, gradient=None) -> GammaResult:
    """Value and error of ``F = f(A_1, ..., A_n)``, a function of the means of primary observables.

    Linearised error propagation (section 3 of the paper): the fluctuations of the primary
    observables are projected on the gradient of ``f`` at the overall means, and the projected
    series is analysed like a primary one.

    Args:
        f: ``f(means) -> float``, ``means`` a 1-D array of the ``n`` primary means.
        observables: a sequence of ``n`` primary observables, each given as in
            :func:`gamma_method` (one chain or a list of replica), all with the same replica
            lengths (measured on the same configurations).
        S: Wolff's windowing parameter.
        gradient: optional ``gradient(means) -> array of n``; default: central differences with
            step ``h_alpha`` = half the naive error ``sqrt(Gamma_alpha,alpha(0)/N)`` of ``A_alpha``
            (zero step, and zero derivative, for a constant observable).
    """
    obs = [_replica(o, f"observable {k}") for k, o in enumerate(observables)]
    if not obs:
        raise ValueError("gamma_derived needs at least one observable")
    lengths = [len(x) for x in obs[0]]
    for k, reps in enumerate(obs[1:], 1):
        if [len(x) for x in reps] != lengths:
            raise ValueError(f"observable {k} has replica lengths {[len(x) for x in reps]}, "
                             f"observable 0 has {lengths}: they must be measured together")
    # data[r]: array (N_r, n) of replicum r
    data = [np.stack([reps[r] for reps in obs], axis=1) for r in range(len(lengths))]
    n = sum(lengths)
    means = np.concatenate(data).mean(axis=0)
    fluct = [d - means for d in data]
    if gradient is not None:
        grad = np.asarray(gradient(means.copy()), dtype=np.float64).reshape(len(obs))
    else:
        var = sum((x ** 2).sum(axis=0) for x in fluct) / n
        grad = np.zeros(len(obs))
        for k in range(len(obs)):
            h = 0.5 * math.sqrt(var[k] / n)
            if h > 0:
                up, down = means.copy(), means.copy()
                up[k] += h
                down[k] -= h
                grad[k] = (float(f(up)) - float(f(down))) / (2 * h)
    if not np.all(np.isfinite(grad)):
        raise ValueError(f"the gradient of f at the means is not finite: {grad}")
    value = float(f(means.copy()))
    nrep = len(data)
    if nrep >= 2:  # O(1/N) bias of f(abar) cancelled with the replica means
        per_rep = sum(len(d) / n * float(f(d.mean(axis=0))) for d in data)
        value = (nrep * value - per_rep) / (nrep - 1)
    return _analyse([x @ grad for x in fluct], value, S, "the derived observable")
