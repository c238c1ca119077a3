"""Finite-size scaling: single finite-d runs approach the d → ∞ theory like d^(−1/2), in every family.

For each family, simulate at several d, measure the RMS deviation of single runs from the theory
(closed form / ODE / DMFT) and fit its slope in log d.  Dotted guides have slope −1/2.

* DLN, proportional regime (n/d = 0.5, GD): finite-d GD against one DMFT solve.
* Teacher–student (K = M = 2, erf, η = 0.5): SGD against the ODE from each run's own initial overlaps.
* Single-index (He2, correlation loss, sphere), when the family is installed: SGD against the ODE.

Run:  python examples/finite_size_scaling.py [--quick] [--out DIR]
"""
from __future__ import annotations

import argparse
from pathlib import Path


def main(quick: bool = False, out: str | Path = "out") -> dict:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import xarray as xr

    import hidyn
    from hidyn import plot
    from hidyn.validation.scaling import finite_size_study

    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    studies = {}
    studies["dln"] = finite_size_study(
        "dln", [128, 256, 512] if quick else [256, 512, 1024, 2048, 4096],
        variables=["train_loss", "test_loss"], seeds=4 if quick else 8,
        theory_options=dict(n_samples=4000 if quick else 16000),
        ratio=0.5, sparsity=0.1, noise=0.1, init_scale=0.3, lr=0.1, t_max=5.0 if quick else 10.0, n_times=20)
    studies["two_layer"] = finite_size_study(
        "two_layer", [100, 200, 400] if quick else [125, 250, 500, 1000, 2000],
        variables=["test_loss", "Q", "R"], seeds=4 if quick else 16,
        K=2, M=2, activation="erf", lr=0.5, t_max=10.0 if quick else 30.0, n_times=20)
    if "single_index" in hidyn.models.available():
        studies["single_index"] = finite_size_study(
            "single_index", [256, 512, 1024] if quick else [256, 512, 1024, 2048, 4096],
            variables=["m", "test_loss"], seeds=4 if quick else 16,
            link="he2", activation="he2", loss="correlation", geometry="sphere", lr=0.1, m0=0.3,
            t_max=2.0 if quick else 10.0, n_times=20)
    fig, axes = plt.subplots(1, len(studies), figsize=(4.2 * len(studies), 3.6), layout="constrained")
    for ax, (name, study) in zip(axes, studies.items()):
        plot.finite_size_scaling(study, ax=ax)
        for v in study["variable"].values:
            print(f"{name:>12} {v:>10}: slope {float(study['slope'].sel(variable=v)):+.3f} "
                  f"± {float(study['slope_se'].sel(variable=v)):.3f}")
    fig.savefig(out / "finite_size_scaling.png", dpi=110)
    plt.close(fig)
    combined = xr.concat([s.assign_coords(model=name).expand_dims("model") for name, s in studies.items()],
                         "model", join="outer", combine_attrs="drop")
    combined.to_netcdf(out / "finite_size_scaling.nc", engine="h5netcdf")
    return studies


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--out", default="out")
    args = parser.parse_args()
    main(quick=args.quick, out=args.out)
