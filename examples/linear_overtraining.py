"""Overtraining in linear regression (Advani & Saxe, arXiv:1710.03667): full-batch GD at n/d ∈ {0.5, 1, 2}.

Isotropic Gaussian inputs, random unit teacher, label noise σ = 0.5, w₀ = 0, step η = 0.2.  Test and train
loss vs time t = η·k: the d → ∞ Marchenko–Pastur curves (lines, docs/theory/linear.md §6) over finite-d
GD (bands: mean ± SEM over seeds, X drawn once per seed).  At n = d the test loss falls, then rises
without bound (∝ √t): early stopping matters most there.  A second panel shows the late-time test loss
vs n/d (the peak at n = d) and the effect of a large initialisation (init_scale = 1), never forgotten
when n < d.

Run:  python examples/linear_overtraining.py [--quick] [--out DIR]
"""
from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np


def main(quick: bool = False, out: str | Path = "out") -> dict:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import xarray as xr

    import hidyn
    from hidyn.solvers.closed_form.linear import gd_marchenko_pastur

    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    d, seeds, t_max = (100, 4, 100.0) if quick else (500, 8, 1000.0)
    base = dict(algorithm="gd", spectrum="isotropic", teacher="isotropic", noise=0.5, lr=0.2)
    fig, (ax, ax2) = plt.subplots(1, 2, figsize=(10, 3.9), layout="constrained")
    sims, ths = [], []
    for j, ratio in enumerate((0.5, 1.0, 2.0)):
        sim = hidyn.simulate("linear", d=d, ratio=ratio, seeds=seeds, t_max=t_max, n_times=40, **base)
        th = hidyn.theory("linear", ratio=ratio, t_max=t_max, n_times=200, **base)
        for var, style in (("test_loss", "-"), ("train_loss", ":")):
            m = sim[var].mean("seed")
            s = sim[var].std("seed") / np.sqrt(seeds)
            ax.fill_between(sim.time, m - s, m + s, color=f"C{j}", alpha=0.3, lw=0)
            ax.plot(th.time, th[var], style, color=f"C{j}",
                    label=f"n/d = {ratio:g}" + (" test" if var == "test_loss" else " train"))
        print(f"n/d = {ratio:g}: early stopping at t = {th.attrs['early_stop_time']:.3g}, test loss "
              f"{th.attrs['early_stop_loss']:.4f}; at t = {t_max:g}: theory {float(th.test_loss[-1]):.4f}, "
              f"MC {float(sim.test_loss[:, -1].mean()):.4f} ± {float(sim.test_loss[:, -1].std() / np.sqrt(seeds)):.4f}")
        sims.append(sim.expand_dims(ratio=[ratio]))
        ths.append(th.expand_dims(ratio=[ratio]))
    ax.set(xscale="log", yscale="log", ylim=(1e-2, 10.0), xlabel="t = η·k", ylabel="loss (no ½, noise included)",
           title=f"GD, σ = 0.5: MP theory (lines), d = {d} ({seeds} seeds, bands)")
    ax.legend(fontsize=7, frameon=False, ncol=2)
    ratios = np.linspace(0.35, 3.0, 54 if not quick else 28)   # η = 0.2 < 2/(1 + √(d/n))² needs n/d > 0.32
    for s0, col in ((0.0, "k"), (1.0, "C3")):
        late = [gd_marchenko_pastur(r, 0.2, [int(t_max / 0.2)], e0_norm2=1.0 + s0 ** 2, noise=0.5)["test_loss"][0]
                for r in ratios]
        best = [gd_marchenko_pastur(r, 0.2, np.arange(0, int(t_max / 0.2) + 1, 5), e0_norm2=1.0 + s0 ** 2,
                                    noise=0.5)["test_loss"].min() for r in ratios]
        ax2.plot(ratios, late, "-", color=col, label=f"t = {t_max:g}, init_scale = {s0:g}")
        ax2.plot(ratios, best, "--", color=col, label=f"early stopped, init_scale = {s0:g}")
    ax2.set(yscale="log", xlabel="n/d", ylabel="test loss", title="late-time and early-stopped test loss (theory)")
    ax2.legend(fontsize=7, frameon=False)
    fig.savefig(out / "linear_overtraining.png", dpi=110)
    plt.close(fig)
    sim_all = xr.concat(sims, "ratio", join="outer", combine_attrs="drop_conflicts")
    th_all = xr.concat(ths, "ratio", join="outer", combine_attrs="drop_conflicts")
    hidyn.save(sim_all, out / "linear_overtraining_gd.nc")
    hidyn.save(th_all, out / "linear_overtraining_theory.nc")
    return {"simulations": sim_all, "theory": th_all}


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--out", default="out")
    args = parser.parse_args()
    main(quick=args.quick, out=args.out)
