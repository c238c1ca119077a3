"""Seed streams and the threaded input filler."""
from __future__ import annotations

import numpy as np
import pytest

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
