"""Escape from the equator vs dimension for information exponents k* = 1, 2, 3 (docs/theory/single_index.md §4).

Target and student h_k (k = 1, 2, 3), correlation loss, spherical online SGD from m₀ = 1/√d exactly,
with and without an aligned spike κ = 5 (gain G = 6).  Markers: median first-passage time t_{1/2} of
|m| to 1/2 over an ensemble of runs (bars: quartiles), simulated with the exact reduced chain of
note §1 (same law as the full d-dimensional SGD, O(1) per step).  Lines: first passage of the d → ∞
ODE of note §2 from the same ρ₀ (for k* = 2 its slope in ln d is 1/(2γ) of §4's formula
t ≈ [½ ln(d/G) + ln ρ_end]/γ; for k* = 3 it follows the Bernoulli law of §4 with the noise term).
Expected: t_{1/2} = O(1) for k* = 1, ∝ ln d for k* = 2, ∝ √d for k* = 3 (n = d·t samples:
d, d ln d, d^{3/2} at fixed η); the spike shifts every curve down.  For k* = 3 the step must shrink
like d^{−1/2} for the signal to beat the SGD noise at ρ₀ (§4), so it is set to η = 0.5/√d there, a
quarter of the threshold 2/√d (then t ∝ d and n ∝ d², so k* = 3 stops at d = 1024).

Run:  python examples/single_index_escape.py [--quick] [--out DIR]
"""
from __future__ import annotations

import argparse
import math
from pathlib import Path

import numpy as np

CURVES = {1: dict(link="he1", activation="he1"), 2: dict(link="he2", activation="he2"),
          3: dict(link="he3", activation="he3")}
SPIKES = (0.0, 5.0)


def _lr(k: int, d: int) -> float:
    """η = 0.5 for k* ≤ 2; η = 0.5/√d for k* = 3, a quarter of the noise threshold 2/√d of §4."""
    return 0.5 if k <= 2 else 0.5 / math.sqrt(d)


def _rho0(d: float, kappa: float) -> float:
    """ρ₀ = M/√(QR) of the start m₀ = s₀ = 1/√d, q₀ = 1 with an aligned spike (note §1)."""
    m0 = 1.0 / math.sqrt(d)
    return m0 * (1.0 + kappa) / math.sqrt((1.0 + kappa * m0 * m0) * (1.0 + kappa))


def main(quick: bool = False, out: str | Path = "out") -> dict:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import xarray as xr

    import hidyn
    from hidyn.solvers.ode.single_index import predicted_escape_time

    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    all_dims = [64, 128, 256] if quick else [128, 256, 512, 1024, 2048, 4096]
    seeds = 60 if quick else 400
    fig, ax = plt.subplots(figsize=(7.5, 5), layout="constrained")
    results = []
    for k, pair in CURVES.items():
        dims = all_dims if k <= 2 else [x for x in all_dims if x <= 1024]
        for kappa in SPIKES:
            per_d = []
            for d in dims:
                esc = hidyn.escape_time("single_index", d=d, seeds=seeds, spike=kappa, lr=_lr(k, d),
                                        geometry="sphere", loss="correlation", **pair)
                per_d.append(esc)
            esc = xr.concat(per_d, "d", combine_attrs="drop_conflicts")
            med = esc["escape_time_median"].values
            q = esc["escape_time_quantiles"].sel(quantile=[0.25, 0.75]).values
            label = f"k* = {k}, " + ("no spike" if kappa == 0 else f"spike κ = {kappa:g}")
            print(f"{label}: medians {np.round(med, 3)} at d = {dims}; theory "
                  f"{np.round(esc['escape_time_theory'].values, 3)}")
            style = dict(color=f"C{k - 1}", ms=6, ls="none", mfc="none" if kappa else f"C{k - 1}")
            ax.errorbar(dims, med, yerr=[med - q[:, 0], q[:, 1] - med], fmt="o" if kappa == 0 else "s",
                        capsize=2, label=label, **style)
            fine = np.geomspace(dims[0], dims[-1], 8 if quick else 30)
            line = [predicted_escape_time(spike=kappa, lr=_lr(k, int(x)), d=int(x), rho0=_rho0(x, kappa),
                                          geometry="sphere", method="ode", **pair)["t_half"] for x in fine]
            ax.plot(fine, line, "-" if kappa == 0 else "--", color=f"C{k - 1}", lw=1.2)
            results.append(esc.expand_dims(k_star=[k], spike_value=[kappa]))
    ax.set(xscale="log", yscale="log", xlabel="dimension d", ylabel="escape time t₁/₂ (steps/d)",
           title="equator escape of spherical online SGD: theory (lines) vs MC medians (markers)")
    ax.legend(fontsize=8, frameon=False, ncol=2)
    fig.savefig(out / "single_index_escape.png", dpi=110)
    plt.close(fig)
    n = len(SPIKES)
    data = xr.concat([xr.concat(results[i:i + n], "spike_value", combine_attrs="drop_conflicts")
                      for i in range(0, len(results), n)], "k_star", combine_attrs="drop_conflicts",
                     join="outer")                    # k* = 3 has fewer d: NaN there
    hidyn.save(data, out / "single_index_escape.nc")
    return {"escape": data}


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--out", default="out")
    args = parser.parse_args()
    main(quick=args.quick, out=args.out)
