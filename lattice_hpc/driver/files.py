"""``lattice-hpc measure`` and ``lattice-hpc convert``: gauge-configuration files on the command line.

    lattice-hpc measure FILE [--format auto|nersc|ildg|milc|openqcd|hdf5] [--observables LIST]
                             [--kappa K] [--csw C] [--grid G]
    lattice-hpc convert IN OUT --to nersc|ildg|hdf5 [--precision auto|single|double] [--force]

Both read the file in parallel (each rank its block, :func:`lattice_hpc.io.read_gauge`), verify its
checksum and header values, and print one JSON object on rank 0 (CONVENTIONS.md).  ``convert``
writes at the input's precision unless told otherwise, so a conversion and its reverse are
bit-identical; it never replaces an existing file unless ``--force``.
"""

from __future__ import annotations

from ..errors import ConfigError
from ..gauge import link_trace, plaquette, polyakov_loop
from ..io import read_gauge, write_gauge

OBSERVABLES = ("plaquette", "link_trace", "polyakov", "pion")


def parse_observables(text: str | None) -> list[str]:
    names = [s.strip() for s in (text or "").split(",") if s.strip()]
    for n in names:
        if n not in OBSERVABLES:
            raise ConfigError(f"--observables: unknown observable {n!r}; known: {', '.join(OBSERVABLES)}")
    return names


def measure(args, comm) -> dict:
    """Collective: read ``args.file`` and measure; returns the result dictionary."""
    names = parse_observables(args.observables)
    if "pion" in names:
        raise ConfigError("--observables pion needs the Wilson Dirac operator and its solvers, "
                          "which this version does not have yet (issue 4)")
    cfg = read_gauge(args.file, comm, args.grid, args.format)
    U = cfg.field
    out = {"file": args.file, "dims": list(cfg.info.dims), "format": cfg.info.format,
           "precision": cfg.info.precision, **plaquette(U), "link_trace": link_trace(U),
           "checksum": cfg.checksum}
    if "polyakov" in names:
        p = polyakov_loop(U)
        out["polyakov"] = [p.real, p.imag]
    if cfg.info.meta.get("lfn"):
        out["lfn"] = cfg.info.meta["lfn"]
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
