"""Asymptotic error of online SGD with output noise: ε_g ∝ η σ² (Saad & Solla, NIPS 1996; Goldt et al. 2019).

K = M = 2, erf, T = I, v = A = 1, σ = 0.5, first layer trained, started at the teacher (Q = R = I).
Late-time ε_g from the ODE (line) and from SGD at finite d (points, mean ± SEM over seeds and over the
last saved times) against the leading-order prediction ε* = ησ²K/(2√3π) (docs/theory/teacher_student.md §6.2).

Run:  python examples/two_layer_noise_floor.py [--quick] [--out DIR]
"""
from __future__ import annotations

import argparse
import math
from pathlib import Path

import numpy as np


def main(quick: bool = False, out: str | Path = "out") -> dict:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import xarray as xr

    import hidyn
    from hidyn.solvers.ode.two_layer import noise_floor

    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    K, sigma = 2, 0.5
    init = {"Q": np.eye(K), "R": np.eye(K)}
    lrs_theory = np.geomspace(0.01, 1.0, 12 if quick else 25)
    floor_ode = []
    for lr in lrs_theory:
        th = hidyn.theory("two_layer", K=K, M=K, lr=float(lr), noise=sigma, init=init, times=[0.0, 40.0 / lr])
        floor_ode.append(float(th["test_loss"][-1]))
    lrs_mc = [0.1, 0.5] if quick else [0.05, 0.1, 0.2, 0.5, 1.0]
    d, seeds = (200, 4) if quick else (500, 8)
    mc_mean, mc_sem, sims = [], [], []
    for lr in lrs_mc:
        t_end = 20.0 / lr if not quick else 10.0 / lr  # the floor is reached by t ≈ 10/η
        sim = hidyn.simulate("two_layer", d=d, K=K, M=K, lr=lr, noise=sigma, init=init, seeds=seeds,
                             times=np.linspace(0.0, t_end, 41))
        late = sim["test_loss"].isel(time=slice(-10, None)).mean("time")  # stationary: average late times
        mc_mean.append(float(late.mean()))
        mc_sem.append(float(late.std() / math.sqrt(seeds)))
        sims.append(sim.drop_vars(["Q", "R", "v"]).expand_dims(lr=[lr]))
    leading = np.array([noise_floor(lr, sigma, np.ones(K), np.eye(K)) for lr in lrs_theory])
    for lr, e in zip(lrs_theory[:3], floor_ode[:3]):
        print(f"eta = {lr:.3g}: ODE floor / (eta sigma^2) = {e / (lr * sigma ** 2):.5f} "
              f"(leading order {K / (2 * math.sqrt(3) * math.pi):.5f})")
    fig, ax = plt.subplots(figsize=(5.2, 3.8), layout="constrained")
    ax.plot(lrs_theory, floor_ode, "-", color="C0", label="ODE, t = 40/η")
    ax.plot(lrs_theory, leading, "--", color="k", label="ησ²K/(2√3π)")
    ax.errorbar(lrs_mc, mc_mean, yerr=mc_sem, fmt="o", color="C3", label=f"SGD, d = {d} ({seeds} seeds)")
    ax.set(xscale="log", yscale="log", xlabel="learning rate η", ylabel="asymptotic ε_g",
           title=f"noise floor, K = M = {K}, σ = {sigma}")
    ax.legend(fontsize=8, frameon=False)
    fig.savefig(out / "two_layer_noise_floor.png", dpi=110)
    plt.close(fig)
    sim_all = xr.concat(sims, "lr", join="outer", combine_attrs="drop_conflicts")
    hidyn.save(sim_all, out / "two_layer_noise_floor_sgd.nc")
    theory = hidyn.sweep(hidyn.theory, {"lr": [float(x) for x in lrs_theory[::3]]}, model="two_layer", K=K,
                         M=K, noise=sigma, init=init, t_max=40.0, n_times=50)
    hidyn.save(theory, out / "two_layer_noise_floor_ode.nc")
    return {"simulations": sim_all, "floor_ode": np.array(floor_ode), "mc": np.array(mc_mean)}


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--out", default="out")
    args = parser.parse_args()
    main(quick=args.quick, out=args.out)
