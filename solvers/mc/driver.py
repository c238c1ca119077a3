"""The one Monte-Carlo driver: save schedule, chunking, progress, seeds, precision, divergence.

A backend is an object built from ``(spec, precision)`` with

* ``time_per_step`` – the time one step advances (η for GD, 1/d for online SGD), or ``None`` for a
  continuous-time backend (gradient flow), whose ``advance`` then takes a duration;
* ``variables`` – dict name → extra dims after (seed, time), e.g. ``{"Q": ("k", "k_")}``;
* ``memory_bytes(n_seeds)`` – an estimate of the state size, checked before allocating;
* ``init(seed_sequences) → state``, ``advance(state, n) → state``, ``observe(state) → dict`` of
  arrays shaped (n_seeds, *extra dims)``, and ``attrs(state) → dict`` of extra netCDF-safe attrs;
* optionally ``unit_shape`` – a tuple: the leading extra dims of *every* observable over which runs are
  independent (e.g. ``(n_lr,)`` for a grid of learning rates run in one batch).  Divergence is then
  detected and recorded per (seed, *unit) and the other units keep running; the returned arrays are
  (n_seeds, n_saved, *unit_shape, *rest) and ``diverged_at`` has shape (n_seeds, *unit_shape);
* optionally ``weight_variables`` (dict name → extra dims, e.g. ``{"beta": ("i",)}``) and
  ``weights(state) → dict`` of the d-dimensional weights, recorded on request
  (``record_weights=True``); a backend without them cannot record weights.

A family may declare the admissible set of its observed order parameters (``inadmissible`` argument of
:func:`run`, from ``hidyn.families.<model>.inadmissible``): a seed whose overlaps leave it (non-PSD
overlap matrix, |m| > 1 on the sphere, norms running away) is stopped and recorded as diverged, like a
seed whose loss blows up.

The driver holds no family logic; backends hold no scheduling logic.
"""
from __future__ import annotations

import os
import warnings

import numpy as np

__all__ = ["save_schedule", "run", "available_memory_bytes", "check_memory", "can_record_weights",
           "weights_nbytes"]

#: a seed whose loss grows by this factor over its initial value (or turns non-finite) has diverged
BLOWUP_FACTOR = 1e8


def save_schedule(times, time_per_step):
    """Map requested save times onto the backend's clock.

    Returns ``(steps, actual_times)``: for a discrete backend the distinct integer step counts
    ``round(t / time_per_step)`` and the times they really reach; for a continuous one the times.
    """
    times = np.asarray(times, dtype=np.float64)
    if time_per_step is None:
        return times, times
    steps = np.unique(np.rint(times / time_per_step).astype(np.int64))
    return steps, steps * float(time_per_step)


def available_memory_bytes() -> int:
    """Physical memory of this machine (bytes); a generous bound when it cannot be read."""
    try:
        return int(os.sysconf("SC_PHYS_PAGES") * os.sysconf("SC_PAGE_SIZE"))
    except (ValueError, OSError, AttributeError):
        return 1 << 40


def check_memory(nbytes: int, what: str, hint: str, fraction: float = 0.7) -> None:
    """Refuse a run whose state would take more than ``fraction`` of physical memory."""
    avail = available_memory_bytes()
    if nbytes > fraction * avail:
        raise MemoryError(f"{what} needs about {nbytes / 2**30:.2f} GiB but this machine has "
                          f"{avail / 2**30:.1f} GiB (limit {fraction:.0%}); {hint}")


def can_record_weights(backend) -> bool:
    """Whether a backend (class or instance) can return its weights (``weights``/``weight_variables``)."""
    return callable(getattr(backend, "weights", None)) and isinstance(getattr(backend, "weight_variables", None),
                                                                      dict)


def weights_nbytes(sizes: dict, n_seeds: int, n_times: int) -> int:
    """Bytes of the recorded weights: seeds × n_times × (weights per seed) × 8 (float64).

    ``sizes`` maps each weight variable to its number of entries per seed and time (d, or K·d).
    """
    return int(n_seeds) * int(n_times) * int(sum(sizes.values())) * 8


def _loss_key(obs):
    for key in ("train_loss", "test_loss", "objective", "q"):
        if key in obs:
            return key
    return None


def run(backend, seed_sequences, times, *, progress=None, chunk_steps: int | None = None,
        desc: str = "simulate", record_weights: bool = False, inadmissible=None):
    """Run ``backend`` for every seed and record its observables at ``times``.

    Parameters
    ----------
    backend : object following the contract in the module docstring
    seed_sequences : list of numpy.random.SeedSequence, one per seed
    times : array_like, shape (n_times,)
        Requested save times (sorted, ≥ 0); a discrete backend rounds them to whole steps.
    progress : bool or None
        Show a tqdm progress bar over the steps; ``None`` shows it only on a terminal.
    chunk_steps : int, optional
        Longest stretch advanced without updating the bar (default: ~200 chunks per run).
    record_weights : bool
        Also record ``backend.weights(state)`` at every save time (the backend must have it).
    inadmissible : callable ``(obs, first_obs) -> dict reason -> bool array (n_seeds,)``, optional
        The family's admissibility check of the observed order parameters (``first_obs`` is the
        observation at the first save time, for scales); a True entry stops that seed as diverged.

    Returns
    -------
    times : ndarray (n_saved,)
    data : dict name -> ndarray (n_seeds, n_saved, *extra)
    info : dict
        ``diverged_at`` (per seed, −1 when none), ``divergence_reason`` (per seed, '' when none),
        ``n_steps`` and the backend's attrs.
    """
    from tqdm.auto import tqdm

    times = np.asarray(times, dtype=np.float64)
    if times.ndim != 1 or times.size == 0 or np.any(np.diff(times) < 0) or times[0] < 0:
        raise ValueError("times must be a non-empty, sorted 1-D array of non-negative times")
    if record_weights and not can_record_weights(backend):
        raise ValueError(f"record_weights=True is invalid for backend {getattr(backend, 'name', backend)!r}: "
                         f"it does not return its weights")
    marks, actual = save_schedule(times, backend.time_per_step)
    continuous = backend.time_per_step is None
    n_seeds = len(seed_sequences)
    # independent runs ("units") per seed: () for one run per seed, (n_lr,) for a batched lr grid
    unit_shape = tuple(int(k) for k in getattr(backend, "unit_shape", ()))
    n_units = n_seeds * int(np.prod(unit_shape, dtype=np.int64))
    n_lead = 1 + len(unit_shape)
    state = backend.init(seed_sequences)
    total = float(marks[-1])
    if chunk_steps is None:
        chunk_steps = max(total / 200.0, 1.0) if not continuous else max(total / 200.0, 1e-12)
    data: dict[str, np.ndarray] = {}
    diverged_at = np.full(n_units, -1.0)
    alive = np.ones(n_units, dtype=bool)
    loss0 = None
    obs0 = None
    reasons = [""] * n_units

    def unit_label(i: int) -> str:
        if not unit_shape:
            return f"seed {i}"
        seed_i, *rest = np.unravel_index(i, (n_seeds,) + unit_shape)
        return f"seed {seed_i} unit {tuple(int(r) for r in rest)}"
    position = 0.0 if continuous else 0
    disable = None if progress is None else not progress  # None: tqdm shows it only on a terminal
    bar = tqdm(total=total, desc=desc, disable=disable, unit="t" if continuous else "step", leave=False)
    try:
        for j, mark in enumerate(marks):
            while position < mark and alive.any():
                n = min(mark - position, chunk_steps)
                if not continuous:
                    n = int(max(1, round(n)))
                with np.errstate(all="ignore"):
                    state = backend.advance(state, n)
                position = position + n
                bar.update(float(n))
            with np.errstate(all="ignore"):
                obs = backend.observe(state)
                if record_weights:
                    obs = {**obs, **backend.weights(state)}
                obs = {name: np.asarray(arr) for name, arr in obs.items()}
                obs = {name: arr.reshape((n_units,) + arr.shape[n_lead:]) for name, arr in obs.items()}
            if not data:
                for name, arr in obs.items():
                    data[name] = np.full((n_units, marks.size) + arr.shape[1:], np.nan)
            key = _loss_key(obs)
            if key is not None and loss0 is None:
                loss0 = np.abs(np.asarray(obs[key], dtype=np.float64))
            if obs0 is None:
                obs0 = {name: np.array(arr, dtype=np.float64) for name, arr in obs.items()}
            checks = {}
            nonfinite = np.zeros(n_units, dtype=bool)
            for arr in obs.values():
                arr = np.asarray(arr, dtype=np.float64)
                nonfinite |= ~np.all(np.isfinite(arr.reshape(n_units, -1)), axis=1)
            checks["non-finite values"] = nonfinite
            if key is not None:
                with np.errstate(invalid="ignore"):
                    checks[f"{key} grew by >{BLOWUP_FACTOR:.0e}x"] = (
                        np.abs(np.asarray(obs[key], dtype=np.float64)) > BLOWUP_FACTOR * (loss0 + 1.0))
            if inadmissible is not None:
                with np.errstate(all="ignore"):
                    checks.update(inadmissible(obs, obs0))
            bad = np.zeros(n_units, dtype=bool)
            for reason, flag in checks.items():
                flag = np.asarray(flag, dtype=bool).reshape(n_units)
                for i in np.flatnonzero(flag & alive & ~bad):
                    reasons[i] = reason
                bad |= flag
            newly = bad & alive
            diverged_at[newly] = actual[j]
            alive &= ~bad
            for name, arr in obs.items():
                data[name][alive, j] = np.asarray(arr)[alive]
            if not alive.any():
                break
    finally:
        bar.close()
    if unit_shape:
        data = {name: np.moveaxis(arr.reshape((n_seeds,) + unit_shape + arr.shape[1:]), n_lead, 1)
                for name, arr in data.items()}
        diverged_at = diverged_at.reshape((n_seeds,) + unit_shape)
    info = {"diverged_at": diverged_at, "n_steps": float(position), **backend.attrs(state)}
    if np.any(diverged_at >= 0):
        info["divergence_reason"] = "; ".join(f"{unit_label(i)}: {r}" for i, r in enumerate(reasons) if r)
        div = np.flatnonzero(diverged_at.ravel() >= 0)
        first = div[np.argmin(diverged_at.ravel()[div])]
        what = "seeds" if not unit_shape else f"runs (seed × {unit_shape} grid)"
        warnings.warn(f"{div.size} of {n_units} {what} diverged (first at t = {diverged_at.ravel()[first]:.6g}, "
                      f"{unit_label(first)}: {reasons[first]}); their later values are NaN, attrs['diverged_at'] "
                      f"records the times and attrs['divergence_reason'] why. Lower the learning rate.",
                      RuntimeWarning, stacklevel=3)
    return actual, data, info
