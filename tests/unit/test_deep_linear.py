"""deep_linear: parametrisation table, bad input, GD against autodiff, tangent kernel, kernel limit,
the μP limit at depth 0, per-learning-rate divergence (deep_linear.md §1–§4)."""
from __future__ import annotations

import math
import warnings

import numpy as np
import pytest

import hidyn
from hidyn.models.deep_linear import abc_table, effective_exponents

SMALL = dict(d_in=5, n_samples=12, depth=2)


# ------------------------------------------------------------------ §2 parametrisation table
def test_abc_table_is_the_literature_table():
    """Yang & Hu (arXiv:2011.14522) Table 1, SGD column, input / hidden / readout."""
    L = 3
    t = abc_table("sp", L)
    assert list(t["a"]) == [0] * 5 and list(t["b"]) == [0, .5, .5, .5, .5] and list(t["c"]) == [0] * 5
    t = abc_table("ntp", L)
    assert list(t["a"]) == [0, .5, .5, .5, .5] and list(t["b"]) == [0] * 5 and list(t["c"]) == [0] * 5
    t = abc_table("mup", L)
    assert list(t["a"]) == [-.5, 0, 0, 0, .5] and list(t["b"]) == [.5] * 5 and list(t["c"]) == [0] * 5


def test_effective_exponents_are_hayous_mup_and_the_kernel_scalings():
    """μP: init variances 1, 1/n, 1/n² on x̂ (Hayou: W0 ~ N(0, 1/d) on raw x, W_ℓ ~ N(0, 1/n),
    V ~ N(0, 1/n²)) and learning rates ηn, η, η/n; NTP: 1, 1/n, 1/n and η, η/n, η/n; SP: η everywhere."""
    p, q = effective_exponents(abc_table("mup", 2))
    assert list(p) == [0, 1, 1, 2] and list(q) == [-1, 0, 0, 1]
    p, q = effective_exponents(abc_table("ntp", 2))
    assert list(p) == [0, 1, 1, 1] and list(q) == [0, 1, 1, 1]
    p, q = effective_exponents(abc_table("sp", 2))
    assert list(p) == [0, 1, 1, 1] and list(q) == [0, 0, 0, 0]
    spec = hidyn.models.get("deep_linear", width=100, depth=2, lr=[0.5, 2.0])
    assert np.allclose(spec.layer_lrs(), [[50, .5, .5, .005], [200, 2, 2, .02]])
    assert np.allclose(spec.init_std() ** 2, [1, 1e-2, 1e-2, 1e-4])


def test_abc_symmetry_and_explicit_exponents():
    base = abc_table("mup", 1)
    theta = 0.25   # (a, b, c) → (a + θ, b − θ, c − 2θ) leaves the dynamics unchanged
    shifted = {"a": base["a"] + theta, "b": base["b"] - theta, "c": base["c"] - 2 * theta}
    spec = hidyn.models.get("deep_linear", depth=1, parametrization=shifted)
    assert spec.regime == "mup"
    custom = hidyn.models.get("deep_linear", depth=1, parametrization={"a": 0, "b": 0.5, "c": 0.5})
    assert custom.regime is None
    with pytest.raises(NotImplementedError, match="no infinite-width theory"):
        hidyn.theory(custom, t_max=2)


def test_init_variances_are_drawn_as_stated():
    from hidyn.solvers.mc.deep_linear_numpy import draw_init

    spec = hidyn.models.get("deep_linear", width=400, depth=1, d_in=50)
    W0, (W1,), v = draw_init(np.random.SeedSequence(3), spec)
    n = 400
    assert abs(W0.var() - 1.0) < 0.02               # on x̂ = x/√d: 1/d on raw inputs
    assert abs(W1.var() * n - 1.0) < 0.02
    assert abs(v.var() * n ** 2 - 1.0) < 0.25       # 400 samples: relative SE √(2/400) = 0.07


@pytest.mark.parametrize("bad, match", [
    (dict(width=0), "width=0 is invalid"), (dict(depth=-1), "depth=-1 is invalid"),
    (dict(parametrization="foo"), "parametrization='foo' is invalid"),
    (dict(lr=0.0), "lr=0.0 is invalid"), (dict(lr=[0.1, -1.0]), r"lr\[1\]=-1.0 is invalid"),
    (dict(algorithm="sgd"), "batch_size=None is invalid"),
    (dict(algorithm="sgd", batch_size=100, n_samples=10), "batch_size=100 is invalid"),
    (dict(inputs="whitened", n_samples=3, d_in=5), "n_samples=3 is invalid"),
    (dict(parametrization={"a": [0, 0], "b": 0, "c": 0}, depth=1), "parametrization"),
])
def test_bad_input(bad, match):
    with pytest.raises(ValueError, match=match):
        hidyn.models.get("deep_linear", **bad)


def test_d_out_other_than_one_is_not_implemented():
    with pytest.raises(NotImplementedError, match="d_out=2"):
        hidyn.models.get("deep_linear", d_out=2)


def test_whitened_inputs():
    spec = hidyn.models.get("deep_linear", inputs="whitened", d_in=6, n_samples=20)
    X, _, w = spec.dataset()
    assert np.allclose(X.T @ X / 20, np.eye(6), atol=1e-12) and math.isclose(np.linalg.norm(w), 1.0)


# ------------------------------------------------------------------ GD against autodiff
def _fd_gd(spec, steps, seed_seq, h=1e-6):
    """GD on the trainable abc parameters w_ℓ (W_ℓ = n^{-a} w_ℓ, lr η n^{-c}) with gradients by central
    finite differences of the loss — an independent route through eq. 2.1 and eq. 3.2.  Returns the
    train losses after 0..steps steps, per lr, shape (steps + 1, R)."""
    from hidyn.solvers.mc.deep_linear_numpy import draw_init

    n = spec.width
    abc = spec.abc
    mult = n ** (-abc["a"])
    W0, hidden, v = draw_init(seed_seq, spec)
    X, y, _ = spec.dataset()
    Xh = X / math.sqrt(spec.d_in)

    def loss(params):
        h = Xh @ (mult[0] * params[0]).T
        for ell in range(1, spec.depth + 1):
            h = h @ (mult[ell] * params[ell]).T
        return 0.5 * np.mean((h @ (mult[-1] * params[-1]) - y) ** 2)

    def grad(params):
        out = []
        for p in params:
            g = np.zeros_like(p)
            for idx in np.ndindex(p.shape):
                step = h * max(1.0, abs(p[idx]))
                old = p[idx]
                p[idx] = old + step
                up = loss(params)
                p[idx] = old - step
                down = loss(params)
                p[idx] = old
                g[idx] = (up - down) / (2 * step)
            out.append(g)
        return out

    curves = []
    for lr in spec.lrs:
        params = [W0 / mult[0]] + [W / mult[i + 1] for i, W in enumerate(hidden)] + [v / mult[-1]]
        curve = [loss(params)]
        for _ in range(steps):
            g = grad(params)
            params = [p - lr * n ** (-abc["c"][i]) * gi for i, (p, gi) in enumerate(zip(params, g))]
            curve.append(loss(params))
        curves.append(curve)
    return np.array(curves).T


@pytest.mark.parametrize("par", ["mup", "ntp", "sp"])
def test_numpy_gd_equals_finite_difference_gd(par):
    """The backend's rank-one updates (eq. 3.2), low-rank storage and its switch to dense storage at
    rank n/2 (width 8, 9 steps) reproduce GD on the abc parameters with finite-difference gradients
    (central differences, h = 1e-6 relative: gradient errors ~1e-9 relative, hence rtol 1e-6)."""
    from hidyn.solvers.mc import driver
    from hidyn.solvers.mc.deep_linear_numpy import DeepLinearNumpyBackend

    lrs = {"mup": [0.05, 0.3], "ntp": [0.05, 0.3], "sp": [0.01, 0.03]}[par]
    spec = hidyn.models.get("deep_linear", width=8, parametrization=par, lr=lrs, **SMALL)
    ss = np.random.SeedSequence(11)
    _, data, _ = driver.run(DeepLinearNumpyBackend(spec), [ss], np.arange(10.0))
    ref = _fd_gd(spec, 9, ss)
    assert ref[-1].max() < 0.9 * ref[0].max()          # the runs learn: the check is not vacuous
    assert np.allclose(data["train_loss"][0], ref, rtol=1e-6, atol=1e-10)


def test_sgd_with_the_full_batch_is_gd():
    kw = dict(width=16, lr=[0.1, 0.4], t_max=6, n_times=7, spacing="linear", seeds=2, backend="numpy", **SMALL)
    gd = hidyn.simulate("deep_linear", **kw)
    sgd = hidyn.simulate("deep_linear", algorithm="sgd", batch_size=12, **kw)
    assert np.allclose(gd.train_loss, sgd.train_loss, rtol=1e-10)
    small = hidyn.simulate("deep_linear", algorithm="sgd", batch_size=3, **kw)
    assert not np.allclose(gd.train_loss[:, 1:], small.train_loss[:, 1:])


# ------------------------------------------------------------------ §3 tangent kernel, kernel limit
def test_tangent_kernel_formula_equals_autodiff_ntk():
    """Eq. 3.3 against Σ_ℓ η_ℓ J_ℓ J_ℓᵀ with J_ℓ = ∂β/∂W_ℓ by jax.jacobian, at width 12."""
    jax = pytest.importorskip("jax")
    import jax.numpy as jnp

    from hidyn.solvers.closed_form.deep_linear_ntk import tangent_kernel
    from hidyn.solvers.mc.deep_linear_numpy import draw_init

    spec = hidyn.models.get("deep_linear", width=12, parametrization="ntp", lr=0.7, **SMALL)
    W0, hidden, v = draw_init(np.random.SeedSequence(5), spec)
    eta = spec.layer_lrs()[0]
    K = tangent_kernel(W0, hidden, v, eta)
    with jax.enable_x64(True):
        def beta(params):
            A = params[0]
            for W in params[1:-1]:
                A = W @ A
            return A.T @ params[-1]

        params = [jnp.asarray(W0)] + [jnp.asarray(W) for W in hidden] + [jnp.asarray(v)]
        J = jax.jacobian(beta)(params)
        K_auto = sum(eta[i] * np.asarray(Ji).reshape(spec.d_in, -1) @ np.asarray(Ji).reshape(spec.d_in, -1).T
                     for i, Ji in enumerate(J))
    assert np.allclose(K, K_auto, rtol=1e-10, atol=1e-12)


def test_ntp_tangent_kernel_converges_to_eta_L_plus_2():
    from hidyn.solvers.closed_form.deep_linear_ntk import tangent_kernel
    from hidyn.solvers.mc.deep_linear_numpy import draw_init

    errs = []
    for n in (64, 1024):
        spec = hidyn.models.get("deep_linear", width=n, parametrization="ntp", lr=1.0, **SMALL)
        W0, hidden, v = draw_init(np.random.SeedSequence(2), spec)
        K = tangent_kernel(W0, hidden, v, spec.layer_lrs()[0])
        errs.append(np.abs(K - (spec.depth + 2) * np.eye(spec.d_in)).max())
    # fluctuations O(n^{-1/2}): 16× the width, ~4× smaller (allow 2×, one draw per width)
    assert errs[1] < errs[0] / 2 and errs[1] < 1.0


def test_kernel_gd_closed_form_equals_explicit_iteration():
    """Eq. 3.5 (eigenbasis) against iterating the mean and covariance of β directly."""
    from hidyn.solvers.closed_form.deep_linear_ntk import kernel_gd

    spec = hidyn.models.get("deep_linear", parametrization="ntp", n_samples=4, d_in=6, noise=0.3)  # P < d
    S, c, yy, w = spec.moments()
    k = np.array([0.2, 0.9])
    out = kernel_gd(S, c, yy, w, k, np.arange(8))
    for r, kr in enumerate(k):
        m, C = np.zeros(6), np.eye(6)
        for t in range(8):
            train = 0.5 * (m @ S @ m - 2 * m @ c + yy + np.trace(S @ C))
            test = 0.5 * (np.sum((m / np.sqrt(6) - w) ** 2) + np.trace(C) / 6)
            assert math.isclose(out["train_loss"][t, r], train, rel_tol=1e-10)
            assert math.isclose(out["test_loss"][t, r], test, rel_tol=1e-10)
            M = np.eye(6) - kr * S
            m, C = M @ m + kr * c, M @ C @ M.T


def test_sp_limit_is_reported_as_diverged():
    with pytest.warns(RuntimeWarning, match="diverges at the first step"):
        th = hidyn.theory("deep_linear", parametrization="sp", lr=[0.01, 0.1], t_max=3, n_times=4,
                          spacing="linear")
    assert np.all(np.isfinite(th.train_loss[0])) and np.all(np.isnan(th.train_loss[1:]))
    assert list(th.attrs["diverged_at"]) == [1, 1] and th.attrs["sp_lr_max_at_width"] > 0


# ------------------------------------------------------------------ §4 μP limit
def test_dmft_depth0_equals_two_layer_recursion():
    """The general solver at depth 0 against the independent finite-dimensional recursion."""
    from hidyn.solvers.dmft.deep_linear import solve_mup, two_layer_recursion

    spec = hidyn.models.get("deep_linear", depth=0, d_in=6, n_samples=20, noise=0.2)
    S, c, yy, w = spec.moments()
    out = solve_mup(S, c, yy, w, 0, 0.7, 10)
    ref = two_layer_recursion(S, c, 0.7, 10)
    assert np.allclose(out["end_to_end"] * np.sqrt(6), ref, rtol=1e-12, atol=1e-14)
    assert out["train_loss"][-1] < 0.1 * out["train_loss"][0]


def test_dmft_kernels_at_init_and_symmetry():
    from hidyn.solvers.dmft.deep_linear import solve_mup

    spec = hidyn.models.get("deep_linear", depth=2, d_in=4, n_samples=10)
    S, c, yy, w = spec.moments()
    out = solve_mup(S, c, yy, w, 2, 0.5, 4, return_kernels=True)
    assert np.allclose(out["feature_kernel"][0], np.eye(4))       # H_ℓ(0,0) = I: norm-preserving init
    assert np.allclose(out["gradient_kernel"][0], 1.0)            # G_ℓ(0,0) = E v̂₀² = 1
    assert np.allclose(out["end_to_end"][0], 0.0)                 # f₀ = O(n^{-1/2}) → 0 under μP
    H = out["H"]
    assert np.allclose(H, np.swapaxes(np.swapaxes(H, 1, 2), 3, 4))  # H(s,t) = H(t,s)ᵀ
    assert np.all(out["weight_change"][1:] > 0)                   # feature learning in every layer


def test_dmft_close_to_width_2048_after_three_steps():
    """A single seed at width 2048 is within a few n^{-1/2} of the μP limit (fast sanity check; the
    measured rate is in tests/agreement/test_deep_linear_width.py)."""
    kw = dict(depth=1, d_in=6, n_samples=16, lr=[0.3, 1.0], t_max=3, n_times=4, spacing="linear")
    th = hidyn.theory("deep_linear", **kw)
    sim = hidyn.simulate("deep_linear", width=2048, seeds=1, backend="numpy", **kw)
    assert np.abs(sim.train_loss[0] - th.train_loss).max() < 3 / math.sqrt(2048)


# ------------------------------------------------------------------ divergence per learning rate
def test_a_diverging_lr_is_recorded_and_the_grid_continues():
    kw = dict(depth=1, d_in=6, n_samples=16, lr=[0.3, 100.0], t_max=8, n_times=9, spacing="linear")
    with pytest.warns(RuntimeWarning, match="diverged"):
        sim = hidyn.simulate("deep_linear", width=64, seeds=2, backend="numpy", **kw)
    assert np.all(np.isfinite(sim.train_loss.sel(lr=0.3)))
    assert np.all(np.isnan(sim.train_loss.sel(lr=100.0)[:, -1]))
    import json
    div = np.array(json.loads(sim.attrs["diverged_at"]))
    assert div.shape == (2, 2) and np.all(div[:, 0] == -1) and np.all(div[:, 1] > 0)
    with pytest.warns(RuntimeWarning, match="diverged"):
        th = hidyn.theory("deep_linear", **kw)
    assert th.attrs["diverged_at"][0] == -1 and th.attrs["diverged_at"][1] > 0
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        hidyn.theory("deep_linear", **{**kw, "lr": 0.3})


# ------------------------------------------------------------------ §5 lr_transfer
def test_parabolic_argmin_recovers_a_parabola_vertex_and_flags_edges():
    from hidyn.transfer import parabolic_argmin

    lrs = np.geomspace(0.01, 10, 13)
    x = np.log(lrs)
    loss = np.stack([(x - np.log(0.37)) ** 2 + 1, (x - np.log(20.0)) ** 2])    # vertex inside / beyond
    loss[0, -1] = np.nan                                                        # a diverged run
    eta, edge = parabolic_argmin(lrs, loss)
    assert math.isclose(eta[0], 0.37, rel_tol=1e-10) and not edge[0]
    assert math.isclose(eta[1], lrs[-1], rel_tol=1e-12) and edge[1]
    assert np.isnan(parabolic_argmin(lrs, np.full(13, np.nan))[0])


def test_lr_transfer_dataset_and_bad_input():
    kw = dict(depth=1, d_in=5, n_samples=12, steps=2, seeds=2, backend="numpy")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        ds = hidyn.lr_transfer("deep_linear", widths=[8, 16], lrs=np.geomspace(0.1, 300, 5), **kw)
    assert ds.loss.dims == ("seed", "lr", "width") and ds.optimal_lr.dims == ("seed", "width")
    assert np.all(ds.diverged_at.sel(lr=300.0) > 0) and np.all(ds.diverged_at.sel(lr=0.1) == -1)
    assert np.all(np.isnan(ds.loss.sel(lr=300.0)))
    assert np.isfinite(ds.attrs["optimal_lr_theory"]) and ds.loss_theory.dims == ("lr",)
    with pytest.raises(ValueError, match="lrs="):
        hidyn.lr_transfer("deep_linear", widths=[8], lrs=[0.1, 0.2], **kw)
    with pytest.raises(ValueError, match=r"widths\[0\]=0 is invalid"):
        hidyn.lr_transfer("deep_linear", widths=[0], lrs=[0.1, 0.2, 0.3], **kw)
    with pytest.raises(ValueError, match="model='dln' is invalid"):
        hidyn.lr_transfer("dln", widths=[8], lrs=[0.1, 0.2, 0.3])


def test_save_load_round_trip_and_theory_refuses_sgd(tmp_path):
    kw = dict(width=8, lr=[0.1, 0.3], t_max=2, n_times=3, spacing="linear", seeds=2, backend="numpy", **SMALL)
    sim = hidyn.simulate("deep_linear", **kw)
    hidyn.save(sim, tmp_path / "dl.nc")
    back = hidyn.load(tmp_path / "dl.nc")
    assert np.allclose(back.train_loss, sim.train_loss) and list(back.lr.values) == [0.1, 0.3]
    from hidyn.results import spec_from_dataset

    assert spec_from_dataset(back) == hidyn.models.get("deep_linear", width=8, lr=[0.1, 0.3], **SMALL)
    with pytest.raises(NotImplementedError, match="minibatch SGD has only the Monte-Carlo"):
        hidyn.theory("deep_linear", algorithm="sgd", batch_size=4, t_max=2, **SMALL)


def test_two_time_kernels_through_the_api():
    th = hidyn.theory("deep_linear", times=[0, 2, 4], lr=[0.3, 0.6], two_time=True, **SMALL)
    H, G = th.feature_kernel_2t, th.gradient_kernel_2t
    assert H.dims == ("lr", "hidden", "time", "time_", "input", "input_")
    diag = H.values[:, :, [0, 1, 2], [0, 1, 2]]                   # (lr, hidden, time, input, input_)
    assert np.allclose(np.moveaxis(diag, 2, 0), th.feature_kernel.values)
    assert np.allclose(G.values[..., 1, 2], G.values[..., 2, 1])
