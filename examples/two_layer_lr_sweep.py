"""Plateau escape time against the learning rate, through ``hidyn.sweep`` (docs/theory/teacher_student.md §6.1).

K = M = 2, erf.  For each η, online SGD at finite d from a random start (per-seed escape times: first
t with ε_g below half the plateau height ε_sym(η)), and the ODE started from the simulations' mean
initial overlaps on a fine η grid.  Since the plateau's unstable eigenvalue λ₊ ∝ η, t_exit ∝ 1/η:
η·t_exit is nearly constant.

Run:  python examples/two_layer_lr_sweep.py [--quick] [--out DIR]
"""
from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np


def main(quick: bool = False, out: str | Path = "out") -> dict:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    import hidyn
    from hidyn.solvers.ode.two_layer import escape_time, plateau_fixed_point

    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    lrs = [0.5, 1.0] if quick else [0.5, 0.75, 1.0, 1.5, 2.0]
    d, seeds = (200, 4) if quick else (500, 8)
    t_max = 300.0 if quick else 500.0
    sims = hidyn.sweep(hidyn.simulate, {"lr": lrs}, model="two_layer", d=d, K=2, M=2, activation="erf",
                       init_scale=0.5, seeds=seeds, t_max=t_max, n_times=120)
    hidyn.save(sims, out / "two_layer_lr_sweep.nc")
    t = sims["time"].values
    plateau = {lr: plateau_fixed_point(2, lr)["test_loss"] for lr in lrs}
    mc = np.array([[escape_time(t, sims["test_loss"].sel(lr=lr, seed=s).values, plateau[lr])
                    for s in sims["seed"].values] for lr in lrs])
    # theory: the ODE from the mean initial overlaps of the simulations (same init for every η)
    first = sims.isel(time=0)
    init = {"Q": first["Q"].mean(("lr", "seed")).values, "R": first["R"].mean(("lr", "seed")).values}
    fine = np.geomspace(min(lrs) * 0.8, max(lrs) * 1.2, 8 if quick else 20)
    theory_t = []
    for lr in fine:
        th = hidyn.theory("two_layer", K=2, M=2, lr=float(lr), init=init, t_max=4 * t_max, n_times=600)
        theory_t.append(escape_time(th["time"].values, th["test_loss"].values,
                                    plateau_fixed_point(2, float(lr))["test_loss"]))
    theory_t = np.array(theory_t)
    med = np.nanmedian(mc, axis=1)
    q25, q75 = np.nanpercentile(mc, 25, axis=1), np.nanpercentile(mc, 75, axis=1)
    for lr, m in zip(lrs, med):
        print(f"eta = {lr:g}: median escape t = {m:.1f}, eta*t = {lr * m:.1f}")
    fig, ax = plt.subplots(figsize=(5.2, 3.8), layout="constrained")
    ax.plot(fine, theory_t, "-", color="C0", label="ODE (mean initial overlaps)")
    ax.errorbar(lrs, med, yerr=[med - q25, q75 - med], fmt="o", color="C3",
                label=f"SGD d = {d}: median, quartiles ({seeds} seeds)")
    ax.plot(fine, theory_t[len(fine) // 2] * fine[len(fine) // 2] / fine, ":", color="k", label="∝ 1/η")
    ax.set(xscale="log", yscale="log", xlabel="learning rate η", ylabel="plateau escape time t_exit",
           title="soft committee machine K = M = 2, erf")
    ax.legend(fontsize=8, frameon=False)
    fig.savefig(out / "two_layer_lr_sweep.png", dpi=110)
    plt.close(fig)
    return {"simulations": sims, "escape_mc": mc, "escape_theory": theory_t}


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--out", default="out")
    args = parser.parse_args()
    main(quick=args.quick, out=args.out)
