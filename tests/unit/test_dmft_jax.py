"""The JAX engine of the DLN DMFT (hidyn.solvers.dmft.dln_jax) against the numpy reference.

The numpy engine is validated on its own (tests/unit/test_dmft_dln.py: δ → ∞ limit, finite
differences, finite-d GD).  Here the JAX engine must

* reproduce it within Monte-Carlo error on independent seeds (z·SEM, the acceptance criterion);
* reproduce it to rounding on the SAME seed (both engines draw the same random numbers), which checks
  every output key, including the kernels, the ``_sem`` keys and the bookkeeping, far below the MC
  error.  "Rounding" is amplified by the pass itself: perturbing δ by 1e-15 in the numpy engine moves
  E_te by 4e-6 (7e-5 relative) at t = 4, through near-threshold Cholesky pivots, so the same-seed
  tolerance is 1e-3 relative (plus a small fraction of the SEM), not 1e-12;
* compile its per-step kernels once per shape, keep the numpy engine's validation, memory refusal and
  divergence handling, and be reachable through hidyn.theory(..., engine="jax").

Sizes are shared between tests so that each kernel shape compiles once (about 2–5 s per shape on a
2-core CPU).
"""
from __future__ import annotations

import math

import numpy as np
import pytest

pytest.importorskip("jax")

from hidyn.solvers.dmft import dln, dln_jax  # noqa: E402

SCALARS = ("train_loss", "test_loss", "overlap", "norm1", "norm2", "tpr", "fpr")
# δ = 0.5 with label noise: the proportional regime of the paper; T = 40 steps of η = 0.1 reach t = 4,
# past the search plateau of α = 0.3 into the descent
CASE = dict(ratio=0.5, sparsity=0.1, noise=0.1, init_scale=0.3, lr=0.1, n_steps=40, n_samples=4000)


@pytest.fixture(scope="module")
def pair():
    """numpy and JAX solves of CASE with the same seed, and a JAX solve with an independent seed."""
    ref = dln.solve(**CASE, seed=11)
    same = dln_jax.solve(**CASE, seed=11)
    other = dln_jax.solve(**CASE, seed=12)
    return ref, same, other


def test_same_keys_and_info(pair):
    ref, same, _ = pair
    assert set(same) == set(ref)
    for key, val in ref.items():
        if key != "info":
            assert np.shape(same[key]) == np.shape(val), key
    # every reference info key is there, plus the engine's own; all netCDF-safe scalars
    assert set(ref["info"]) <= set(same["info"])
    assert same["info"]["engine"] == "jax" and "cpu" in same["info"]["device"].lower()
    for key in ("n_steps", "n_samples", "n_batches", "error_method", "seed", "diverged_at_step"):
        assert same["info"][key] == ref["info"][key], key
    for key, val in same["info"].items():
        assert isinstance(val, (str, int, float)) and not isinstance(val, bool), key
    np.testing.assert_array_equal(same["time"], ref["time"])


def test_same_seed_agrees_to_rounding(pair):
    ref, same, _ = pair
    for key in SCALARS:
        tol = 1e-3 * np.abs(ref[key]) + 0.05 * ref[f"{key}_sem"] + 1e-9
        if key in ("tpr", "fpr"):
            # thresholded counts: a sample sitting at |β| = 0.5 may flip; one sample of ρK = 400
            tol = tol + 1.0 / (CASE["sparsity"] * CASE["n_samples"]) + 1e-12
        dev = np.abs(same[key] - ref[key])
        assert np.all(dev <= tol), (key, int(np.argmax(dev - tol)), float(dev.max()))
        sem_dev = np.abs(same[f"{key}_sem"] - ref[f"{key}_sem"])
        assert np.all(sem_dev <= 1e-2 * ref[f"{key}_sem"] + 1e-9 + (key in ("tpr", "fpr")) * 0.01), key
    for key in ("C_delta", "R_beta", "M", "C_r"):
        scale = np.abs(ref[key]).max()
        np.testing.assert_allclose(same[key], ref[key], rtol=0, atol=1e-3 * scale, err_msg=key)
    # causal structure of the kernels is exact, as in the reference (docs/theory/dln.md §10 pitfall 8)
    assert np.all(np.triu(same["R_beta"]) == 0)
    np.testing.assert_array_equal(np.diag(same["M"]), 1.0)
    np.testing.assert_array_equal(same["C_delta"], same["C_delta"].T)


def test_independent_seeds_agree_within_monte_carlo_error(pair):
    # The acceptance criterion: JAX (seed 12) vs numpy (seed 11) within z·SEM, SEMs from the replica
    # pass of each solve; z = 4 for ~40 correlated comparisons.
    ref, _, other = pair
    z = 4.0
    worst = 0.0
    for key in ("train_loss", "test_loss", "overlap", "norm1", "norm2"):
        for k in (5, 10, 20, 30, 40):
            sem = math.hypot(ref[f"{key}_sem"][k], other[f"{key}_sem"][k])
            dev = abs(ref[key][k] - other[key][k])
            assert dev <= z * sem, (key, k, ref[key][k], other[key][k], sem)
            worst = max(worst, dev / sem)
    assert worst > 0  # independent seeds do differ


def test_pm_jackknife_float64_and_compile_once():
    jax_kernels = dln_jax._kernels("pm", "float64", dln_jax.DEFAULT_BLOCK, 8)
    kw = dict(sparsity=0.2, teacher="gauss", noise=0.0, init="balanced", parametrization="pm", n_steps=12,
              n_samples=800, tangent_dtype="float64", error_method="jackknife", seed=5)
    for ratio, lr, alpha in ((2.0, 0.05, 0.5), (0.7, 0.03, 0.2)):
        ref = dln.solve(ratio=ratio, lr=lr, init_scale=alpha, **kw)
        out = dln_jax.solve(ratio=ratio, lr=lr, init_scale=alpha, **kw)
        for key in SCALARS + ("C_delta", "R_beta", "C_r"):
            np.testing.assert_allclose(out[key], ref[key], rtol=1e-6, atol=1e-10, err_msg=key)
        for key in ("test_loss_sem", "train_loss_sem", "C_delta_sem", "R_beta_sem"):
            np.testing.assert_allclose(out[key], ref[key], rtol=1e-5, atol=1e-12, err_msg=key)
    # ratio, lr and α are traced values: the second solve reused the compiled kernels
    assert jax_kernels[0]._cache_size() == 1 and jax_kernels[1]._cache_size() == 1


@pytest.mark.filterwarnings("ignore:lr=.*exceeds the GD stability bound")
def test_divergence_is_reported_and_masked_like_numpy():
    # η = 1 is six times the stability bound; float32 tangents overflow first (as in the numpy test)
    kw = dict(ratio=0.5, sparsity=0.1, init_scale=0.3, lr=1.0, n_steps=40, n_samples=800,
              error_method="jackknife", seed=0)  # diverges at step 29 with this seed
    with pytest.warns(RuntimeWarning, match="diverged at step"):
        ref = dln.solve(**kw)
    with pytest.warns(RuntimeWarning, match="diverged at step"):
        out = dln_jax.solve(**kw)
    k = out["info"]["diverged_at_step"]
    assert k == ref["info"]["diverged_at_step"] and 0 < k <= 40
    assert np.all(np.isfinite(out["test_loss"][:k])) and np.all(np.isnan(out["test_loss"][k:]))
    assert np.all(np.isnan(out["R_beta"][k:])) and np.all(np.isfinite(out["R_beta"][:k, :k]))
    # the blow-up amplifies rounding (E_te ~ 1e23 at step 28), so compare before it
    np.testing.assert_allclose(out["test_loss"][: k - 4], ref["test_loss"][: k - 4], rtol=1e-4)


def test_validation_memory_and_device_errors():
    base = dict(ratio=0.5, sparsity=0.1, init_scale=0.3, lr=0.1, n_steps=3, n_samples=800)
    with pytest.raises(ValueError, match="ratio"):
        dln_jax.solve(**{**base, "ratio": -1.0})
    with pytest.raises(ValueError, match="error_method"):
        dln_jax.solve(**base, error_method="bootstrap")
    with pytest.raises(ValueError, match="block"):
        dln_jax.solve(**base, block=0)
    with pytest.raises(ValueError, match="device"):
        dln_jax.solve(**base, device="no-such-backend")
    with pytest.raises(ValueError) as exc:
        dln_jax.solve(**{**base, "n_steps": 400, "n_samples": 16000})
    est = dln_jax.estimate_memory(16000, 400)["total"]
    assert f"{est / 1e9:.2f} GB" in str(exc.value) and "engine='jax'" in str(exc.value)
    # the packed triangular tiles hold about K T²/2 (1 + block/T) tangents, like the numpy layout
    mem = dln_jax.estimate_memory(16000, 150, "float32")
    assert 0.8 < mem["tangent_history"] / dln.estimate_memory(16000, 150, "float32")["tangent_history"] < 1.4


def test_theory_engine_option(pair):
    import hidyn

    ref, same, _ = pair
    params = dict(ratio=CASE["ratio"], sparsity=CASE["sparsity"], noise=CASE["noise"],
                  init_scale=CASE["init_scale"], lr=CASE["lr"], algorithm="gd")
    th = hidyn.theory("dln", method="dmft", t_max=4.0, n_samples=CASE["n_samples"], seed=11, engine="jax",
                      **params)
    assert th.attrs["dmft_engine"] == "jax"
    np.testing.assert_allclose(th["test_loss"].values, same["test_loss"], rtol=1e-12)
    with pytest.raises(ValueError, match="engine"):
        hidyn.theory("dln", method="dmft", t_max=0.3, engine="torch", **params)
    with pytest.raises(ValueError, match="engine"):
        hidyn.theory("dln", method="dmft_gf", t_max=0.3, engine="torch", **params)
    with pytest.raises(ValueError, match="unknown option"):
        hidyn.theory("dln", method="dmft", t_max=0.3, n_samples=800, device="cpu", **params)
