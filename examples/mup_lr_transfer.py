"""Learning-rate transfer under μP, not under SP or NTP, in a deep linear network (deep_linear.md §5).

Hayou (arXiv:2511.01734), Fig. "loss vs learning rate across widths": train loss after k GD steps as a
function of η for several widths, in three parametrisations (top row), and the optimal η against the
width (bottom row, mean ± SEM over seeds).  Under μP the curves collapse on the n = ∞ theory (black,
deep_linear.md §4) and the optimum stays put; under NTP the optimum settles too but on the lazy kernel
curve (no feature learning); under SP it drifts like 1/n (the n = ∞ limit diverges at fixed η, §3).

Run:  python examples/mup_lr_transfer.py [--quick] [--out DIR]
"""
from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np

PANELS = (("sp", "SP"), ("ntp", "NTP"), ("mup", "μP"))


def main(quick: bool = False, out: str | Path = "out") -> dict:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    import hidyn

    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    widths = [16, 64] if quick else [64, 128, 256, 512, 1024, 2048]
    n_lr = 5 if quick else 17
    seeds = 2 if quick else 6
    # k = 3: the μP loss after k steps has one dominant minimum in η here; at k ≳ 5 several near-equal
    # local minima appear (oscillating large-η dynamics) and the argmin can hop between them
    steps = 2 if quick else 3
    common = dict(depth=1 if quick else 2, d_in=8 if quick else 16, n_samples=32 if quick else 64, noise=0.1,
                  steps=steps, seeds=seeds)
    grids = {"sp": np.geomspace(1e-4, 0.3, n_lr), "ntp": np.geomspace(0.1, 10.0, n_lr),
             "mup": np.geomspace(0.1, 3.0, n_lr)}
    results = {}
    fig, axes = plt.subplots(2, 3, figsize=(12, 6.4), layout="constrained")
    colors = plt.cm.viridis(np.linspace(0.1, 0.9, len(widths)))
    for col, (par, title) in enumerate(PANELS):
        ds = hidyn.lr_transfer("deep_linear", widths=widths, lrs=grids[par], parametrization=par, **common)
        hidyn.save(ds, out / f"mup_lr_transfer_{par}.nc")
        results[par] = ds
        ax = axes[0, col]
        for k, n in enumerate(widths):
            ax.errorbar(ds.lr, ds.loss_mean.sel(width=n), yerr=ds.loss_sem.sel(width=n), fmt="o-", ms=3,
                        color=colors[k], label=f"n = {n}")
        if np.isfinite(ds.loss_theory).any():
            ax.plot(ds.lr, ds.loss_theory, "k-", lw=2, label="n = ∞ theory")
        ax.set(xscale="log", yscale="log", xlabel="learning rate η", title=f"{title}: train loss after {steps} steps")
        ax.legend(fontsize=7, frameon=False)
        ax = axes[1, col]
        ax.errorbar(widths, ds.optimal_lr_mean, yerr=ds.optimal_lr_sem, fmt="o-", color="C3",
                    label="Monte-Carlo argmin")
        if np.isfinite(ds.attrs.get("optimal_lr_theory", np.nan)):
            ax.axhline(ds.attrs["optimal_lr_theory"], color="k", label="n = ∞ theory (argmin)")
            ax.axhline(ds.attrs["optimal_lr_theory_grid"], color="k", ls="--",
                       label="n = ∞ theory, same grid estimator")
        if par == "sp":
            ax.plot(widths, ds.optimal_lr_mean.values[0] * widths[0] / np.asarray(widths), "k:", label="∝ 1/n")
        ax.set(xscale="log", yscale="log", xlabel="width n", ylabel="optimal η")
        ax.legend(fontsize=7, frameon=False)
        drift = float(np.log(ds.optimal_lr_mean.values[-1] / ds.optimal_lr_mean.values[0])
                      / np.log(widths[-1] / widths[0]))
        print(f"{title}: optimal lr per width {np.round(ds.optimal_lr_mean.values, 4)}, "
              f"log-log slope {drift:+.3f}, theory {ds.attrs.get('optimal_lr_theory', np.nan):.4g}")
    fig.savefig(out / "mup_lr_transfer.png", dpi=110)
    plt.close(fig)
    return results


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--out", default="out")
    args = parser.parse_args()
    main(quick=args.quick, out=args.out)
