"""Seed streams and the threaded input filler."""
from __future__ import annotations

import tracemalloc

import numpy as np
import pytest

import hidyn
from hidyn import rng


def test_seed_streams_do_not_depend_on_the_other_seeds():
    alone = rng.generators(7, [3])[0].standard_normal(5)
    among = rng.generators(7, [0, 1, 2, 3])[3].standard_normal(5)
    np.testing.assert_array_equal(alone, among)
    assert not np.array_equal(rng.generators(8, [3])[0].standard_normal(5), alone)
    with pytest.raises(ValueError, match="seeds="):
        rng.seed_indices([1, 1])


@pytest.mark.parametrize("threads", [1, 2, 3, 8])
@pytest.mark.parametrize("n_seeds", [1, 2, 5])
@pytest.mark.parametrize("dtype", [np.float64, np.float32])
def test_threaded_fill_draws_exactly_the_serial_values(threads, n_seeds, dtype):
    old = rng.draw_threads()
    try:
        rng.set_draw_threads(threads)
        out = np.empty((n_seeds, 4, 33), dtype=dtype)
        rng.fill_standard_normal(rng.generators(1, range(n_seeds)), out, dtype)
    finally:
        rng.set_draw_threads(old)
    serial = np.stack([g.standard_normal((4, 33), dtype=dtype) for g in rng.generators(1, range(n_seeds))])
    np.testing.assert_array_equal(out, serial)


def test_seed_count_validates_without_building_the_indices():
    assert rng.seed_count(5) == rng.seed_indices(5).size == 5
    assert rng.seed_count([3, 7]) == 2
    for bad in (0, -1, [1, 1], [], [-2]):
        with pytest.raises(ValueError, match="seeds="):
            rng.seed_count(bad)


@pytest.mark.parametrize("call", [
    lambda seeds: hidyn.simulate("dln", d=16, ratio=None, algorithm="gd", seeds=seeds, t_max=0.1, n_times=2,
                                 backend="numpy"),
    lambda seeds: hidyn.escape_time("single_index", d=[16], link="he2", lr=0.5, seeds=seeds, t_max=1.0,
                                    backend="reduced"),
], ids=["simulate", "escape_time"])
def test_a_billion_seeds_is_refused_before_allocating(call):
    # issue #17.5: the index array alone (8 GB) used to be built before the memory check.  ≥ 1 KiB of
    # seed state per seed makes 10**9 seeds ≥ 1 TB, more than any machine this runs on.
    call(1)   # imports (numba, backends) happen here: under tracemalloc they would take a minute
    tracemalloc.start()
    try:
        with pytest.raises(MemoryError, match=r"seeds=1000000000"):
            call(10**9)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert peak < 100 * 2**20, peak
