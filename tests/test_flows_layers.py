"""Coupling layers and whole flows (float64): exact log-Jacobians, inverses, gauge and translation
equivariance, and the tiling check of the masks.

The log-Jacobian of every layer is compared with ``log|det|`` of the autograd Jacobian of the
whole field: for U(1) in the link angles, for SU(N) in the exponential coordinates
``U_l(eps) = U_l exp(i eps_l^a T_a)`` of every link on both sides (Haar measure is invariant under
translations, so the Jacobian in these coordinates is the density ratio)."""

import math

import pytest
import torch

from flow_helpers import (gauge_transform, prior, random_gauge, serial_flow, site_axis, su_basis,
                          wrap)
from lattice_hpc.errors import ConfigError
from lattice_hpc.flows.masks import check_tiling, layer_masks

torch.set_num_threads(1)


def _u1_logdet_check(flow, z):
    U, ld = flow(z)
    shape = z.shape[1:]
    J = torch.autograd.functional.jacobian(lambda x: flow(x.reshape(1, *shape))[0].reshape(-1),
                                           z[:1].reshape(-1))
    return ld[0].item(), torch.linalg.slogdet(J)[1].item()


@pytest.mark.parametrize("kernel", ["spline", "ncp"])
@pytest.mark.parametrize("dims,layers,masks", [((4, 4), 8, "stripes"), ((4, 4, 4, 2), 2, "stripes"),
                                               ((4, 6), 8, "sweep")])
def test_u1_flow_logdet_equals_autograd_and_inverts(kernel, dims, layers, masks):
    fl, flow = serial_flow("U1", dims, kernel=kernel, layers=layers, masks=masks)
    z = prior(fl, "U1")
    ours, exact = _u1_logdet_check(flow, z)
    assert abs(ours - exact) < 1e-10
    assert abs(ours) > 0.01  # the weights are not trivial
    U, ld = flow(z)
    z2, ld2 = flow.inverse(U)
    assert wrap(z2 - z).abs().max() < 1e-12
    assert (ld + ld2).abs().max() < 1e-10


def _sun_coordinates(flow, U0, N):
    """(log-det of the flow, log|det| of its Jacobian in exponential coordinates) at U0[0]."""
    T = su_basis(N)
    shape = U0.shape[1:-2]
    n = math.prod(shape)
    base = U0[:1]
    out0 = flow(base)[0].detach()

    def f(eps):
        X = torch.einsum("la,aij->lij", eps.reshape(n, -1).to(torch.complex128), T)
        E = torch.linalg.matrix_exp(1j * X).reshape(1, *shape, N, N)
        out = flow(base @ E)[0]
        D = out0.conj().transpose(-1, -2) @ out  # 1 + i eps'.T + O(eps^2)
        return 2 * torch.einsum("aij,...ji->...a", T, -1j * D).real.reshape(-1)

    eps = torch.zeros(n * (N * N - 1), dtype=torch.float64)
    J = torch.autograd.functional.jacobian(f, eps)
    return flow(base)[1][0].item(), torch.linalg.slogdet(J)[1].item()


@pytest.mark.parametrize("group,dims,layers,shape,masks", [("SU2", (4, 4), 2, "cube", "stripes"),
                                                           ("SU3", (4, 4), 1, "cube", "stripes"),
                                                           ("SU2", (2, 4, 2, 2), 1, "cube", "stripes"),
                                                           ("SU2", (2, 4, 2, 2), 1, "cross", "stripes"),
                                                           ("SU2", (2, 4), 4, "cube", "sweep")])
def test_sun_layers_logdet_equals_autograd_and_inverts(group, dims, layers, shape, masks):
    N = int(group[2:])
    fl, flow = serial_flow(group, dims, layers=layers, hidden=(4,), kernel_shape=shape, masks=masks)
    U0 = prior(fl, group)
    ours, exact = _sun_coordinates(flow, U0, N)
    assert abs(ours - exact) < 1e-10
    assert abs(ours) > 0.01
    U, ld = flow(U0)
    back, ld2 = flow.inverse(U)
    assert (back - U0).abs().max() < 1e-12
    assert (ld + ld2).abs().max() < 1e-10
    eye = torch.eye(N, dtype=U.dtype)
    assert (U @ U.conj().transpose(-1, -2) - eye).abs().max() < 1e-12
    assert (torch.linalg.det(U) - 1).abs().max() < 1e-12


@pytest.mark.parametrize("group,dims,shape,masks", [
    ("U1", (8, 8), "cube", "stripes"), ("SU2", (4, 4), "cube", "stripes"),
    ("SU3", (4, 4), "cube", "stripes"), ("SU3", (4, 4, 4, 4), "cube", "stripes"),
    ("U1", (8, 8), "cross", "stripes"), ("SU3", (4, 4, 4, 4), "cross", "stripes"),
    ("SU3", (4, 4, 4, 4), "cross", "planes"), ("U1", (6, 8), "cube", "sweep"),
    ("SU2", (4, 4), "cube", "sweep")])
def test_flows_are_gauge_equivariant(group, dims, shape, masks):
    N = 1 if group == "U1" else int(group[2:])
    nd = len(dims)
    # 4D: 4 layers, or the 6 of one offset of the planes order (the planes (0,2), (1,3) included)
    layers = 4 * nd if nd == 2 else (4 if masks == "stripes" else 6)
    layers = sum(dims) - 2 if masks == "sweep" else layers
    fl, flow = serial_flow(group, dims, layers=layers, kernel_shape=shape, masks=masks)
    z = prior(fl, group)
    g = random_gauge(fl, group)
    U, ld = flow(z)
    Ug, ldg = flow(gauge_transform(z, g, nd, N))
    expect = gauge_transform(U, g, nd, N)
    diff = wrap(Ug - expect) if N == 1 else Ug - expect
    assert diff.abs().max() < 1e-12
    assert (ldg - ld).abs().max() < 1e-12
    assert ld.abs().min() > 1e-3


@pytest.mark.parametrize("shape", ["cube", "cross"])
def test_translation_equivariance_by_the_mask_period(shape):
    fl, flow = serial_flow("U1", (8, 8), layers=8, kernel_shape=shape)
    z = prior(fl, "U1")
    U, ld = flow(z)
    for mu, s in ((0, 4), (1, 4)):
        ax = site_axis(2, mu, 2)
        Us, lds = flow(torch.roll(z, s, dims=ax))
        assert wrap(Us - torch.roll(U, s, dims=ax)).abs().max() < 1e-12
        assert (lds - ld).abs().max() < 1e-12
    # a shift by one along a stripe direction is not a symmetry of the masks
    Us, lds = flow(torch.roll(z, 1, dims=site_axis(2, 1, 2)))
    assert (lds - ld).abs().max() > 1e-6


@pytest.mark.parametrize("group,small,large", [("U1", (4, 4), (8, 4)),
                                               ("SU2", (4, 4, 4, 4), (4, 4, 8, 4))])
def test_weights_do_not_depend_on_the_volume(group, small, large):
    """The reason ``flow.resize`` may reuse a model on another lattice: the flow with the same
    weights on a lattice twice as long maps the doubled (periodically tiled) prior sample to the
    doubled output, with twice the log-det."""
    _, f1 = serial_flow(group, small, layers=4 if len(small) == 2 else 6, masks="planes")
    fl2, f2 = serial_flow(group, large, layers=4 if len(small) == 2 else 6, masks="planes")
    f2.load_state_dict(f1.state_dict())
    z = prior(f1.fl, group)
    ax = [i for i, (a, b) in enumerate(zip(small, large)) if a != b][0]
    axis = site_axis(len(small), ax, 2)
    z2 = torch.cat([z, z], dim=axis)
    U1, ld1 = f1(z)
    U2, ld2 = f2(z2)
    assert (U2 - torch.cat([U1, U1], dim=axis)).abs().max() < 1e-12
    assert (ld2 - 2 * ld1).abs().max() < 1e-10


def test_masks_change_every_link_once_per_period_and_refuse_bad_tilings():
    for nd in (2, 4):
        masks = layer_masks(nd, 4 * nd)
        assert sorted((m.mu, m.offset) for m in masks) == [(mu, o) for mu in range(nd) for o in range(4)]
        for m in masks:
            assert m.nu != m.mu
    with pytest.raises(ConfigError, match="direction x is not a multiple of 4"):
        check_tiling((6, 8), layer_masks(2, 8))
    with pytest.raises(ConfigError, match="direction t"):
        check_tiling((8, 8, 8, 6), layer_masks(4, 16))


def _active_plaquettes(masks, dims):
    """The set of ``(plane, site)`` whose plaquette is the active loop of one of ``masks``."""
    import itertools

    import numpy as np

    coords = np.meshgrid(*[np.arange(L) for L in dims], indexing="ij")
    out = set()
    for m in masks:
        act = m.active(coords)
        plane = tuple(sorted((m.mu, m.nu)))
        out |= {(plane, x) for x in itertools.product(*map(range, dims)) if act[x]}
    return out


def test_planes_order_makes_every_4d_plaquette_active_in_24_layers():
    import itertools

    dims = (4, 4, 4, 4)
    every = {(p, x) for p in itertools.combinations(range(4), 2)
             for x in itertools.product(*map(range, 4 * [4]))}
    assert _active_plaquettes(layer_masks(4, 24, "planes"), dims) == every
    # the second group of 24 has the other orientation: all 12 ordered planes, every link
    # direction changed equally often
    masks = layer_masks(4, 48, "planes")
    assert {(m.mu, m.nu) for m in masks} == {(a, b) for a in range(4) for b in range(4) if a != b}
    assert [sum(m.mu == d for m in masks) for d in range(4)] == [12, 12, 12, 12]
    # the old order leaves the planes (0, 2) and (1, 3) to later layers
    stripes = _active_plaquettes(layer_masks(4, 16, "stripes"), dims)
    assert {p for p, _ in stripes} == {(0, 1), (1, 2), (2, 3), (0, 3)}
    # in 2D the orders are the same
    assert layer_masks(2, 16, "planes") == layer_masks(2, 16, "stripes")
    with pytest.raises(ConfigError, match="flow.masks = 'rows'"):
        layer_masks(4, 4, "rows")


def _touched_plaquettes(m, dims):
    """2D: the plaquettes ``P_01(y)`` that contain a link the layer ``m`` changes, and those that
    are its active loops (the loop of ``U_0(x)`` is ``P_01(x)``, that of ``U_1(x)`` is
    ``P_10(x) = P_01(x)^dag``), by brute force over the links of every plaquette."""
    import itertools

    import numpy as np

    coords = np.meshgrid(*[np.arange(L) for L in dims], indexing="ij")
    act = m.active(coords)
    frozen = m.frozen_plaquette(0, 1, coords, dims)
    touched, loops = set(), {x for x in itertools.product(*map(range, dims)) if act[x]}
    for y in itertools.product(*map(range, dims)):
        up = ((y[0] + 1) % dims[0], y[1])
        right = (y[0], (y[1] + 1) % dims[1])
        links = [(0, y), (1, up), (0, right), (1, y)]
        hit = any(d == m.mu and act[x] for d, x in links)
        assert frozen[y] == (not hit), (m, y)
        if hit:
            touched.add(y)
    return touched, loops


@pytest.mark.parametrize("dims", [(5, 6), (8, 8), (3, 4)])
def test_sweep_order_transforms_every_plaquette_once_and_never_again(dims):
    """The property the 2D sweep is for: over one sweep every plaquette but ``P(0, 0)`` is the
    active loop of exactly one layer, a layer changes (passively) only plaquettes that no earlier
    layer transformed, and after its own layer a plaquette is frozen; any extents tile."""
    from lattice_hpc.flows.masks import canonical_order

    masks = layer_masks(2, sum(dims) - 2, "sweep", dims)
    check_tiling(dims, masks)
    done = []
    for m in masks:
        touched, loops = _touched_plaquettes(m, dims)
        assert loops <= touched
        assert not touched & set(done), m  # nothing transformed before is changed again
        done += sorted(loops)
    every = {(a, b) for a in range(dims[0]) for b in range(dims[1])}
    assert len(done) == len(set(done)) == len(every) - 1
    assert set(done) == every - {(0, 0)}
    assert layer_masks(2, 2 * (sum(dims) - 2), "sweep", dims) == masks + masks
    with pytest.raises(ConfigError, match=f"flow.layers = 7: the sweep order of a {dims[0]}x"
                                          f"{dims[1]} lattice has {sum(dims) - 2} layers"):
        layer_masks(2, 7, "sweep", dims)
    with pytest.raises(ConfigError, match="'sweep' is a 2D order"):
        canonical_order(4, "sweep")


def test_frozen_context_contains_no_active_link():
    """Brute force on a 4D lattice: a plaquette marked frozen contains no active link, and every
    active link's own loop W, and the 1x2 context loop, contain no other active link."""
    import itertools

    import numpy as np

    dims = (4, 4, 4, 4)
    coords = np.meshgrid(*[np.arange(L) for L in dims], indexing="ij")
    for m in layer_masks(4, 48) + layer_masks(4, 48, "planes"):
        act = m.active(coords)
        def is_active(d, x):
            return d == m.mu and act[tuple(c % L for c, L in zip(x, dims))]
        for r, s in itertools.combinations(range(4), 2):
            frozen = m.frozen_plaquette(r, s, coords, dims)
            for x in itertools.islice(itertools.product(*map(range, dims)), 0, None, 7):
                e = lambda d: tuple(int(d == k) for k in range(4))
                add = lambda a, b: tuple(i + j for i, j in zip(a, b))
                links = [(r, x), (s, add(x, e(r))), (r, add(x, e(s))), (s, x)]
                touched = any(is_active(d, y) for d, y in links)
                assert frozen[x] == (not touched)
        for x in itertools.islice(itertools.product(*map(range, dims)), 0, None, 5):
            if act[x]:
                e = lambda d: tuple(int(d == k) for k in range(4))
                add = lambda a, b: tuple(i + j for i, j in zip(a, b))
                sub = lambda a, b: tuple(i - j for i, j in zip(a, b))
                others = [(m.nu, add(x, e(m.mu))), (m.mu, add(x, e(m.nu))), (m.nu, x)]
                assert not any(is_active(d, y) for d, y in others)
                # the links of the 1x2 context loop S^dag S_- (loops.sun_rectangle)
                rect = others + [(m.nu, sub(add(x, e(m.mu)), e(m.nu))), (m.mu, sub(x, e(m.nu))),
                                 (m.nu, sub(x, e(m.nu)))]
                assert not any(is_active(d, y) for d, y in rect)
