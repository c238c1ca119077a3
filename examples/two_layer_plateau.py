"""The Saad–Solla plateau of a soft committee machine (Saad & Solla, PRL 74, 4337, 1995).

K = M = 2, erf activation, online SGD at η = 0.5.  Left: the ODE from initial overlaps whose
symmetry-breaking part δ shrinks (R(0) = δ·P, docs/theory/teacher_student.md §6.1): the plateau at the
symmetric fixed point lengthens like ln(1/δ)/λ₊.  Right: SGD at finite d from a random start (mean ±
SEM over seeds) with the ODE started from each run's own initial overlaps; horizontal lines mark the
plateau height ε_sym at this η (root of the ODE on the symmetric manifold) and its η → 0 limit.

Run:  python examples/two_layer_plateau.py [--quick] [--out DIR]
"""
from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np

P = np.array([[0.625095, 0.897214], [0.775686, 0.225207]])  # docs/theory/teacher_student.md §6.1


def main(quick: bool = False, out: str | Path = "out") -> dict:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import xarray as xr

    import hidyn
    from hidyn.solvers.ode.two_layer import escape_time, plateau_fixed_point, symmetric_plateau_error

    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    lr = 0.5
    fixed = plateau_fixed_point(2, lr)
    eps_sym, eps_sym0 = fixed["test_loss"], symmetric_plateau_error(2)
    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(10.5, 4), layout="constrained")
    ths = []
    for i, delta in enumerate([1e-2, 1e-3, 1e-4, 1e-6]):
        init = {"Q": np.diag(np.linspace(0.2, 0.3, 2)), "R": delta * P}
        th = hidyn.theory("two_layer", K=2, M=2, lr=lr, init=init, t_max=700.0, n_times=400)
        t_exit = escape_time(th["time"].values, th["test_loss"].values, eps_sym)
        print(f"delta = {delta:g}: plateau exit (eps_g < eps_sym/2) at t = {t_exit:.1f}")
        ax1.plot(th["time"], th["test_loss"], color=f"C{i}", label=f"δ = {delta:g} (exit t = {t_exit:.0f})")
        ths.append(th.drop_vars(["Q", "R", "v"]).expand_dims(delta=[delta]))
    for ax in (ax1, ax2):
        ax.axhline(eps_sym, color="k", ls="--", lw=0.8, label=f"ε_sym(η={lr}) = {eps_sym:.4f}")
        ax.axhline(eps_sym0, color="k", ls=":", lw=0.8, label=f"ε_sym(η→0) = {eps_sym0:.4f}")
        ax.set(xscale="log", yscale="log", xlabel="time t = steps/d", ylabel="generalisation error ε_g")
    ax1.set_ylim(1e-5, 1.0)
    ax1.set_title("ODE: plateau length grows like ln(1/δ)")
    ax1.legend(fontsize=7, frameon=False)
    d, seeds = (200, 4) if quick else (1000, 16)
    sim = hidyn.simulate("two_layer", d=d, K=2, M=2, lr=lr, init_scale=0.5, t_max=100.0 if quick else 400.0,
                         n_times=40 if quick else 80, seeds=seeds)
    th_sim = hidyn.theory("two_layer", init=sim)  # per-seed ODEs from the simulation's t = 0 overlaps
    cmp = hidyn.compare(sim, th_sim)
    cmp.summary()
    t = sim["time"].values
    mean = sim["test_loss"].mean("seed").values
    sem = sim["test_loss"].std("seed").values / np.sqrt(seeds)
    ax2.fill_between(t[1:], (mean - sem)[1:], (mean + sem)[1:], color="C0", alpha=0.3, lw=0)
    ax2.plot(t[1:], mean[1:], "o", ms=3, color="C0", label=f"SGD, d = {d} ({seeds} seeds)")
    ax2.plot(t[1:], th_sim["test_loss"].mean("seed").values[1:], "-", color="C3", label="ODE (per-seed init)")
    ax2.set_title("SGD from a random start vs the ODE")
    ax2.legend(fontsize=7, frameon=False)
    fig.savefig(out / "two_layer_plateau.png", dpi=110)
    plt.close(fig)
    hidyn.save(sim, out / "two_layer_plateau_sgd.nc")
    theory = xr.concat(ths, "delta", combine_attrs="drop_conflicts")
    hidyn.save(theory, out / "two_layer_plateau_ode.nc")
    return {"simulation": sim, "theory": theory, "comparison": cmp}


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--out", default="out")
    args = parser.parse_args()
    main(quick=args.quick, out=args.out)
