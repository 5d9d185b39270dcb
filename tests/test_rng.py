"""Counter-based RNG: Philox4x32-10 known answers (Random123 kat_vectors) and its site keying."""

import numpy as np

from lattice_hpc.rng import CounterRNG, philox4x32


def test_philox_known_answers():
    kat = [
        ((0, 0, 0, 0), (0, 0), (0x6627E8D5, 0xE169C58D, 0xBC57AC4C, 0x9B00DBD8)),
        ((0xFFFFFFFF,) * 4, (0xFFFFFFFF,) * 2, (0x408F276D, 0x41C83B0E, 0xA20BC7C6, 0x6D5451FD)),
        ((0x243F6A88, 0x85A308D3, 0x13198A2E, 0x03707344), (0xA4093822, 0x299F31D0),
         (0xD16CFE09, 0x94FDCCEB, 0x5001E420, 0x24126EA1)),
    ]
    for ctr, key, want in kat:
        assert tuple(int(x) for x in philox4x32(ctr, key)) == want


def test_site_numbers_do_not_depend_on_the_other_sites_drawn():
    rng = CounterRNG(42)
    sites = np.arange(1000, dtype=np.int64)
    full = rng.uniform(("x", 1), sites, 5)
    part = rng.uniform(("x", 1), sites[[7, 500, 999]], 5)
    assert np.array_equal(full[[7, 500, 999]], part)
    # different purpose, draw or seed -> different numbers
    assert not np.array_equal(full, rng.uniform(("x", 2), sites, 5))
    assert not np.array_equal(full, rng.uniform(("x", 1), sites, 5, draw=3))
    assert not np.array_equal(full, CounterRNG(43).uniform(("x", 1), sites, 5))


def test_uniform_and_normal_moments():
    rng = CounterRNG(1)
    u = rng.uniform("u", np.arange(200000, dtype=np.int64), 2).ravel()
    assert 0.0 < u.min() and u.max() < 1.0
    n = u.size
    assert abs(u.mean() - 0.5) < 4 * np.sqrt(1 / 12 / n)
    assert abs(u.var() - 1 / 12) < 4 * np.sqrt(1 / 180 / n)
    z = rng.normal("z", np.arange(100000, dtype=np.int64), 3).ravel()
    assert abs(z.mean()) < 4 / np.sqrt(z.size)
    assert abs(z.var() - 1) < 4 * np.sqrt(2 / z.size)
    # neighbouring sites are uncorrelated
    a = rng.uniform("c", np.arange(100000, dtype=np.int64), 1)[:, 0]
    assert abs(np.corrcoef(a[:-1], a[1:])[0, 1]) < 4 / np.sqrt(a.size)
