"""Quickstart: the DLN in the proportional regime against its DMFT, and the population closed form against
Monte-Carlo.

Run:  python examples/quickstart.py            (full: d = 4096; measured 59 s wall, 71 CPU-s on 2 idle cores)
      python examples/quickstart.py --quick    (d = 512, seconds; what the tests run)

Writes quickstart_dln.nc, quickstart_population.nc and quickstart.png into --out (default: ./out).
"""
from __future__ import annotations

import argparse
import time
from pathlib import Path


def main(quick: bool = False, out: str | Path = "out") -> dict:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    import hidyn
    from hidyn import plot

    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    d = 512 if quick else 4096

    # 1. The entry point: finite-d gradient descent at n/d = 0.5 (the DMFT paper's proportional regime).
    start = time.perf_counter()
    # quick mode (the tests) shortens the horizon: the DMFT costs O(T³) in the number of steps T
    sim = hidyn.simulate(model="dln", d=d) if not quick else hidyn.simulate(model="dln", d=d, t_max=5.0)
    t_sim = time.perf_counter() - start
    print(sim)
    hidyn.save(sim, out / "quickstart_dln.nc")
    # ... and its d → ∞ theory: the DMFT effective process of GD at the same spec (docs/theory/dln.md §5)
    start = time.perf_counter()
    dmft = hidyn.theory(hidyn.results.spec_from_dataset(sim), n_samples=4000 if quick else 8000,
                        t_max=float(sim["time"][-1]))
    t_dmft = time.perf_counter() - start
    cmp_dmft = hidyn.compare(sim, dmft)
    cmp_dmft.summary()
    hidyn.save(dmft, out / "quickstart_dmft.nc")

    # 2. Population setting (fresh samples every step): online SGD with η·d/B = 0.01 against the exact
    #    gradient-flow closed form of docs/theory/dln.md §3.
    d_pop = 512 if quick else 2048
    pop = hidyn.simulate("dln", d=d_pop, ratio=None, algorithm="sgd", lr=0.01, batch_size=d_pop,
                         seeds=8 if quick else 16)
    th = hidyn.theory("dln", ratio=None, times=pop["time"].values)
    cmp = hidyn.compare(pop)
    cmp.summary()
    hidyn.save(pop, out / "quickstart_population.nc")

    fig, axes = plt.subplots(1, 2, figsize=(10, 3.8), layout="constrained")
    plot.learning_curves(sim, theory=dmft, ax=axes[0])
    axes[0].set_title(f"DLN, GD, n/d = 0.5: d = {d} vs DMFT")
    plot.learning_curves(pop, theory=th, variables=("test_loss",), ax=axes[1])
    axes[1].set_title(f"population, online SGD, d = {d_pop}: closed form vs MC")
    fig.savefig(out / "quickstart.png", dpi=110)
    plt.close(fig)
    print(f"simulate(model='dln', d={d}) took {t_sim:.1f} s, its DMFT {t_dmft:.1f} s; comparisons passed: "
          f"DMFT {cmp_dmft.passed}, population closed form {cmp.passed}")
    return {"sim": sim, "dmft": dmft, "population": pop, "comparison": cmp, "comparison_dmft": cmp_dmft,
            "seconds": t_sim}


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--out", default="out")
    args = parser.parse_args()
    main(quick=args.quick, out=args.out)
