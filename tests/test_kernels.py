"""Fused hopping kernels against the reference, and even/odd preconditioning.

- the kernel tables rebuild the DeGrand-Rossi matrices exactly;
- every operation of the generalised hopping contract (``D``, ``D^dag``, parity-restricted hops,
  fused clover blocks on both sides) of each fused kernel equals the reference: 1e-13 relative in
  double precision, 1e-6 in single, with a non-trivial complex boundary phase, with links stored
  whole or as two rows (``recon=12``, refused for links that are not SU(3));
- the same on every process grid (against the serial reference);
- the Schur complement: ``gamma_5``-hermiticity, and the even/odd solve equals the full solve.

The fused kernels checked are those this machine can run: ``compiled`` (g++) everywhere, with each
of its bulk bodies (the CPU's vectorised ``dslash_bulk`` and ``dslash_bulk_items``, the GPU's
per-work-item body built for the CPU), and ``cuda`` when CuPy finds a GPU (the list is built at
collection time, nothing is skipped).  Where
CUDA's compiler is installed, the same source is also compiled for the GPU (sm_90) by nvcc.
"""

import shutil
import subprocess

import numpy as np
import pytest

from helpers import grids_run, on_grids
from lattice_hpc.backend import Backend
from lattice_hpc.comm import self_comm, world
from lattice_hpc.fermions import (GAMMA, SchurOperator, WilsonDirac, gather_spinor, inner,
                                  random_spinor, solve_evenodd)
from lattice_hpc.fermions.kernels.source import gamma_tables
from lattice_hpc.gauge import GaugeField
from lattice_hpc.geometry import Lattice
from lattice_hpc.groups import get_group
from lattice_hpc.rng import CounterRNG
from lattice_hpc.solvers import cgne

SU3 = get_group("SU3")
GRIDS = [(1, 1, 1, 1), (1, 1, 1, 2), (1, 1, 2, 2), (2, 1, 1, 2)]
BC = (1, 1, np.exp(0.3j), -1)  # a twisted z direction exercises complex boundary phases


def _gpu():
    try:
        import cupy

        return cupy.cuda.runtime.getDeviceCount() > 0
    except Exception:
        return False


FUSED = [("compiled", "numpy")] + ([("cuda", "cupy")] if _gpu() else [])
# (kernel, array module, bulk entry point of the compiled library; None: the kernel's own)
BODIES = [("compiled", "numpy", "dslash_bulk"), ("compiled", "numpy", "dslash_bulk_items")] + \
         ([("cuda", "cupy", None)] if _gpu() else [])


def _use_body(D, body):
    if body is not None:
        D.hopping.bulk_kernel = getattr(D.hopping.lib, body)
    return D


def _hot(lat, backend, seed=3):
    U = GaugeField.hot(lat, SU3, CounterRNG(seed), backend)
    U.refresh()
    return U


def _operations(D, psi):
    """Every form of the hopping contract that the operators use."""
    chi = (0.5 - 0.25j) * D.gamma5(psi)  # another field (site-local: the same on every grid)
    return {
        "D": D.apply(psi),
        "Ddag": D.apply_dagger(psi),
        "H_even": D.hop(psi, parity=0),
        "Hdag_odd": D.hop(psi, dagger=True, parity=1),
        "fused_B_C": D.dslash(psi, chi, 0.7, D.clover, -0.3, D.clover_inv, True, 1),
        "fused_C": D.dslash(psi, chi, -1.1, None, 0.45, D.clover_inv, False, 0),
        "schur": SchurOperator(D).apply(psi),
    }


def test_kernel_tables_rebuild_the_gamma_matrices():
    perm, ipow = gamma_tables()
    for mu in range(4):
        g = np.zeros((4, 4), complex)
        for a in range(4):
            g[a, perm[mu][a]] = 1j ** ipow[mu][a]
        np.testing.assert_array_equal(g, GAMMA[mu])


@pytest.mark.parametrize("kernel,array,body", BODIES)
@pytest.mark.parametrize("precision,tol", [("double", 1e-13), ("single", 1e-6)])
@pytest.mark.parametrize("recon", [18, 12])
@pytest.mark.parametrize("csw", [0.0, 1.4])
def test_fused_kernels_equal_the_reference(kernel, array, body, precision, tol, recon, csw):
    lat = Lattice((4, 6, 4, 8), (1, 1, 1, 1), comm=self_comm())
    ref = WilsonDirac(_hot(lat, Backend("numpy", "double")), 0.13, csw, BC, kernel="reference")
    psi = random_spinor(lat, CounterRNG(5), ("psi",), Backend("numpy", "double"))
    want = _operations(ref, psi)
    backend = Backend(array, precision)
    D = _use_body(ref.converted(precision, kernel, array, recon), body)
    assert D.hopping.name == kernel and D.dtype == backend.complex and D.recon == recon
    got = _operations(D, backend.asarray(psi, dtype=backend.complex))
    for key, w in want.items():
        g = backend.asnumpy(got[key])
        err = np.abs(g - w).max() / np.abs(w).max()
        assert err < tol, (key, err)
        if key in ("H_even", "fused_C", "schur"):  # parity 0 outputs vanish on odd sites
            assert np.all(g[lat.parity == 1] == 0), key


def test_recon12_refuses_links_that_are_not_su3():
    lat = Lattice((4, 4, 4, 4), (1, 1, 1, 1), comm=self_comm())
    U = _hot(lat, Backend())
    U.links[1] *= np.exp(0.01j)  # U(3), not SU(3): the third row is not conj(row0 x row1)
    with pytest.raises(ValueError, match="recon=12 needs links in SU.3.: U_1"):
        WilsonDirac(U, 0.1, recon=12, kernel="compiled")
    WilsonDirac(U, 0.1, recon=18, kernel="compiled")


@pytest.mark.mpi
@pytest.mark.parametrize("kernel,array,body", BODIES)
@pytest.mark.parametrize("csw,recon", [(0.0, 18), (1.2, 18), (1.2, 12)])
def test_fused_kernels_are_identical_on_every_grid(kernel, array, body, csw, recon):
    dims = (4, 4, 4, 8)
    backend = Backend(array, "double")

    def run(lat, kernel):
        D = WilsonDirac(_hot(lat, backend, 7), 0.125, csw, BC, kernel=kernel,
                        recon=18 if kernel == "reference" else recon)
        if kernel != "reference":
            _use_body(D, body)
        psi = random_spinor(lat, CounterRNG(8), ("psi",), backend)
        return {key: gather_spinor(lat, v) for key, v in _operations(D, psi).items()}

    want = run(Lattice(dims, (1, 1, 1, 1), comm=self_comm()), "reference")
    res = on_grids(dims, GRIDS, lambda lat: run(lat, kernel))
    if world().rank == 0:
        for key in grids_run(res) + ["serial"]:
            for name, got in res[key].items():
                np.testing.assert_allclose(got, want[name], rtol=0, atol=1e-12,
                                           err_msg=f"{key} {name}")


@pytest.mark.parametrize("kernel", ["reference", "compiled"])
@pytest.mark.parametrize("csw", [0.0, 1.5])
def test_schur_complement_is_gamma5_hermitian(kernel, csw):
    lat = Lattice((4, 4, 4, 8), (1, 1, 1, 1), comm=self_comm())
    B = Backend()
    S = SchurOperator(WilsonDirac(_hot(lat, B), 0.125, csw, kernel=kernel))
    even = (lat.parity == 0)[..., None, None]
    phi = random_spinor(lat, CounterRNG(1), ("phi",), B) * even
    psi = random_spinor(lat, CounterRNG(1), ("psi",), B) * even
    lhs, rhs = inner(lat, phi, S.apply(psi)), inner(lat, S.apply_dagger(phi), psi)
    assert abs(lhs - rhs) < 1e-12 * abs(lhs)
    np.testing.assert_allclose(S.apply_dagger(psi), S.D.gamma5(S.apply(S.D.gamma5(psi))), atol=1e-13)
    assert np.abs(S.apply(psi) - S.apply_dagger(psi)).max() > 0.1  # not Hermitian: the check bites


@pytest.mark.parametrize("kernel", ["reference", "compiled"])
@pytest.mark.parametrize("csw", [0.0, 1.5])
def test_evenodd_solve_equals_the_full_solve(kernel, csw):
    lat = Lattice((4, 4, 4, 8), (1, 1, 1, 1), comm=self_comm())
    B = Backend()
    D = WilsonDirac(_hot(lat, B), 0.124, csw, kernel=kernel)
    b = random_spinor(lat, CounterRNG(2), ("b",), B)
    full = cgne(D, b, tol=1e-12)
    eo = solve_evenodd(D, b, tol=1e-12)
    assert eo.true_residual < 1e-11
    r = b - D.apply(eo.x)
    assert np.sqrt(inner(lat, r, r).real / inner(lat, b, b).real) < 1e-11
    scale = np.abs(full.x).max()
    assert np.abs(eo.x - full.x).max() < 1e-10 * scale
    assert eo.iterations < 0.7 * full.iterations  # the Schur complement is better conditioned


@pytest.mark.mpi
@pytest.mark.parametrize("csw", [0.0, 1.0])
def test_evenodd_solution_is_identical_on_every_grid(csw):
    dims = (4, 4, 4, 8)
    B = Backend()

    def body(lat):
        D = WilsonDirac(_hot(lat, B, 11), 0.124, csw)
        b = random_spinor(lat, CounterRNG(12), ("b",), B)
        res = solve_evenodd(D, b, tol=1e-12)
        return gather_spinor(lat, res.x), res.iterations

    res = on_grids(dims, GRIDS, body)
    if world().rank == 0:
        x0, it0 = res["serial"]
        for key in grids_run(res):
            x, it = res[key]
            assert it == it0, key
            np.testing.assert_allclose(x, x0, rtol=0, atol=1e-12 * np.abs(x0).max())


def test_missing_compiler_is_named_and_auto_falls_back_to_the_reference(monkeypatch, tmp_path):
    from lattice_hpc.errors import BackendError

    lat = Lattice((4, 4, 4, 4), (1, 1, 1, 1), comm=self_comm())
    U = _hot(lat, Backend())
    monkeypatch.setenv("CXX", "no-such-compiler")
    monkeypatch.setenv("LATTICE_HPC_CACHE", str(tmp_path))
    monkeypatch.delenv("LATTICE_HPC_KERNEL", raising=False)
    with pytest.raises(BackendError, match="no-such-compiler"):
        WilsonDirac(U, 0.1, kernel="compiled")
    assert WilsonDirac(U, 0.1).hopping.name == "reference"
    assert not any(tmp_path.iterdir())  # nothing half-written left behind
    with pytest.raises(BackendError, match="unknown kernel"):
        WilsonDirac(U, 0.1, kernel="fast")


if shutil.which("nvcc"):  # where CUDA's compiler is installed (this project's machines have it)

    @pytest.mark.parametrize("precision", ["double", "single"])
    @pytest.mark.parametrize("recon", [18, 12])
    def test_kernel_source_compiles_for_the_gpu(precision, recon, tmp_path):
        """The CPU-tested source is valid CUDA: nvcc builds it for Hopper (sm_90), no local-memory
        spills in the bulk kernel (its arrays stay in registers)."""
        from lattice_hpc.fermions.kernels.source import kernel_source

        src = tmp_path / "wilson.cu"
        src.write_text(kernel_source(precision, recon))
        proc = subprocess.run(["nvcc", "-std=c++14", "-arch=sm_90", "-cubin", "-Xptxas", "-v",
                               "-o", str(tmp_path / "w.cubin"), str(src)],
                              capture_output=True, text=True, timeout=300)
        assert proc.returncode == 0, proc.stderr
        info = proc.stderr.split("Compiling entry function 'dslash_bulk'")[1].split("ptxas info    : Used")[0]
        assert "0 bytes stack frame, 0 bytes spill stores, 0 bytes spill loads" in info, info
