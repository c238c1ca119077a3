"""Incremental learning of a diagonal linear network at small init: search plateau, descent, saddle-to-saddle.

Nishiyama & Imaizumi (arXiv:2510.01930) describe small-α training as a *search* phase, during which
the errors sit on the plateau E = ρ + σ² of β = 0 while the weights grow like α²·e^{t|g|}, followed by
a *descent* phase; Pesme & Flammarion (arXiv:2304.00488) show that as α → 0, in the rescaled time
τ = t/log(1/α), gradient flow jumps between saddles (a piecewise-constant β(τ), docs/theory/dln.md §4).

(a) Proportional regime (n/d = 0.5, ρ = 0.1, σ = 0, GD with η = 0.1): train and test errors against t,
    DMFT (d → ∞, lines ± SEM) and finite-d GD (markers ± SEM).  The plateau lasts ≈ log(1/α)/|g|.
(b) The same test errors against τ = t/log(1/α), with finite-d gradient flow at much smaller α: the
    escape from the plateau moves to a fixed τ as α → 0 (corrections O(1/log(1/α)), docs/theory/dln.md §10
    pitfall 11).
(c) Saddle-to-saddle on an explicit instance (d = 40, n = 20, four teacher coordinates of different
    sizes): train error against τ of the α → 0 jump process (:func:`saddle_to_saddle`) and of the exact
    gradient flow at α = 1e-4 … 1e-32 (:func:`tiny_alpha_gradient_flow`), which approaches the staircase.
(d) The coordinates β_i(τ) of that instance: each jump activates (or deactivates) coordinates; the
    last plateau is the min-ℓ1 interpolator (here β*, exact recovery).

Run:  python examples/dln_incremental.py [--quick] [--out DIR] [--engine numpy|jax]
      (full: DMFT with K = 8000 samples to t = 18 for α = 1e-2, 1e-4, d = 1024; a few minutes on 2
      cores with numpy.  --quick: K = 1000 to t = 10 for α = 1e-2, 1e-3, d = 256; seconds.)
Writes dln_incremental_dmft.nc, dln_incremental_mc.nc (GD), dln_incremental_gf_alpha*.nc (gradient flow),
dln_incremental_saddles.nc and dln_incremental.png.
"""
from __future__ import annotations

import argparse
import math
from pathlib import Path

import numpy as np

BASE = dict(ratio=0.5, sparsity=0.1, teacher="rademacher", noise=0.0, lr=0.1, algorithm="gd")
TEACHER_VALUES = (1.0, -0.7, 0.45, -0.25)  # well-separated sizes: one saddle per coordinate


def explicit_instance(d: int = 40, n: int = 20, seed: int = 3):
    """Small Gaussian design (X_{μi} ~ N(0, 1/d)) with four non-zero teacher coordinates, σ = 0."""
    rng = np.random.default_rng(seed)
    X = rng.standard_normal((n, d)) / math.sqrt(d)
    beta_star = np.zeros(d)
    beta_star[: len(TEACHER_VALUES)] = TEACHER_VALUES
    return X, X @ beta_star, beta_star


def main(quick: bool = False, out: str | Path = "out", engine: str = "numpy") -> dict:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import xarray as xr

    import hidyn
    from hidyn.results import make_dataset
    from hidyn.solvers.closed_form.dln_limits import (
        jump_process_beta,
        saddle_to_saddle,
        tiny_alpha_gradient_flow,
    )

    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    d = 256 if quick else 1024
    seeds = 3 if quick else 6
    alphas = (1e-2, 1e-3) if quick else (1e-2, 1e-4)
    alphas_gf = (1e-8,) if quick else (1e-8, 1e-16)
    t_max = 10.0 if quick else 18.0
    dmft_opts = dict(n_samples=1000, error_method="jackknife") if quick else dict(n_samples=8000)
    plateau = BASE["sparsity"] + BASE["noise"] ** 2  # E_tr = E_te = ρ + σ² at β = 0

    # (a), (b): DMFT and finite-d GD in the proportional regime
    times = np.concatenate([[0.0], np.linspace(BASE["lr"], t_max, 36 if quick else 60)])
    ths, sims = [], []
    for alpha in alphas:
        th = hidyn.theory("dln", t_max=t_max, init_scale=alpha, seed=2, engine=engine, **dmft_opts, **BASE)
        sim = hidyn.simulate("dln", d=d, seeds=seeds, times=times, init_scale=alpha, **BASE)
        esc = th["time"].values[np.argmax(th["test_loss"].values < 0.9 * plateau)]
        print(f"α = {alpha:g}: DMFT leaves the plateau (E_te < 0.9·(ρ + σ²)) at t = {esc:.1f} "
              f"(τ = {esc / math.log(1 / alpha):.2f}); E_te(t = {t_max:g}) DMFT "
              f"{float(th['test_loss'][-1]):.4f} ± {float(th['test_loss_sem'][-1]):.4f}, GD d = {d} "
              f"{float(sim['test_loss'].isel(time=-1).mean()):.4f}")
        ths.append(th.expand_dims(init_scale=[alpha]))
        sims.append(sim.expand_dims(init_scale=[alpha]))
    gf_runs = []
    for alpha in alphas_gf:
        ell = math.log(1 / alpha)
        gf = hidyn.simulate("dln", d=d, seeds=seeds, times=np.linspace(0.0, 2.0 * ell, 50), init_scale=alpha,
                            **{**BASE, "algorithm": "gf"})
        gf_runs.append(gf.expand_dims(init_scale=[alpha]))

    # (c), (d): the α → 0 jump process and finite-α flows on an explicit instance
    X, y, beta_star = explicit_instance()
    jp = saddle_to_saddle(X, y)
    tau_end = 1.25 * float(jp["taus"][-1])
    taus = np.linspace(0.0, tau_end, 300 if quick else 800)
    flow_alphas = (1e-4, 1e-8, 1e-16) if quick else (1e-4, 1e-8, 1e-16, 1e-32)
    flows = {a: tiny_alpha_gradient_flow(X, y, alpha=a, taus=taus) for a in flow_alphas}
    jump_beta = jump_process_beta(jp, taus)
    print(f"saddle-to-saddle, d = {X.shape[1]}, n = {X.shape[0]}: {jp['n_jumps']} jumps at τ = "
          + ", ".join(f"{t:.3f}" for t in jp["taus"]) + f"; final |β − β*|_∞ = "
          f"{np.abs(jp['beta'] - beta_star).max():.1e}")
    for a in flow_alphas:
        print(f"  α = {a:g}: mean |β_α(τ) − β_jump(τ)| = {np.mean(np.abs(flows[a] - jump_beta)):.2e}")

    def train_error(B):
        return np.mean((B @ X.T - y) ** 2, axis=-1)

    fig, axes = plt.subplots(2, 2, figsize=(11.5, 8.4), layout="constrained")
    ax_a, ax_b, ax_c, ax_d = axes.ravel()
    for i, (alpha, th, sim) in enumerate(zip(alphas, ths, sims)):
        ell = math.log(1 / alpha)
        t = th["time"].values
        ts = sim["time"].values
        for name, ls, mk in (("test_loss", "-", "o"), ("train_loss", "--", "s")):
            m, s = th[name].values[0], th[f"{name}_sem"].values[0]
            lab = "test" if name == "test_loss" else "train"
            ax_a.plot(t[1:], m[1:], ls, color=f"C{i}", lw=1.6, label=f"α = {alpha:g}, {lab}: DMFT")
            ax_a.fill_between(t[1:], np.maximum(m - s, 1e-12)[1:], (m + s)[1:], color=f"C{i}", alpha=0.2, lw=0)
            ms = sim[name].values[0].mean(axis=0)
            ss = sim[name].values[0].std(axis=0, ddof=1) / math.sqrt(seeds)
            ax_a.errorbar(ts[1::2], ms[1::2], yerr=ss[1::2], fmt=mk, ms=3, mfc="none", color=f"C{i}", lw=0.7,
                          label=f"α = {alpha:g}, {lab}: GD, d = {d}")
            if name == "test_loss":
                ax_b.plot(t[1:] / ell, m[1:], "-", color=f"C{i}", lw=1.6, label=f"α = {alpha:g}: DMFT (GD)")
    for j, gf in enumerate(gf_runs):
        alpha = float(gf["init_scale"][0])
        tg = gf["time"].values
        mg = gf["test_loss"].values[0].mean(axis=0)
        sg = gf["test_loss"].values[0].std(axis=0, ddof=1) / math.sqrt(seeds)
        ax_b.errorbar(tg[1:] / math.log(1 / alpha), mg[1:], yerr=sg[1:], fmt="o^"[j % 2], ms=3.5, mfc="none",
                      color=f"C{len(alphas) + j}", lw=0.7, label=f"α = {alpha:g}: GF, d = {d}")
    # lowest error reached in (a)/(b), so the log axes do not waste decades
    lowest = min(float(np.nanmin(th[name].values[0, 1:])) for th in ths for name in ("train_loss", "test_loss"))
    for ax in (ax_a, ax_b):
        ax.axhline(plateau, color="k", ls=":", lw=0.8)
        ax.set(yscale="log", ylim=(0.3 * lowest, 0.2))
    ax_a.text(0.2, plateau * 1.15, "plateau ρ + σ² (β = 0)", fontsize=8)
    ax_a.set(xlabel="time t = η·k (GD, η = 0.1)", ylabel="error (train $E_{tr}$, test $E_{te}$)",
             title=f"(a) search, then descent: n/d = {BASE['ratio']}, ρ = {BASE['sparsity']}, σ = 0")
    ax_a.legend(fontsize=6.8, frameon=False, ncol=2, loc="lower left")
    ax_b.set(xlabel="rescaled time τ = t / log(1/α)", ylabel="test error $E_{te}$ = ‖β − β*‖²/d",
             title="(b) the escape moves to a fixed τ as α → 0")
    ax_b.legend(fontsize=7.5, frameon=False, loc="lower left")

    ax_c.step(np.concatenate([[0.0], jp["taus"], [tau_end]]),
              np.concatenate([jp["train_loss"], [jp["train_loss"][-1]]]), where="post", color="k", lw=2,
              label="α → 0 jump process")
    for k, a in enumerate(flow_alphas):
        ax_c.plot(taus[1:], train_error(flows[a])[1:], "-", color=plt.cm.viridis(k / len(flow_alphas)),
                  lw=1.2, label=f"gradient flow, α = {a:g}")
    for tj in jp["taus"]:
        ax_c.axvline(tj, color="0.8", lw=0.6, zorder=0)
    ax_c.set(yscale="log", ylim=(1e-7, 0.2), xlabel="rescaled time τ = t / log(1/α)",
             ylabel="train error $E_{tr}$ = ‖y − Xβ‖²/n",
             title=f"(c) saddle-to-saddle, explicit instance d = {X.shape[1]}, n = {X.shape[0]}")
    ax_c.legend(fontsize=7.5, frameon=False, loc="upper right")

    ever = np.flatnonzero(np.any(np.abs(jp["betas"]) > 1e-9, axis=0) | (beta_star != 0))
    a_small = flow_alphas[-1]
    for k, i in enumerate(ever):
        color = f"C{k % 10}"
        ax_d.plot(taus, jump_beta[:, i], "--", color=color, lw=1.4)
        ax_d.plot(taus, flows[a_small][:, i], "-", color=color, lw=1.0,
                  label=f"β_{i}" + (f" (β* = {beta_star[i]:g})" if beta_star[i] else " (β* = 0)"))
    ax_d.axhline(0.0, color="k", lw=0.5)
    ax_d.set(xlabel="rescaled time τ = t / log(1/α)", ylabel="coordinate β_i",
             title=f"(d) β_i(τ): jump process (dashed), gradient flow α = {a_small:g}")
    ax_d.legend(fontsize=7.5, frameon=False, ncol=2, loc="lower right")
    fig.savefig(out / "dln_incremental.png", dpi=115)
    plt.close(fig)

    th_all = xr.concat(ths, "init_scale", combine_attrs="drop_conflicts")
    sim_all = xr.concat(sims, "init_scale", combine_attrs="drop_conflicts")
    saddles = make_dataset(
        {"beta": (("time", "i"), jp["betas"]), "train_loss": (("time",), jp["train_loss"]),
         "support_size": (("time",), np.count_nonzero(np.abs(jp["betas"]) > 1e-12, axis=1)),
         "beta_flow": (("init_scale", "tau", "i"), np.stack([flows[a] for a in flow_alphas]))},
        {"time": np.concatenate([[0.0], jp["taus"]]), "init_scale": list(flow_alphas), "tau": taus,
         "i": np.arange(X.shape[1])},
        {"method": "saddle_to_saddle + tiny_alpha_gradient_flow", "time_units": "t / log(1/alpha) (rescaled)",
         "n": X.shape[0], "d": X.shape[1], "teacher_values": list(TEACHER_VALUES), "n_jumps": jp["n_jumps"]},
        model="dln")
    saddles["beta_flow"].attrs["long_name"] = "beta_i(tau) of gradient flow at finite alpha"
    hidyn.save(th_all, out / "dln_incremental_dmft.nc")
    hidyn.save(sim_all, out / "dln_incremental_mc.nc")
    # gradient-flow runs live on their own (τ-proportional) time grids: one file each α
    for gf in gf_runs:
        hidyn.save(gf.squeeze("init_scale"), out / f"dln_incremental_gf_alpha{float(gf['init_scale'][0]):.0e}.nc")
    hidyn.save(saddles, out / "dln_incremental_saddles.nc")
    return {"dmft": th_all, "simulations": sim_all, "gradient_flow": gf_runs, "saddles": saddles}


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--out", default="out")
    parser.add_argument("--engine", default="numpy", choices=("numpy", "jax"), help="DMFT engine")
    args = parser.parse_args()
    main(quick=args.quick, out=args.out, engine=args.engine)
