"""Command line: ``hidyn info``, ``hidyn run CONFIG.toml -o OUT.nc``, ``hidyn versions``."""
from __future__ import annotations

import argparse
import sys

__all__ = ["main"]


def _info(_args) -> int:
    import importlib.util

    import hidyn
    from hidyn import models
    from hidyn._versions import versions
    from hidyn.api import _backend_class
    from hidyn.families import family

    print(f"hidyn {hidyn.__version__}")
    # a backend named after an optional package needs that package; the others need numpy only
    needs = {"numba": "numba", "jax": "jax"}
    print("models (Monte-Carlo backends, '-' = its package is not installed; theory methods; "
          "auto = the choice for the defaults):")
    for name in models.available():
        cls = models.spec_class(name)
        listed = [b if b not in needs or importlib.util.find_spec(needs[b]) is not None else f"-{b}"
                  for b in cls.backends]
        try:
            auto = _backend_class(models.get(name), "auto")[0]
        except Exception as err:  # an optional backend that fails to import must not break `info`
            auto = f"numpy ({type(err).__name__} while probing)"
        print(f"  {name:<14} backends: {', '.join(listed):<30} auto: {auto}")
        # the theory side from the family contract (hidyn.families.family): its methods, and the
        # one method="auto" picks for the default spec
        fam = family(name)
        print(f"  {'':<14} theory:   {', '.join(fam.methods)} (auto: {fam.auto_method(models.get(name))})")
    print("backend 'auto': jax if JAX sees a GPU, else numba if installed and the model has one "
          "that runs the parameters, else numpy")
    print("optional packages:")
    for key in ("numba", "jax", "jaxlib", "diffrax", "dask", "distributed", "zarr"):
        print(f"  {key:<12} {versions()[key] or 'not installed'}")
    return 0


def _run(args) -> int:
    import hidyn
    from hidyn.config import load_config

    cfg = load_config(args.config)
    params = dict(cfg["params"])
    if args.progress:
        params.setdefault("progress", True)
    if cfg["mode"] == "theory":
        params.pop("progress", None)
        ds = hidyn.theory(cfg["model"], **params)
    else:
        ds = hidyn.simulate(cfg["model"], **params)
    status = 0
    if cfg["mode"] == "compare":
        tol = hidyn.Tolerance(**cfg["tolerance"]) if cfg["tolerance"] else None
        cmp = hidyn.compare(ds, tolerance=tol)
        cmp.summary()
        status = 0 if cmp.passed else 1
    if args.output:
        hidyn.save(ds, args.output)
        print(f"wrote {args.output}")
    if args.plot:
        import matplotlib

        matplotlib.use("Agg")
        from hidyn import plot

        th = None
        if cfg["mode"] == "compare":
            th = hidyn.theory(hidyn.results.spec_from_dataset(ds), times=ds["time"].values)
        ax = plot.learning_curves(ds, theory=th)
        ax.figure.savefig(args.plot, dpi=120, bbox_inches="tight")
        print(f"wrote {args.plot}")
    return status


def _sweep(args) -> int:
    import hidyn
    from hidyn.config import load_config

    cfg = load_config(args.config)
    if not cfg["grid"]:
        raise ValueError(f"{args.config!r} has no [grid] table: nothing to sweep")
    func = {"simulate": hidyn.simulate, "theory": hidyn.theory}.get(cfg["mode"])
    if func is None:
        raise ValueError(f"mode={cfg['mode']!r} cannot be swept: use 'simulate' or 'theory'")
    client = None
    executor = None
    if args.scheduler:
        try:
            from distributed import Client
        except ImportError as err:
            raise ValueError("--scheduler needs dask.distributed: pip install 'hidyn[dask]'") from err
        client = executor = Client(args.scheduler)
    elif args.workers > 1:
        import multiprocessing
        from concurrent.futures import ProcessPoolExecutor

        executor = ProcessPoolExecutor(args.workers, mp_context=multiprocessing.get_context("spawn"))
    try:
        ds = hidyn.sweep(func, cfg["grid"], executor=executor, out_dir=args.out_dir, progress=True,
                         model=cfg["model"], **cfg["params"])
    finally:
        if client is not None:
            client.close()
        elif executor is not None:
            executor.shutdown()
    if args.output:
        hidyn.save(ds, args.output)
        print(f"wrote {args.output}")
    else:
        print(ds)
    return 0


def _validate(args) -> int:
    from hidyn.validation.cases import run_validation

    rows = run_validation(quick=args.quick, family=args.family, cases=args.case, progress=False)
    return 0 if all(r["passed"] for r in rows) else 1


def _versions(_args) -> int:
    from hidyn import show_versions

    show_versions()
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="hidyn", description="High-dimensional learning dynamics: d → ∞ theory and finite-d "
                                  "Monte-Carlo behind one spec, checked against each other.")
    sub = parser.add_subparsers(dest="command", required=True)
    p = sub.add_parser("info", help="version, models, backends and optional packages")
    p.set_defaults(func=_info)
    p = sub.add_parser("run", help="run a TOML configuration (simulate, theory or compare)")
    p.add_argument("config", help="TOML file (see hidyn.config)")
    p.add_argument("-o", "--output", help="write the result to this .nc file")
    p.add_argument("--plot", help="write learning curves to this image file")
    p.add_argument("--progress", action="store_true", help="show a progress bar")
    p.set_defaults(func=_run)
    p = sub.add_parser("sweep", help="run a TOML configuration with a [grid] of swept parameters")
    p.add_argument("config", help="TOML file with [params] and [grid]")
    p.add_argument("-o", "--output", help="write the combined result to this .nc file")
    p.add_argument("--out-dir", help="one file per point here; an interrupted sweep resumes from it")
    p.add_argument("--scheduler", help="address of a dask.distributed scheduler (tcp://host:8786)")
    p.add_argument("--workers", type=int, default=1, help="local worker processes (spawned)")
    p.set_defaults(func=_sweep)
    p = sub.add_parser("validate", help="run the registered theory-vs-Monte-Carlo validation cases")
    p.add_argument("--quick", action="store_true",
                   help="the quick set at the smallest d (31 cases; measured 63 s wall, 90 CPU-s on 2 idle cores)")
    p.add_argument("--family", help="only this model family (one of the models `hidyn info` lists)")
    p.add_argument("--case", action="append", help="only this case (repeatable; see hidyn.validation.cases)")
    p.set_defaults(func=_validate)
    p = sub.add_parser("versions", help="versions of hidyn and its dependencies")
    p.set_defaults(func=_versions)
    return parser


def main(argv=None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return args.func(args)
    except (ValueError, OSError, NotImplementedError, MemoryError, RuntimeError) as err:
        print(f"hidyn: error: {err}", file=sys.stderr)
        return 2


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
