"""Batch size at fixed compute for online SGD on power-law features (docs/theory/linear.md §5).

λ_k = k^(−1.5), source b = 1.5 (signal variance 1), no label noise, a budget of N samples = steps × B.  For
each B the constant step is the best one for that budget (bounded search below the stability bound η_max(B)
on the exact recursion, §3, §5).  Left: test loss vs samples seen, exact recursion (lines) over SGD at finite d
(bands: mean ± SEM over seeds).  Right: the final loss vs B; the compute-optimal B is the smallest here.

Run:  python examples/linear_batch_size.py [--quick] [--out DIR]
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
    from hidyn.families.linear import initial_mode_errors
    from hidyn.models.linear import eigenvalues
    from hidyn.solvers.closed_form.linear import compute_optimal_batch

    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    d, samples, seeds = (200, 2048, 8) if quick else (1000, 16384, 16)
    base = dict(d=d, spectrum="power_law", spectrum_exponent=1.5, teacher="power_law", teacher_exponent=1.5,
                noise=0.0)
    spec = hidyn.models.get("linear", **base)
    lam, v0 = eigenvalues(spec), initial_mode_errors(spec)
    grid = [1, 2, 4, 8, 16, 32, 64, 128, 256]
    opt = compute_optimal_batch(lam, v0, samples, grid)
    print("B:          ", grid)
    print("best lr:    ", np.round(opt["best_lr"], 3).tolist())
    print("final loss: ", np.round(opt["final_loss"], 5).tolist())
    print(f"compute-optimal batch size at N = {samples} samples: B* = {opt['optimal_batch']}")
    fig, (ax, ax2) = plt.subplots(1, 2, figsize=(10, 3.9), layout="constrained")
    sims = []
    for j, B in enumerate([1, 4, 16, 64]):
        lr = float(opt["best_lr"][grid.index(B)])
        steps = samples // B
        times = np.unique(np.concatenate([[0], np.geomspace(1, steps, 30).round()]))
        sim = hidyn.simulate("linear", batch_size=B, lr=lr, times=times, seeds=seeds, **base)
        th = hidyn.theory("linear", batch_size=B, lr=lr, times=np.arange(steps + 1), **base)
        m = sim.test_loss.mean("seed")
        s = sim.test_loss.std("seed") / np.sqrt(seeds)
        ax.fill_between(sim.time * B, m - s, m + s, color=f"C{j}", alpha=0.3, lw=0)
        ax.plot(th.time * B, th.test_loss, color=f"C{j}", label=f"B = {B}, η = {lr:.3g}")
        sims.append(sim.expand_dims(batch=[B]))
    ax.set(xscale="log", yscale="log", xlabel="samples seen k·B", ylabel="test loss",
           title=f"d = {d}, best constant η per B ({seeds} seeds)")
    ax.legend(fontsize=7, frameon=False)
    ax2.plot(grid, opt["final_loss"], "o-", color="k", label=f"final loss at N = {samples}")
    ax2.axvline(opt["optimal_batch"], color="C3", ls=":", label=f"compute-optimal B* = {opt['optimal_batch']}")
    ax2.set(xscale="log", yscale="log", xlabel="batch size B", ylabel="test loss after N samples",
            title="compute-optimal batch size (exact recursion)")
    ax2.legend(fontsize=7, frameon=False)
    fig.savefig(out / "linear_batch_size.png", dpi=110)
    plt.close(fig)
    sim_all = xr.concat(sims, "batch", join="outer", combine_attrs="drop_conflicts")
    hidyn.save(sim_all, out / "linear_batch_size_sgd.nc")
    table = xr.Dataset({"final_loss": ("batch", opt["final_loss"]), "best_lr": ("batch", opt["best_lr"]),
                        "lr_max": ("batch", opt["lr_max"])}, coords={"batch": grid},
                       attrs={"samples": samples, "optimal_batch": opt["optimal_batch"]})
    table.to_netcdf(out / "linear_batch_size_optimum.nc", engine="h5netcdf")
    return {"optimum": opt, "simulations": sim_all}


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--out", default="out")
    args = parser.parse_args()
    main(quick=args.quick, out=args.out)
