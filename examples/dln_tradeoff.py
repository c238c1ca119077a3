"""Convergence speed vs generalisation of a diagonal linear network as the init scale α varies (docs/theory/dln.md §6).

Nishiyama & Imaizumi (arXiv:2510.01930) find a trade-off: a smaller initialisation makes the training
loss converge more slowly (a longer search phase, then a coordinate-by-coordinate descent) but gives a
better limiting test error (a stronger ℓ1-type implicit bias, docs/theory/dln.md §4).  Setting of docs/theory/dln.md §6:
n/d = 0.5, ρ = 0.1 (rademacher teacher), no label noise, GD with η = 0.1, α ∈ {1, 0.3, 0.1, 0.03}.

* Speed: the first time t at which the train error E_tr = ‖y − Xβ‖²/n falls below 1e-3, from the DMFT
  (docs/theory/dln.md §5; its Monte-Carlo error is carried through the slope of E_tr) and from finite-d GD.
* Generalisation: the limiting (t → ∞) test error E_te = ‖β − β*‖²/d, from the proportional-limit fixed
  point of docs/theory/dln.md §4 and from the finite-d interpolators that gradient flow converges to (dual Newton
  on explicit instances).  At the end of the DMFT horizon the small-α runs are still drifting towards
  it (docs/theory/dln.md §10 pitfall 10), which is why the limit is taken from the fixed point.

Left: train error against t for each α (DMFT lines ± SEM, finite-d GD markers ± SEM).
Right: the trade-off plane, time to E_tr < 1e-3 against the limiting test error.

Run:  python examples/dln_tradeoff.py [--quick] [--out DIR] [--engine numpy|jax]
      (full: K = 16 000 DMFT samples per α, d = 1024; several minutes on 2 cores with numpy, less with
      --engine jax.  --quick: K = 2000, d = 256, jackknife error bars; about half a minute.)
Writes dln_tradeoff_theory.nc, dln_tradeoff_mc.nc, dln_tradeoff_limits.nc and dln_tradeoff.png.
"""
from __future__ import annotations

import argparse
import math
from pathlib import Path

import numpy as np

ALPHAS = (1.0, 0.3, 0.1, 0.03)
BASE = dict(ratio=0.5, sparsity=0.1, teacher="rademacher", noise=0.0, lr=0.1, algorithm="gd")
THRESHOLD = 1e-3
T_MAX = 16.0  # the α = 0.03 run crosses 1e-3 at t ≈ 14 (d = 1024)


def crossing_time(t, loss, sem=None, level: float = THRESHOLD):
    """First time the curve falls below ``level`` (log-linear interpolation) and its standard error.

    The error is the curve's standard error at the crossing divided by the slope |d log E/dt| there,
    i.e. the horizontal uncertainty of a curve known to ± sem vertically.  NaN if it never crosses.
    """
    loss = np.asarray(loss, dtype=np.float64)
    below = np.flatnonzero(loss < level)
    if below.size == 0 or below[0] == 0:
        return math.nan, math.nan
    i = below[0]
    y0, y1 = math.log(loss[i - 1]), math.log(loss[i])
    frac = (y0 - math.log(level)) / (y0 - y1)
    tc = t[i - 1] + frac * (t[i] - t[i - 1])
    if sem is None:
        return tc, math.nan
    slope = abs(y1 - y0) / (t[i] - t[i - 1])  # |d log E / dt|
    rel_sem = (sem[i - 1] * (1 - frac) + sem[i] * frac) / level
    return tc, rel_sem / slope


def interpolator_test_errors(alpha: float, d: int, seeds: int, rng_seed: int = 7) -> np.ndarray:
    """Test error ‖β_∞ − β*‖²/d of the finite-d gradient-flow limit on ``seeds`` random instances."""
    from hidyn.models.dln import DLNSpec, initial_pq
    from hidyn.solvers.closed_form.dln_limits import implicit_bias_interpolator

    p0, q0 = initial_pq(DLNSpec(d=d, init_scale=alpha, **BASE))
    n = int(round(BASE["ratio"] * d))
    out = []
    for s in range(seeds):
        rng = np.random.default_rng([rng_seed, s])
        X = rng.standard_normal((n, d)) / math.sqrt(d)
        beta_star = np.zeros(d)
        supp = rng.choice(d, int(round(BASE["sparsity"] * d)), replace=False)
        beta_star[supp] = rng.choice([-1.0, 1.0], supp.size)
        y = X @ beta_star  # σ = 0
        beta = implicit_bias_interpolator(X, y, p0=p0, q0=q0)["beta"]
        out.append(np.mean((beta - beta_star) ** 2) + BASE["noise"] ** 2)
    return np.array(out)


def main(quick: bool = False, out: str | Path = "out", engine: str = "numpy") -> dict:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import xarray as xr

    import hidyn

    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    d = 256 if quick else 1024
    seeds = 3 if quick else 8
    dmft_opts = (dict(n_samples=2000, error_method="jackknife") if quick else dict(n_samples=16000))
    times = np.concatenate([[0.0], np.linspace(BASE["lr"], T_MAX, 40 if quick else 80)])

    ths, sims, rows = [], [], []
    for alpha in ALPHAS:
        th = hidyn.theory("dln", t_max=T_MAX, init_scale=alpha, seed=1, engine=engine, **dmft_opts, **BASE)
        sim = hidyn.simulate("dln", d=d, seeds=seeds, times=times, init_scale=alpha, **BASE)
        fp = hidyn.theory("dln", method="fixed_point", init_scale=alpha, **BASE)
        t_th = th["time"].values
        tc, tc_sem = crossing_time(t_th, th["train_loss"].values, th["train_loss_sem"].values)
        t_sim = sim["time"].values
        tc_fd = np.array([crossing_time(t_sim, row)[0] for row in sim["train_loss"].values])
        te_fd = interpolator_test_errors(alpha, d, seeds)
        rows.append(dict(alpha=alpha, t_dmft=tc, t_dmft_sem=tc_sem,
                         t_fd=np.nanmean(tc_fd), t_fd_sem=np.nanstd(tc_fd, ddof=1) / math.sqrt(seeds),
                         te_fixed_point=float(fp["test_loss"].values[0]),
                         te_dmft_end=float(th["test_loss"].values[-1]),
                         te_dmft_end_sem=float(th["test_loss_sem"].values[-1]),
                         te_fd=te_fd.mean(), te_fd_sem=te_fd.std(ddof=1) / math.sqrt(seeds)))
        r = rows[-1]
        print(f"α = {alpha:5g}: t(E_tr < {THRESHOLD:g}) DMFT {tc:6.2f} ± {tc_sem:.2f}, GD d={d} "
              f"{r['t_fd']:6.2f} ± {r['t_fd_sem']:.2f};  E_te(∞) fixed point {r['te_fixed_point']:.5f}, "
              f"interpolators d={d} {r['te_fd']:.5f} ± {r['te_fd_sem']:.5f};  E_te(t={T_MAX:g}) DMFT "
              f"{r['te_dmft_end']:.5f}")
        ths.append(th.expand_dims(init_scale=[alpha]))
        sims.append(sim.expand_dims(init_scale=[alpha]))

    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(11.5, 4.4), layout="constrained")
    for i, (alpha, th, sim) in enumerate(zip(ALPHAS, ths, sims)):
        color = f"C{i}"
        t, m, s = th["time"].values, th["train_loss"].values[0], th["train_loss_sem"].values[0]
        ax1.plot(t[1:], m[1:], "-", color=color, lw=1.6, label=f"α = {alpha:g}: DMFT")
        ax1.fill_between(t[1:], np.maximum(m - s, 1e-12)[1:], (m + s)[1:], color=color, alpha=0.25, lw=0)
        ts = sim["time"].values
        ms = sim["train_loss"].values[0].mean(axis=0)
        ss = sim["train_loss"].values[0].std(axis=0, ddof=1) / math.sqrt(seeds)
        ax1.errorbar(ts[1::2], ms[1::2], yerr=ss[1::2], fmt="o", ms=3, mfc="none", color=color, lw=0.7,
                     label=f"α = {alpha:g}: GD, d = {d}")
    ax1.axhline(THRESHOLD, color="k", ls="--", lw=0.8)
    ax1.text(0.3, THRESHOLD * 1.3, f"E_tr = {THRESHOLD:g}", fontsize=8)
    ax1.set(yscale="log", xlabel="time t = η·k (GD, η = 0.1)", ylabel="train error $E_{tr}$ = ‖y − Xβ‖²/n",
            title=f"n/d = {BASE['ratio']}, ρ = {BASE['sparsity']}, σ = 0: smaller α trains slower",
            ylim=(1e-6, 0.2))
    ax1.legend(fontsize=7, frameon=False, ncol=2, loc="lower right")

    tc = np.array([r["t_dmft"] for r in rows])
    te = np.array([r["te_fixed_point"] for r in rows])
    ax2.plot(tc, te, "-", color="0.6", lw=1, zorder=1)
    for i, r in enumerate(rows):
        color = f"C{i}"
        ax2.errorbar(r["t_dmft"], r["te_fixed_point"], xerr=r["t_dmft_sem"], fmt="o", ms=8, color=color,
                     label="DMFT time, fixed-point limit (d → ∞)" if i == 0 else None, zorder=3)
        ax2.errorbar(r["t_fd"], r["te_fd"], xerr=r["t_fd_sem"], yerr=r["te_fd_sem"], fmt="s", ms=6,
                     mfc="none", color=color, label=f"GD time, GF interpolator, d = {d}" if i == 0 else None,
                     zorder=3)
        ax2.annotate(f"α = {r['alpha']:g}", (r["t_dmft"], r["te_fixed_point"]), textcoords="offset points",
                     xytext=(6, -14), fontsize=9, color=color)
    l2 = BASE["sparsity"] * (1 - BASE["ratio"])  # min-ℓ2 interpolator risk, the α → ∞ limit (σ = 0)
    ax2.axhline(l2, color="k", ls=":", lw=0.8)
    ax2.text(0.98, l2 * 1.08, "min-ℓ2 interpolator (α → ∞): ρ(1 − δ)", fontsize=8, ha="right",
             transform=ax2.get_yaxis_transform())
    ax2.margins(x=0.25, y=0.15)
    ax2.set(xscale="log", yscale="log", xlabel=f"time to reach E_tr < {THRESHOLD:g} (t = η·k)",
            ylabel="limiting test error $E_{te}(t → ∞)$ = ‖β − β*‖²/d",
            title="trade-off: fast convergence ↔ worse generalisation")
    ax2.legend(fontsize=8, frameon=False, loc="lower left")
    fig.savefig(out / "dln_tradeoff.png", dpi=120)
    plt.close(fig)

    th_all = xr.concat(ths, "init_scale", combine_attrs="drop_conflicts")
    sim_all = xr.concat(sims, "init_scale", combine_attrs="drop_conflicts")
    limits = hidyn.results.make_dataset(
        {"time_to_train_threshold": (("init_scale",), tc),
         "time_to_train_threshold_sem": (("init_scale",), [r["t_dmft_sem"] for r in rows]),
         "time_to_train_threshold_finite_d": (("init_scale",), [r["t_fd"] for r in rows]),
         "test_loss": (("time", "init_scale"), [te]),
         "test_loss_finite_d": (("time", "init_scale"), [[r["te_fd"] for r in rows]]),
         "test_loss_finite_d_sem": (("time", "init_scale"), [[r["te_fd_sem"] for r in rows]])},
        {"time": [np.inf], "init_scale": list(ALPHAS)},
        {"method": "dmft crossing time + fixed point / finite-d interpolators", "threshold": THRESHOLD,
         "d_finite": d, "n_seeds": seeds, **{k: v for k, v in BASE.items()}}, model="dln")
    for name, desc in (("time_to_train_threshold", "first t with DMFT train error below threshold"),
                       ("time_to_train_threshold_finite_d", "first t with finite-d GD train error below "
                                                            "threshold (seed mean)"),
                       ("test_loss", "fixed-point test error at t = infinity (d -> infinity)"),
                       ("test_loss_finite_d", "test error of finite-d gradient-flow interpolators")):
        limits[name].attrs["long_name"] = desc
    hidyn.save(th_all, out / "dln_tradeoff_theory.nc")
    hidyn.save(sim_all, out / "dln_tradeoff_mc.nc")
    hidyn.save(limits, out / "dln_tradeoff_limits.nc")
    return {"theory": th_all, "simulations": sim_all, "limits": limits, "rows": rows}


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--out", default="out")
    parser.add_argument("--engine", default="numpy", choices=("numpy", "jax"), help="DMFT engine")
    args = parser.parse_args()
    main(quick=args.quick, out=args.out, engine=args.engine)
