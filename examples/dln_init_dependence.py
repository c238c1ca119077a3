"""Limiting test error of a diagonal linear network against the init scale α: from min-ℓ2 to min-ℓ1
(docs/theory/dln.md §4).

For n/d = δ < 1 gradient flow converges to the interpolator that minimises the hyperbolic-entropy
potential of the initialisation (Woodworth et al. 2020): ℓ2-like for large α (kernel regime), ℓ1-like for
small α (rich regime).  In the proportional limit its test error solves a scalar fixed point
b̂ = prox(β* + τZ) (docs/theory/dln.md §4; Nishiyama & Imaizumi, arXiv:2510.01930, "long-time behaviour"), which
interpolates between the min-ℓ2 risk (α → ∞) and the basis-pursuit risk (α → 0).

Setting: δ = 0.5, ρ = 0.1, rademacher teacher, `pesme` init (Δ = 2α²), two noise levels.
* σ = 0: the error falls monotonically with α, from the min-ℓ2 value ρ(1 − δ) = 0.05 to exact recovery
  (ρ = 0.1 is below the ℓ1 phase transition at δ = 0.5).
* σ = 0.3: the ℓ1 limit is *worse* than the ℓ2 one (noise is interpolated with a sparse, spiky β) and
  the best α is intermediate (≈ 1 here): the implicit bias helps only while the signal dominates.
Lines: the fixed point (d → ∞) for the DLN potential, dotted: its ridge (min-ℓ2) and ℓ1 (basis pursuit)
limits.  Markers: exact finite-d gradient-flow limits on random instances (dual Newton), mean ± SEM, and
the finite-d min-ℓ2 / min-ℓ1 interpolators drawn at the ends of the α axis.

Run:  python examples/dln_init_dependence.py [--quick] [--out DIR]
      (full: d = 1000, 6 instances, 21 α values of the fixed point, about 4 minutes on 2 shared cores;
      --quick: d = 200, 3 instances, 8 values, seconds.)
Writes dln_init_dependence_fixed_point.nc, dln_init_dependence_finite_d.nc and dln_init_dependence.png.
"""
from __future__ import annotations

import argparse
import math
from pathlib import Path

import numpy as np

BASE = dict(ratio=0.5, sparsity=0.1, teacher="rademacher")
NOISES = (0.0, 0.3)
ALPHA_ENDS = (3e-5, 30.0)  # where the finite-d min-ℓ1 (α → 0) and min-ℓ2 (α → ∞) points are drawn


def instance(d: int, noise: float, seed: int):
    """Gaussian design X_{μi} ~ N(0, 1/d), exact-ρ rademacher teacher, y = Xβ* + σξ (docs/theory/dln.md §2.1)."""
    rng = np.random.default_rng([11, seed])
    n = int(round(BASE["ratio"] * d))
    X = rng.standard_normal((n, d)) / math.sqrt(d)
    beta_star = np.zeros(d)
    supp = rng.choice(d, int(round(BASE["sparsity"] * d)), replace=False)
    beta_star[supp] = rng.choice([-1.0, 1.0], supp.size)
    # the same ξ at every σ, so the two panels use the same instances
    y = X @ beta_star + noise * rng.standard_normal(n)
    return X, y, beta_star


def min_l1_interpolator(X, y) -> np.ndarray:
    """argmin ‖β‖₁ subject to Xβ = y, as a linear programme in (β⁺, β⁻) ≥ 0."""
    from scipy.optimize import linprog

    n, d = X.shape
    res = linprog(np.ones(2 * d), A_eq=np.hstack([X, -X]), b_eq=y, bounds=(0, None), method="highs")
    if res.status != 0:
        raise RuntimeError(f"min-ℓ1 linear programme failed: {res.message}")
    return res.x[:d] - res.x[d:]


def main(quick: bool = False, out: str | Path = "out") -> dict:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    import hidyn
    from hidyn.models.dln import DLNSpec, initial_pq
    from hidyn.results import make_dataset
    from hidyn.solvers.closed_form.dln_limits import fixed_point, implicit_bias_interpolator

    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    d = 200 if quick else 1000
    seeds = 3 if quick else 6
    alphas = np.geomspace(1e-4, 10.0, 8 if quick else 21)
    alphas_fd = np.array([1e-4, 1e-2, 0.3, 3.0] if quick else [1e-4, 1e-3, 1e-2, 0.1, 0.3, 1.0, 3.0])

    def pq(alpha):
        return initial_pq(DLNSpec(init_scale=float(alpha), **BASE))

    keys = ("test_loss", "tpr", "fpr", "norm1")
    fp = {k: np.empty((len(NOISES), alphas.size)) for k in keys}
    limits = {}
    for i, noise in enumerate(NOISES):
        for j, alpha in enumerate(alphas):
            p0, q0 = pq(alpha)
            res = fixed_point(noise=noise, p0=p0, q0=q0, **BASE)
            for k in keys:
                fp[k][i, j] = res[k]
        limits[noise] = {pot: fixed_point(noise=noise, potential=pot, **BASE)["test_loss"] for pot in ("ridge", "l1")}
        print(f"σ = {noise}: fixed point E_te from {fp['test_loss'][i, 0]:.4g} (α = {alphas[0]:g}) to "
              f"{fp['test_loss'][i, -1]:.4g} (α = {alphas[-1]:g}); limits min-ℓ1 {limits[noise]['l1']:.4g}, "
              f"min-ℓ2 {limits[noise]['ridge']:.4g}")

    # finite d: gradient-flow limits (dual Newton), min-ℓ2 (pseudo-inverse) and min-ℓ1 (LP) interpolators
    fd = np.empty((len(NOISES), alphas_fd.size, seeds))
    ends = np.empty((len(NOISES), 2, seeds))
    for i, noise in enumerate(NOISES):
        for s in range(seeds):
            X, y, beta_star = instance(d, noise, s)

            def risk(beta):
                return float(np.mean((beta - beta_star) ** 2) + noise**2)

            for j, alpha in enumerate(alphas_fd):
                p0, q0 = pq(alpha)
                fd[i, j, s] = risk(implicit_bias_interpolator(X, y, p0=p0, q0=q0)["beta"])
            ends[i, 0, s] = risk(min_l1_interpolator(X, y))
            ends[i, 1, s] = risk(np.linalg.pinv(X) @ y)
        print(f"σ = {noise}, d = {d}: interpolator E_te " + ", ".join(
            f"α={a:g}: {m:.4g}" for a, m in zip(alphas_fd, fd[i].mean(axis=1))))

    fig, axes = plt.subplots(1, 2, figsize=(11, 4.3), layout="constrained")
    for i, (noise, ax) in enumerate(zip(NOISES, axes)):
        ax.plot(alphas, fp["test_loss"][i], "-", color="C0", lw=1.8, label="fixed point, DLN potential (d → ∞)")
        ax.axhline(limits[noise]["ridge"], color="C1", ls=":", lw=1.2, label="min-ℓ2 limit (α → ∞), d → ∞")
        if limits[noise]["l1"] > 1e-12:
            ax.axhline(limits[noise]["l1"], color="C2", ls=":", lw=1.2, label="min-ℓ1 limit (α → 0), d → ∞")
        m, s = fd[i].mean(axis=1), fd[i].std(axis=1, ddof=1) / math.sqrt(seeds)
        ax.errorbar(alphas_fd, m, yerr=s, fmt="o", ms=5, mfc="none", color="C0",
                    label=f"gradient-flow limit, d = {d} ({seeds} instances)")
        floor = 1e-9  # bottom of the log axis (σ = 0): exact recovery gives E_te ≈ 1e-30
        for e, (color, name) in enumerate((("C2", "min-ℓ1"), ("C1", "min-ℓ2"))):
            mean_e = ends[i, e].mean()
            if noise == 0 and mean_e < floor:
                ax.plot(ALPHA_ENDS[e], 2 * floor, "v", ms=8, mfc="none", color=color,
                        label=f"{name} interpolator, d = {d}: E_te < {floor:g} (exact recovery)")
                continue
            ax.errorbar(ALPHA_ENDS[e], mean_e, yerr=ends[i, e].std(ddof=1) / math.sqrt(seeds),
                        fmt="D", ms=6, mfc="none", color=color, label=f"{name} interpolator, d = {d}")
        if noise == 0 and limits[noise]["l1"] <= 1e-12:
            ax.text(1.5e-4, 1.2e-9, "min-ℓ1 limit (α → 0), d → ∞: exact recovery, E_te = 0", fontsize=7.5,
                    color="C2")
        ax.set(xscale="log", xlabel="initialisation scale α (pesme: u₀ = √2·α, v₀ = 0)",
               ylabel="limiting test error $E_{te}(t → ∞)$ = ‖β − β*‖²/d + σ²",
               title=f"n/d = {BASE['ratio']}, ρ = {BASE['sparsity']}, σ = {noise}")
        if noise == 0:
            ax.set(yscale="log", ylim=(floor, 0.2))
            ax.legend(fontsize=7.5, frameon=False, loc="lower right", bbox_to_anchor=(1.0, 0.07))
        else:
            ax.legend(fontsize=7.5, frameon=False, loc="upper right")
    fig.savefig(out / "dln_init_dependence.png", dpi=120)
    plt.close(fig)

    common = {**BASE, "init": "pesme", "parametrization": "uv", "time_units": "t = infinity"}
    ds_fp = make_dataset({k: (("time", "noise", "init_scale"), fp[k][None]) for k in keys},
                         {"time": [np.inf], "noise": list(NOISES), "init_scale": alphas},
                         {"method": "fixed_point", **common,
                          **{f"test_loss_{pot}_noise_{nz:g}": v for nz, lim in limits.items()
                             for pot, v in lim.items()}}, model="dln")
    ds_fd = make_dataset({"test_loss": (("time", "noise", "init_scale", "seed"), fd[None]),
                          "test_loss_min_l1": (("time", "noise", "seed"), ends[None, :, 0]),
                          "test_loss_min_l2": (("time", "noise", "seed"), ends[None, :, 1])},
                         {"time": [np.inf], "noise": list(NOISES), "init_scale": alphas_fd, "seed": np.arange(seeds)},
                         {"method": "interpolator (dual Newton), min-l1 (LP), min-l2 (pinv)", "d": d, **common},
                         model="dln")
    ds_fd["test_loss_min_l1"].attrs["long_name"] = "test error of the finite-d min-l1 interpolator"
    ds_fd["test_loss_min_l2"].attrs["long_name"] = "test error of the finite-d min-l2 interpolator"
    hidyn.save(ds_fp, out / "dln_init_dependence_fixed_point.nc")
    hidyn.save(ds_fd, out / "dln_init_dependence_finite_d.nc")
    return {"fixed_point": ds_fp, "finite_d": ds_fd}


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--out", default="out")
    args = parser.parse_args()
    main(quick=args.quick, out=args.out)
