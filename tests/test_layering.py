"""Layering: only lattice_hpc.comm imports mpi4py; physics packages import no MPI at all."""

import ast
import pathlib

PKG = pathlib.Path(__file__).resolve().parents[1] / "lattice_hpc"


def _imports(path):
    tree = ast.parse(path.read_text())
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            yield from (a.name for a in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            yield node.module


def test_only_comm_imports_mpi4py():
    offenders = []
    files = list(PKG.rglob("*.py"))
    assert len(files) > 10
    for path in files:
        rel = path.relative_to(PKG)
        if rel.parts[0] == "comm":
            continue
        if any(m == "mpi4py" or m.startswith("mpi4py.") for m in _imports(path)):
            offenders.append(str(rel))
    assert offenders == [], f"mpi4py imported outside lattice_hpc/comm: {offenders}"
    assert any("mpi4py" in m for p in (PKG / "comm").glob("*.py") for m in _imports(p))
