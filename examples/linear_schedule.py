"""A learning-rate schedule found by gradient through the theory (docs/theory/linear.md §8), checked by Monte-Carlo.

Online SGD on a power-law spectrum (λ_k = k^(−1.5), source b = 1.5), label noise σ = 0.3, B = 4, a budget
of K steps.  ``hidyn.optimize_schedule`` minimises the final expected test loss of the exact recursion
(§2) over all K learning rates by L-BFGS-B on ``jax.grad``; it is compared with the best constant step
and a cosine schedule (peak 0.9 η_max, decayed to 0), in theory (lines) and by SGD at finite d (bands:
mean ± SEM over seeds).  Left: the schedules; right: the test loss.

Run:  python examples/linear_schedule.py [--quick] [--out DIR]
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
    d, steps, seeds = (100, 200, 8) if quick else (500, 1000, 32)
    base = dict(d=d, spectrum="power_law", spectrum_exponent=1.5, teacher="power_law", teacher_exponent=1.5,
                noise=0.3, batch_size=4)
    opt = hidyn.optimize_schedule("linear", steps=steps, **base)
    eta_max = opt["lr_max"]
    schedules = {
        "optimised (jax.grad)": opt["schedule"],
        f"best constant η = {opt['constant_lr']:.3g}": np.full(steps, opt["constant_lr"]),
        "cosine, peak 0.9 η_max": hidyn.models.linear.lr_values(
            hidyn.models.get("linear", lr={"schedule": "cosine", "lr": 0.9 * eta_max, "horizon": steps}, **base),
            steps),
    }
    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(10, 3.9), layout="constrained")
    sims, ths = [], []
    times = np.unique(np.concatenate([[0], np.geomspace(1, steps, 40).round()]))
    for j, (name, lrs) in enumerate(schedules.items()):
        th = hidyn.theory("linear", lr=lrs, times=times, **base)
        sim = hidyn.simulate("linear", lr=lrs, times=times, seeds=seeds, **base)
        m = sim.test_loss.mean("seed")
        s = sim.test_loss.std("seed") / np.sqrt(seeds)
        ax1.plot(np.arange(steps), lrs, color=f"C{j}", label=name)
        ax2.fill_between(sim.time, m - s, m + s, color=f"C{j}", alpha=0.3, lw=0)
        ax2.plot(th.time, th.test_loss, color=f"C{j}", label=name)
        print(f"{name}: final loss theory {float(th.test_loss[-1]):.5f}, MC {float(m[-1]):.5f} ± {float(s[-1]):.5f}")
        label = name.split(" ")[0]
        sims.append(sim.expand_dims(schedule=[label]))
        ths.append(th.expand_dims(schedule=[label]))
    print(f"optimised / best constant final loss: {opt['final_loss'] / opt['constant_loss']:.3f} "
          f"({opt['n_iterations']} L-BFGS-B iterations, {opt['message']})")
    ax1.axhline(eta_max, color="k", ls=":", lw=1, label="stability bound η_max (constant)")
    ax1.set(xlabel="step k", ylabel="η_k", title=f"schedules, B = 4, K = {steps}")
    ax1.legend(fontsize=7, frameon=False)
    ax2.axhline(0.09, color="gray", ls=":", lw=1)
    ax2.set(xscale="log", yscale="log", xlabel="step k", ylabel="test loss",
            title=f"theory (lines) vs SGD, d = {d} ({seeds} seeds)")
    ax2.legend(fontsize=7, frameon=False)
    fig.savefig(out / "linear_schedule.png", dpi=110)
    plt.close(fig)
    sim_all = xr.concat(sims, "schedule", join="outer", combine_attrs="drop_conflicts")
    th_all = xr.concat(ths, "schedule", join="outer", combine_attrs="drop_conflicts")
    hidyn.save(sim_all, out / "linear_schedule_sgd.nc")
    hidyn.save(th_all, out / "linear_schedule_theory.nc")
    return {"optimum": opt, "simulations": sim_all, "theory": th_all}


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--out", default="out")
    args = parser.parse_args()
    main(quick=args.quick, out=args.out)
