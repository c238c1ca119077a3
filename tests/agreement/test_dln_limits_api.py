"""DLN long-time and α → 0 limits through hidyn.theory, and the DMFT against them (docs/theory/dln.md §4, §5.1)."""
from __future__ import annotations

import numpy as np
import pytest

import hidyn


@pytest.mark.slow
@pytest.mark.parametrize("ratio", [0.5, 2.0])
def test_dmft_long_time_values_match_fixed_point_and_ols(ratio):
    """δ < 1: the implicit-bias fixed point; δ > 1: OLS (E_tr → σ²(1 − 1/δ), E_te → σ²δ/(δ − 1)).

    α = 1 converges fastest.  Tolerance: 3 DMFT SEM + 0.005 — the drift still left at t = 10 (docs/theory/dln.md §10
    pitfall 10), measured ≤ 0.0025 between t = 10 and t = 20 with K = 8000.
    """
    kw = dict(ratio=ratio, sparsity=0.2, noise=0.3, init_scale=1.0)
    lim = hidyn.theory("dln", method="fixed_point", **kw)
    th = hidyn.theory("dln", lr=0.1, t_max=10.0, n_samples=4000, **kw)
    assert lim.attrs["regime"] == ("interpolator" if ratio < 1 else "ols")
    for v in ("test_loss", "train_loss", "norm2"):
        late, sem, limit = float(th[v][-1]), float(th[f"{v}_sem"][-1]), float(lim[v][0])
        assert abs(late - limit) <= 3 * sem + 0.005, (v, late, sem, limit)
    if ratio > 1:
        assert float(lim["train_loss"][0]) == pytest.approx(0.09 * (1 - 1 / ratio))
        assert float(lim["test_loss"][0]) == pytest.approx(0.09 * ratio / (ratio - 1))


def test_fixed_point_ridge_and_l1_bracket_the_dln_limit():
    kw = dict(ratio=0.5, sparsity=0.1, noise=0.1)
    ridge = float(hidyn.theory("dln", method="fixed_point", potential="ridge", **kw)["test_loss"][0])
    l1 = float(hidyn.theory("dln", method="fixed_point", potential="l1", **kw)["test_loss"][0])
    # min-norm risk (1−δ)ρ + σ²δ/(1−δ) + σ² in closed form (docs/theory/dln.md §4 normalisation check)
    assert ridge == pytest.approx(0.5 * 0.1 + 0.01 * 0.5 / 0.5 + 0.01, rel=1e-8)
    for alpha in (3.0, 0.3, 0.01):
        mid = float(hidyn.theory("dln", method="fixed_point", init_scale=alpha, **kw)["test_loss"][0])
        assert l1 - 1e-9 <= mid <= ridge + 1e-9


def test_saddle_to_saddle_and_interpolator_on_an_instance():
    r = np.random.default_rng(0)
    n, d = 12, 24
    X = r.standard_normal((n, d)) / np.sqrt(d)
    beta_star = np.zeros(d)
    beta_star[:2] = [1.0, -1.0]
    y = X @ beta_star
    s2s = hidyn.theory("dln", method="saddle_to_saddle", X=X, y=y, beta_star=beta_star)
    assert s2s["time"].attrs["units"].startswith("tau = clock * t / log(1/alpha)")
    assert s2s.attrs["sign_constraint"] == "none" and s2s.attrs["clock"] == 1.0
    assert np.all(np.diff(s2s["time"].values) > 0) and s2s["train_loss"].values[-1] < 1e-20
    assert np.all(np.diff(s2s["train_loss"].values) <= 1e-15)  # each plateau lowers the train error
    tiny = hidyn.theory("dln", method="interpolator", X=X, y=y, init_scale=1e-12, beta_star=beta_star)
    # the last plateau is the min-ℓ1 interpolator, which GF reaches as α → 0
    np.testing.assert_allclose(tiny["beta"].values[0], s2s["beta"].values[-1], atol=1e-6)
    with pytest.raises(ValueError, match="explicit instance"):
        hidyn.theory("dln", method="saddle_to_saddle")


def test_saddle_to_saddle_clock_and_sign_frozen_balanced_init():
    """pm parametrisation: same plateaus, jumps at half the time (t_per_tau halves); balanced init:
    the sign-constrained process (β ≥ 0), different from the pesme one on a mixed-sign teacher."""
    r = np.random.default_rng(1)
    n, d = 12, 24
    X = r.standard_normal((n, d)) / np.sqrt(d)
    beta_star = np.zeros(d)
    beta_star[:3] = [1.0, 0.5, -1.0]
    y = X @ beta_star
    kw = dict(method="saddle_to_saddle", X=X, y=y, init_scale=1e-3)
    uv = hidyn.theory("dln", **kw)
    pm = hidyn.theory("dln", parametrization="pm", **kw)
    np.testing.assert_array_equal(pm["beta"].values, uv["beta"].values)
    assert pm.attrs["t_per_tau"] == pytest.approx(uv.attrs["t_per_tau"] / 2) == pytest.approx(np.log(1e3) / 2)
    bal = hidyn.theory("dln", init="balanced", **kw)
    assert bal.attrs["sign_constraint"].startswith("beta >= 0")
    assert np.all(bal["beta"].values >= 0) and uv["beta"].values.min() < 0
    assert not np.allclose(bal["beta"].values[-1], uv["beta"].values[-1], atol=1e-3)
