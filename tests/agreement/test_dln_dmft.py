"""DLN proportional regime: finite-d GD approaches the DMFT as d grows; DMFT input checks."""
from __future__ import annotations

import pytest

import hidyn
from hidyn.validation.scaling import finite_size_study


@pytest.mark.slow
def test_single_run_distance_to_dmft_shrinks_with_d():
    """Single GD runs fluctuate around the DMFT by O(d^(−1/2)) (docs/theory/dln.md §10 pitfall 9); the DMFT's own
    sampling error (K = 16 000, ~1 % relative) is a floor below which the distance stops falling, so the
    fitted slope over d ∈ [256, 4096] is allowed anywhere in [−0.75, −0.25]."""
    study = finite_size_study("dln", [256, 1024, 4096], variables=["train_loss", "test_loss"], seeds=8,
                              ratio=0.5, sparsity=0.1, noise=0.1, init_scale=0.3, lr=0.1, t_max=8.0,
                              n_times=20)
    for v in ("train_loss", "test_loss"):
        dist = study["distance"].sel(variable=v).values
        assert dist[-1] < dist[0] / 2.5, (v, dist)
        assert -0.75 < float(study["slope"].sel(variable=v)) < -0.25, (v, study["slope"].values)


def test_dmft_refuses_unresolvable_small_alpha_and_warns_short_horizon():
    with pytest.raises(ValueError, match="saddle_to_saddle"):
        hidyn.theory("dln", ratio=0.5, init_scale=1e-100, lr=0.1, t_max=1.0)
    with pytest.warns(RuntimeWarning, match="before the escape"):
        hidyn.theory("dln", ratio=0.5, init_scale=1e-3, lr=0.1, t_max=0.5, n_samples=400)


def test_dmft_refuses_grids_beyond_the_memory_budget():
    with pytest.raises((ValueError, MemoryError), match="memory|GB|budget"):
        hidyn.theory("dln", ratio=0.5, lr=0.01, t_max=40.0, n_samples=16000, memory_budget_gb=0.5)


def test_dmft_warns_above_gd_stability_bound():
    with pytest.warns(RuntimeWarning, match="stab"):
        hidyn.theory("dln", ratio=0.5, lr=0.6, t_max=0.6, n_samples=400)
