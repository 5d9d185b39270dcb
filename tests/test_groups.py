"""Group operations: unitarity, unit determinant, exp lands in the group, projections, Haar moments."""

import numpy as np
import pytest

from lattice_hpc.groups import get_group
from lattice_hpc.groups.linalg import dagger, det, trace

GROUPS = ["U1", "SU2", "SU3", "SU4"]


def _haar(g, n, seed=0):
    rng = np.random.default_rng(seed)
    if g.N == 1:
        return g.haar_from_uniform(rng.random(n))
    return g.haar(rng.standard_normal((n, g.haar_normals)))


@pytest.mark.parametrize("name", GROUPS)
def test_haar_elements_are_in_the_group(name):
    g = get_group(name)
    u = _haar(g, 2000)
    eye = np.eye(g.N)
    assert np.abs(u @ dagger(u) - eye).max() < 1e-13
    if g.N > 1:
        assert np.abs(det(u) - 1).max() < 1e-13


@pytest.mark.parametrize("name", GROUPS)
def test_haar_moments(name):
    """Haar measure: <Tr U> = 0 and <|Tr U|^2> = 1 for every U(1), SU(N)."""
    g = get_group(name)
    n = 40000
    t = trace(_haar(g, n, seed=1))
    assert abs(t.mean()) < 5 * np.sqrt(1 / n)
    assert abs((abs(t) ** 2).mean() - 1) < 5 * np.sqrt(2 / n)


@pytest.mark.parametrize("name", GROUPS)
def test_exp_of_algebra_lands_in_group_and_inverts(name):
    g = get_group(name)
    rng = np.random.default_rng(2)
    x = g.algebra(rng.standard_normal((500, g.dim)) * 2.0)
    assert np.allclose(x, -dagger(x), atol=1e-15)
    assert np.abs(trace(x)).max() < 1e-14 or g.N == 1
    u = g.exp(x)
    assert np.abs(u @ dagger(u) - np.eye(g.N)).max() < 1e-13
    if g.N > 1:
        assert np.abs(det(u) - 1).max() < 1e-13
    assert np.allclose(g.exp(-x) @ u, np.eye(g.N), atol=1e-13)
    # small-step derivative: exp(eps X) = 1 + eps X + O(eps^2)
    eps = 1e-7
    assert np.allclose((g.exp(eps * x) - np.eye(g.N)) / eps, x, atol=1e-6)


@pytest.mark.parametrize("name", GROUPS)
def test_algebra_normalisation_and_projection(name):
    g = get_group(name)
    rng = np.random.default_rng(3)
    c = rng.standard_normal((100, g.dim))
    x = g.algebra(c)
    # -Tr X^2 = |c|^2 / 2  (Tr T^a T^b = -delta/2)
    assert np.allclose(-trace(x @ x).real, 0.5 * (c ** 2).sum(-1))
    # projection keeps algebra elements and satisfies Re Tr(X M) = Re Tr(X P(M))
    assert np.allclose(g.project_algebra(x), x)
    m = rng.standard_normal((100, g.N, g.N)) + 1j * rng.standard_normal((100, g.N, g.N))
    assert np.allclose(trace(x @ m).real, trace(x @ g.project_algebra(m)).real)


@pytest.mark.parametrize("name", GROUPS)
def test_projection_to_group(name):
    g = get_group(name)
    u = _haar(g, 500, seed=4)
    assert np.allclose(g.project(u), u, atol=1e-13)
    noisy = u + 1e-3 * np.random.default_rng(5).standard_normal(u.shape)
    p = g.project(noisy)
    assert np.abs(p @ dagger(p) - np.eye(g.N)).max() < 1e-13
    if g.N > 1:
        assert np.abs(det(p) - 1).max() < 1e-13
    assert np.abs(p - u).max() < 1e-2


def test_unknown_group_is_a_clear_error():
    from lattice_hpc.errors import ConfigError

    with pytest.raises(ConfigError, match="unknown gauge group 'SO3'"):
        get_group("SO3")


def test_su3_cayley_hamilton_exp_equals_the_eigendecomposition():
    """The SU(3) exp (Morningstar-Peardon) against ``V e^{iw} V^dag`` from ``eigh``, over scales
    from tiny to large, for both signs of det Q, and on degenerate spectra and zero."""
    from lattice_hpc.groups.linalg import dagger

    G = get_group("SU3")
    rng = np.random.default_rng(5)
    for scale in (1e-9, 1e-3, 0.3, 1.0, 5.0):
        X = G.algebra(scale * rng.standard_normal((500, 8)))
        h = -1j * X
        w, v = np.linalg.eigh(h)
        want = (v * np.exp(1j * w)[..., None, :]) @ dagger(v)
        got = G.exp(X)
        np.testing.assert_allclose(got, want, rtol=0, atol=2e-14 * max(1, scale))
        np.testing.assert_allclose(G.exp(-X), dagger(got), rtol=0, atol=2e-14 * max(1, scale))
    for d in ([0.3, 0.3, -0.6], [-0.3, -0.3, 0.6], [0, 0, 0], [1.0, -1.0, 0.0]):
        X = 1j * np.diag(d)[None]
        np.testing.assert_allclose(G.exp(X)[0], np.diag(np.exp(1j * np.array(d))), atol=1e-15)
