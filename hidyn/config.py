"""Run configurations in TOML.

A config file names the model, what to do with it and the parameters::

    model = "dln"
    mode = "simulate"          # "simulate", "theory" or "compare" (simulate, then compare with theory)

    [params]                   # spec fields and run options of hidyn.simulate / hidyn.theory
    d = 2048
    ratio = 0.5
    seeds = 8
    t_max = 20.0

``ratio = "none"`` (any case) stands for Python's None, which TOML cannot spell.

A sweep (``hidyn sweep FILE``) adds a ``[grid]`` table of lists, expanded as a cartesian product::

    [grid]
    lr = [0.1, 0.2, 0.5]
    d = [250, 1000]
"""
from __future__ import annotations

import tomllib
from pathlib import Path

__all__ = ["load_config", "MODES"]

MODES = ("simulate", "theory", "compare")
_KEYS = {"model", "mode", "params", "tolerance", "grid"}


def _none(value):
    if isinstance(value, str) and value.lower() == "none":
        return None
    if isinstance(value, dict):
        return {k: _none(v) for k, v in value.items()}
    return value


def load_config(path) -> dict:
    """Read and check a TOML run configuration.

    Returns
    -------
    dict with ``model`` (str), ``mode`` (str), ``params`` (dict) and ``tolerance`` (dict, optional).

    Raises
    ------
    FileNotFoundError, PermissionError
        The file cannot be read (the message names it).
    ValueError
        Malformed TOML (with the parser's line and column) or unknown/missing keys.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"config file {str(path)!r} does not exist")
    try:
        text = path.read_text(encoding="utf-8")
    except PermissionError as err:
        raise PermissionError(f"config file {str(path)!r} is not readable") from err
    try:
        cfg = tomllib.loads(text)
    except tomllib.TOMLDecodeError as err:
        raise ValueError(f"{str(path)!r} is not valid TOML: {err}") from err
    unknown = set(cfg) - _KEYS
    if unknown:
        raise ValueError(f"{str(path)!r}: unknown top-level key(s) {sorted(unknown)}; valid: {sorted(_KEYS)}")
    if "model" not in cfg:
        raise ValueError(f"{str(path)!r}: missing key 'model' (e.g. model = \"dln\")")
    mode = cfg.get("mode", "simulate")
    if mode not in MODES:
        raise ValueError(f"{str(path)!r}: mode={mode!r} is invalid: must be one of {MODES}")
    params = cfg.get("params", {})
    if not isinstance(params, dict):
        raise ValueError(f"{str(path)!r}: [params] must be a table")
    grid = cfg.get("grid", {})
    if not isinstance(grid, dict) or not all(isinstance(v, list) for v in grid.values()):
        raise ValueError(f"{str(path)!r}: [grid] must be a table of lists (one list of values per swept "
                         f"parameter)")
    tolerance = cfg.get("tolerance", {})
    if not isinstance(tolerance, dict):
        raise ValueError(f"{str(path)!r}: [tolerance] must be a table (z, c, p, atol, rtol)")
    from hidyn.checks import check_config

    # unknown keys (a typo such as lrr = 0.5) are named here, with the valid ones, before anything runs
    check_config(cfg["model"], mode, params, grid, tolerance, repr(str(path)))
    return {"model": cfg["model"], "mode": mode, "params": _none(params),
            "tolerance": tolerance, "grid": {k: [_none(x) for x in v] for k, v in grid.items()}}
