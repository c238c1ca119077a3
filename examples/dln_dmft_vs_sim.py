"""DMFT of a diagonal linear network against finite-d gradient descent (Nishiyama & Imaizumi, arXiv:2510.01930).

Proportional regime n/d = 0.5, sparse rademacher teacher (ρ = 1/8), label noise σ = 0.1, init scale
α = 0.3, GD with step η = 0.1 (docs/theory/dln.md §2).  The one-pass DMFT (docs/theory/dln.md §5) gives
the d → ∞ train and
test errors with a Monte-Carlo standard error; finite-d GD at two dimensions (mean ± SEM over seeds)
sits on it, and its deviation shrinks as d grows (fluctuations O(d^{-1/2}), docs/theory/dln.md §10 pitfall 9).

Left: train error E_tr = ‖y − Xβ‖²/n and test error E_te = ‖β − β*‖²/d + σ² against t = η·k; DMFT lines
with their ± SEM band, finite-d means ± SEM as markers.  Right: relative deviation finite-d − DMFT for
both dimensions (bars: SEM over seeds; bands: the DMFT's Monte-Carlo SEM around 0).

Run:  python examples/dln_dmft_vs_sim.py            (d = 1024, 4096; t ≤ 15; about 2 minutes on 2 cores)
      python examples/dln_dmft_vs_sim.py --quick    (d = 256, 512; t ≤ 4; seconds)
Writes dln_dmft_vs_sim_theory.nc, dln_dmft_vs_sim_mc.nc and dln_dmft_vs_sim.png into --out.
"""
from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np

# ρ = 1/8 puts exactly ρd non-zeros in the teacher at every power-of-two d, so one DMFT (at ρ) describes
# all the dimensions without the O(1/d) offset of rounding ρd
PARAMS = dict(ratio=0.5, sparsity=0.125, teacher="rademacher", noise=0.1, init_scale=0.3, lr=0.1, algorithm="gd")


def main(quick: bool = False, out: str | Path = "out") -> dict:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import xarray as xr

    import hidyn

    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    dims = (256, 512) if quick else (1024, 4096)
    seeds = 4 if quick else 8
    t_max = 4.0 if quick else 15.0
    n_samples = 4000 if quick else 16000

    # d → ∞: the DMFT on its own grid t_k = η k (method "auto" is the DMFT for GD on a training set)
    th = hidyn.theory("dln", t_max=t_max, n_samples=n_samples, seed=0, **PARAMS)
    print(f"DMFT: {th.attrs['dmft_n_steps']} steps, K = {n_samples} samples, "
          f"{th.attrs['wall_time_s']:.1f} s")
    times = np.concatenate([[0.0], np.geomspace(PARAMS["lr"], t_max, 30 if quick else 40)])
    sims = []
    for d in dims:
        sim = hidyn.simulate("dln", d=d, seeds=seeds, times=times, **PARAMS)
        print(f"\nfinite-d GD, d = {d}, {seeds} seeds ({sim.attrs['wall_time_s']:.1f} s)")
        hidyn.compare(sim, th).summary()
        sims.append(sim)

    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(11, 4.2), layout="constrained")
    t_th = th["time"].values
    markers = ("o", "s", "^", "D")
    for j, (name, label) in enumerate((("train_loss", "train error $E_{tr}$"),
                                       ("test_loss", "test error $E_{te}$"))):
        color = f"C{j}"
        mean, sem = th[name].values, th[f"{name}_sem"].values
        ax1.plot(t_th[1:], mean[1:], "-", color=color, lw=1.6, label=f"{label}: DMFT (d → ∞)")
        ax1.fill_between(t_th[1:], (mean - sem)[1:], (mean + sem)[1:], color=color, alpha=0.25, lw=0)
        for i, (d, sim) in enumerate(zip(dims, sims)):
            t = sim["time"].values
            m = sim[name].mean("seed").values
            s = sim[name].std("seed", ddof=1).values / np.sqrt(sim.sizes["seed"])
            ax1.errorbar(t[1:], m[1:], yerr=s[1:], fmt=markers[i], ms=3.5, mfc="none", color=color, lw=0.8,
                         label=f"{label}: GD, d = {d}")
            # deviation from the DMFT interpolated onto the simulation's times, relative to the theory;
            # bars: the seed SEM of the finite-d mean (the DMFT's own SEM is the band around 0)
            th_at = np.interp(t, t_th, mean)
            ax2.errorbar(t[1:] * (1 + 0.03 * i), ((m - th_at) / th_at)[1:], yerr=(s / th_at)[1:],
                         fmt=markers[i], ms=3.5, mfc="none", color=color, lw=0.8, label=f"{label}, d = {d}")
        rel = (sem / mean)[1:]
        ax2.fill_between(t_th[1:], -rel, rel, color=color, alpha=0.15, lw=0,
                         label=f"{label}: DMFT ± SEM (relative)")
    ax1.set(xscale="log", yscale="log", xlabel="time t = η·k (GD steps × step size)",
            ylabel="error (mean squared, no ½)",
            title=f"DLN GD, n/d = {PARAMS['ratio']}, ρ = {PARAMS['sparsity']}, σ = {PARAMS['noise']}, "
                  f"α = {PARAMS['init_scale']}")
    ax1.legend(fontsize=7.5, frameon=False, loc="lower left")
    ax2.axhline(0.0, color="k", lw=0.8)
    ax2.set(xscale="log", xlabel="time t = η·k", ylabel="(finite d − DMFT) / DMFT",
            title="finite d − DMFT, relative to DMFT")
    lo, hi = ax2.get_ylim()
    ax2.set_ylim(lo, hi + 0.45 * (hi - lo))  # headroom for the legend
    ax2.legend(fontsize=7, frameon=False, ncol=2, loc="upper center")
    fig.savefig(out / "dln_dmft_vs_sim.png", dpi=120)
    plt.close(fig)

    sim_all = xr.concat([s.expand_dims(d=[d]) for d, s in zip(dims, sims)], "d", combine_attrs="drop_conflicts")
    hidyn.save(th, out / "dln_dmft_vs_sim_theory.nc")
    hidyn.save(sim_all, out / "dln_dmft_vs_sim_mc.nc")
    return {"theory": th, "simulations": sim_all}


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--out", default="out")
    args = parser.parse_args()
    main(quick=args.quick, out=args.out)
