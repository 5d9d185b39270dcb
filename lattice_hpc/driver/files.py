"""``lattice-hpc measure`` and ``lattice-hpc convert``: gauge-configuration files on the command line.

    lattice-hpc measure FILE [--format auto|nersc|ildg|milc|openqcd|hdf5] [--observables LIST]
                             [--kappa K] [--csw C] [--noise N] [--seed S] [--grid G]
    lattice-hpc convert IN OUT --to nersc|ildg|hdf5 [--precision auto|single|double] [--force]

Both read the file in parallel (each rank its block, :func:`lattice_hpc.io.read_gauge`), verify its
checksum and header values, and print one JSON object on rank 0 (CONVENTIONS.md).  ``convert``
writes at the input's precision unless told otherwise, so a conversion and its reverse are
bit-identical; it never replaces an existing file unless ``--force``.

Observables of ``measure`` (``--observables``, comma-separated; plaquette, its spatial and temporal
parts, the link trace and the checksum status are always printed):

- ``polyakov``: ``[re, im]`` of the Polyakov loop;
- ``pion`` (4D SU(3), or 2D U(1) for the Schwinger model without clover; needs ``--kappa``,
  optional ``--csw``): ``"pion": [C(0), ..., C(T-1)]``, the
  Wilson(-clover) pion correlator from a point source at the origin (CONVENTIONS.md;
  :func:`lattice_hpc.fermions.pion_correlator`), 12 (2D: 2) even/odd preconditioned CGNE solves at
  relative tolerance 1e-12, with
  ``"pion_solver"``: iterations per solve and the largest true residual ``|b - D x| / |b|``;
- ``condensate`` (same requirements; ``--noise N`` Z2 vectors, default 16, ``--seed S``):
  ``"condensate": [mean, error]`` of ``(1/V) Tr D^{-1}`` in kappa normalization, i.e.
  ``-<psibar psi>`` per flavour (bare normalization ``Tr D_W^{-1}/V`` is ``2 kappa`` times it;
  :func:`lattice_hpc.fermions.chiral_condensate`), with ``"condensate_solver"``.
"""

from __future__ import annotations

from ..errors import ConfigError
from ..gauge import link_trace, plaquette, polyakov_loop
from ..io import read_gauge, write_gauge

OBSERVABLES = ("plaquette", "link_trace", "polyakov", "pion", "condensate")
FERMIONIC = ("pion", "condensate")


def parse_observables(text: str | None) -> list[str]:
    names = [s.strip() for s in (text or "").split(",") if s.strip()]
    for n in names:
        if n not in OBSERVABLES:
            raise ConfigError(f"--observables: unknown observable {n!r}; known: {', '.join(OBSERVABLES)}")
    return names


def measure(args, comm) -> dict:
    """Collective: read ``args.file`` and measure; returns the result dictionary."""
    names = parse_observables(args.observables)
    fermionic = [n for n in names if n in FERMIONIC]
    if fermionic:
        check_fermion_args(args, fermionic)
    cfg = read_gauge(args.file, comm, args.grid, args.format)
    U = cfg.field
    out = {"file": args.file, "dims": list(cfg.info.dims), "format": cfg.info.format,
           "precision": cfg.info.precision, **plaquette(U), "link_trace": link_trace(U),
           "checksum": cfg.checksum}
    if "polyakov" in names:
        p = polyakov_loop(U)
        out["polyakov"] = [p.real, p.imag]
    if fermionic:
        out.update(fermion_observables(U, fermionic, args))
    if cfg.info.meta.get("lfn"):
        out["lfn"] = cfg.info.meta["lfn"]
    return out


def check_fermion_args(args, names) -> None:
    """``--kappa`` (> 0), ``--csw``, ``--noise`` (>= 2) and ``--seed`` for the fermionic observables."""
    what = "--observables " + ",".join(names)
    kappa = getattr(args, "kappa", None)
    if kappa is None:
        raise ConfigError(f"{what} needs --kappa K (the hopping parameter, kappa = 1/(2 m0 + 8))")
    if not kappa > 0:
        raise ConfigError(f"--kappa = {kappa!r} must be > 0")
    csw = getattr(args, "csw", None)
    if csw is not None and not abs(csw) < float("inf"):
        raise ConfigError(f"--csw = {csw!r} must be a finite number")
    if "condensate" in names:
        noise = getattr(args, "noise", 16)
        if noise is None or noise < 2:
            raise ConfigError(f"--noise = {noise!r} must be >= 2 (the error needs two samples)")
        seed = getattr(args, "seed", 0)
        if seed is not None and seed < 0:
            raise ConfigError(f"--seed = {seed!r} must be >= 0")


def fermion_observables(U, names, args) -> dict:
    """Collective: the pion correlator and/or the chiral condensate of the Wilson(-clover) operator."""
    from ..fermions import WilsonDirac, chiral_condensate, pion_correlator, point_propagator
    from ..fermions.propagator import DEFAULT_TOL
    from ..rng import CounterRNG
    from ..solvers import SolverError

    if (U.ndim, U.N) not in ((4, 3), (2, 1)):
        raise ConfigError(f"--observables {','.join(names)}: Wilson fermions need a 4D SU(3) gauge "
                          f"field or a 2D U(1) one (the Schwinger model), but {args.file} holds "
                          f"{U.group.name} links on a {U.ndim}D lattice")
    kappa, csw = float(args.kappa), float(args.csw or 0.0)
    if csw and U.ndim != 4:
        raise ConfigError(f"--csw {csw}: the clover term is implemented for 4D SU(3) only")
    D = WilsonDirac(U, kappa, csw)
    out = {"kappa": kappa, "csw": csw}
    try:
        if "pion" in names:
            prop = point_propagator(D)
            out["pion"] = [float(c) for c in pion_correlator(U.lattice, prop)]
            out["pion_solver"] = {"solver": "evenodd-cgne", "tol": DEFAULT_TOL, **prop.info()}
        if "condensate" in names:
            seed = int(getattr(args, "seed", 0) or 0)
            res = chiral_condensate(D, int(args.noise), CounterRNG(seed))
            out["condensate"] = [res.mean, res.error]
            out["condensate_noise"] = {"vectors": int(args.noise), "type": "Z2", "seed": seed,
                                       "imag_mean": res.imag_mean}
            out["condensate_solver"] = {"solver": "evenodd-cgne", "tol": DEFAULT_TOL, **res.info()}
    except SolverError as exc:  # every rank takes the same branches: they all raise this
        raise ConfigError(f"--kappa {kappa} --csw {csw}: the Dirac solve did not converge ({exc}); "
                          "is kappa beyond its critical value for this configuration?") from exc
    return out


def convert(args, comm) -> dict:
    """Collective: read ``args.input``, write ``args.output`` in format ``args.to``."""
    cfg = read_gauge(args.input, comm, args.grid, args.format)
    precision = cfg.info.precision if args.precision == "auto" else args.precision
    info = write_gauge(args.output, cfg.field, args.to, precision, overwrite=args.force)
    out = {"input": args.input, "input_format": cfg.info.format, "output": args.output,
           "format": args.to, "precision": precision, "dims": list(cfg.info.dims),
           "plaquette": plaquette(cfg.field)["plaquette"]}
    for key, val in info.checks.items():
        if key in ("scidac",):
            out["checksum"] = " ".join(f"{v:08x}" for v in val)
        elif key == "nersc_checksum":
            out["checksum"] = f"{val:08x}"
        elif key == "checksum":
            out["checksum"] = val
    return out
