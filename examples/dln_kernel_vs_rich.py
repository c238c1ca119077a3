"""Kernel vs rich regimes of the diagonal linear network (Woodworth et al., COLT 2020, arXiv:2002.09277).

Population setting (fresh data, ratio=None): gradient flow from init scale α.  Large α is the kernel
(lazy) regime: every coordinate relaxes exponentially at once.  Small α is the rich regime: a plateau
of length ≈ log(1/α)/|β*_i| (docs/theory/dln.md §3, escape time), then a sharp, coordinate-wise (sparse) descent.
Left: learning curves, closed form (lines) over finite-d Monte-Carlo (markers, mean ± SEM).
Right: test error at fixed training times as a function of α — the price of the rich regime's
sparsity bias is time.

Run:  python examples/dln_kernel_vs_rich.py [--quick] [--out DIR]
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

    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    d = 256 if quick else 2048
    seeds = 4 if quick else 8
    alphas = [1e-3, 1e-2, 0.1, 1.0] if quick else [1e-4, 1e-3, 1e-2, 0.1, 0.5, 2.0]
    common = dict(ratio=None, algorithm="gf", sparsity=0.1, teacher="rademacher", noise=0.0)
    checkpoints = [2.0, 10.0, 40.0]
    times = np.union1d(np.concatenate([[0.0], np.geomspace(0.04, 40.0, 30 if quick else 60)]), checkpoints)
    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(10.5, 4), layout="constrained")
    sims, ths = [], []
    for i, alpha in enumerate(alphas):
        sim = hidyn.simulate("dln", d=d, seeds=seeds, init_scale=alpha, times=times, **common)
        th = hidyn.theory("dln", init_scale=alpha, t_max=40.0, n_times=300, **common)
        cmp = hidyn.compare(sim)
        print(f"alpha={alpha:g}: theory vs MC max |residual| on test_loss = "
              f"{float(np.abs(cmp.data['test_loss_residual']).max()):.2e} (passed: {cmp.passed})")
        t = sim["time"].values
        ax1.plot(th["time"][1:], th["test_loss"][1:], "-", color=f"C{i}", label=f"α = {alpha:g}")
        mean = sim["test_loss"].mean("seed").values
        sem = sim["test_loss"].std("seed").values / np.sqrt(seeds)
        ax1.errorbar(t[1::3], mean[1::3], yerr=sem[1::3], fmt="o", ms=3, color=f"C{i}")
        sims.append(sim.expand_dims(init_scale=[alpha]))
        ths.append(th.expand_dims(init_scale=[alpha]))
    ax1.set(xscale="log", yscale="log", ylim=(1e-8, 0.3), xlabel="time t", ylabel="test error ‖β − β*‖²/d",
            title=f"population GF, d = {d}: closed form (lines) vs MC")
    ax1.legend(fontsize=8, frameon=False)
    fine = np.geomspace(1e-5, 3.0, 60)
    for j, t_fix in enumerate(checkpoints):
        err = [float(hidyn.theory("dln", init_scale=a, times=[0.0, t_fix], **common)["test_loss"][-1])
               for a in fine]
        ax2.plot(fine, err, "-", color=f"C{j}", label=f"t = {t_fix:g} (theory)")
        mc = [float(s["test_loss"].sel(time=t_fix).mean()) for s in sims]
        ax2.plot(alphas, mc, "o", color=f"C{j}", label=f"t = {t_fix:g} (MC)")
    ax2.set(xscale="log", yscale="log", ylim=(1e-8, 0.3), xlabel="initialisation scale α", ylabel="test error",
            title="rich (small α) regime pays in time")
    ax2.legend(fontsize=8, frameon=False)
    fig.savefig(out / "dln_kernel_vs_rich.png", dpi=110)
    plt.close(fig)
    sim_all = xr.concat(sims, "init_scale", combine_attrs="drop_conflicts")
    th_all = xr.concat(ths, "init_scale", combine_attrs="drop_conflicts")
    hidyn.save(sim_all, out / "dln_kernel_vs_rich_mc.nc")
    hidyn.save(th_all, out / "dln_kernel_vs_rich_theory.nc")
    return {"simulations": sim_all, "theory": th_all}


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--out", default="out")
    args = parser.parse_args()
    main(quick=args.quick, out=args.out)
