"""The one Monte-Carlo driver: save schedule, chunking, progress, seeds, precision, divergence.

A backend is an object built from ``(spec, precision)`` with

* ``time_per_step`` – the time one step advances (η for GD, 1/d for online SGD), or ``None`` for a
  continuous-time backend (gradient flow), whose ``advance`` then takes a duration;
* ``variables`` – dict name → extra dims after (seed, time), e.g. ``{"Q": ("k", "k_")}``;
* ``memory_bytes(n_seeds)`` – an estimate of the state size, checked before allocating;
* ``init(seed_sequences) → state``, ``advance(state, n) → state``, ``observe(state) → dict`` of
  arrays shaped (n_seeds, *extra dims)``, and ``attrs(state) → dict`` of extra netCDF-safe attrs.

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

__all__ = ["save_schedule", "run", "available_memory_bytes", "check_memory"]

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


def _loss_key(obs):
    for key in ("train_loss", "test_loss", "objective", "q"):
        if key in obs:
            return key
    return None


def run(backend, seed_sequences, times, *, progress=None, chunk_steps: int | None = None,
        desc: str = "simulate", inadmissible=None):
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
    marks, actual = save_schedule(times, backend.time_per_step)
    continuous = backend.time_per_step is None
    n_seeds = len(seed_sequences)
    state = backend.init(seed_sequences)
    total = float(marks[-1])
    if chunk_steps is None:
        chunk_steps = max(total / 200.0, 1.0) if not continuous else max(total / 200.0, 1e-12)
    data: dict[str, np.ndarray] = {}
    diverged_at = np.full(n_seeds, -1.0)
    alive = np.ones(n_seeds, dtype=bool)
    loss0 = None
    obs0 = None
    reasons = [""] * n_seeds
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
            if not data:
                for name, arr in obs.items():
                    data[name] = np.full((n_seeds, marks.size) + np.shape(arr)[1:], np.nan)
            key = _loss_key(obs)
            if key is not None and loss0 is None:
                loss0 = np.abs(np.asarray(obs[key], dtype=np.float64))
            if obs0 is None:
                obs0 = {name: np.array(arr, dtype=np.float64) for name, arr in obs.items()}
            checks = {}
            nonfinite = np.zeros(n_seeds, dtype=bool)
            for name, arr in obs.items():
                arr = np.asarray(arr, dtype=np.float64)
                nonfinite |= ~np.all(np.isfinite(arr.reshape(n_seeds, -1)), axis=1)
            checks["non-finite values"] = nonfinite
            if key is not None:
                with np.errstate(invalid="ignore"):
                    checks[f"{key} grew by >{BLOWUP_FACTOR:.0e}x"] = (
                        np.abs(np.asarray(obs[key], dtype=np.float64)) > BLOWUP_FACTOR * (loss0 + 1.0))
            if inadmissible is not None:
                with np.errstate(all="ignore"):
                    checks.update(inadmissible(obs, obs0))
            bad = np.zeros(n_seeds, dtype=bool)
            for reason, flag in checks.items():
                flag = np.asarray(flag, dtype=bool)
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
    info = {"diverged_at": diverged_at, "n_steps": float(position), **backend.attrs(state)}
    if np.any(diverged_at >= 0):
        info["divergence_reason"] = "; ".join(f"seed {i}: {r}" for i, r in enumerate(reasons) if r)
        div = np.flatnonzero(diverged_at >= 0)
        first = div[np.argmin(diverged_at[div])]
        warnings.warn(f"{div.size} of {n_seeds} seeds diverged (first at t = {diverged_at[first]:.6g}: "
                      f"{reasons[first]}); their later values are NaN, attrs['diverged_at'] records the "
                      f"times and attrs['divergence_reason'] why. Lower the learning rate.",
                      RuntimeWarning, stacklevel=3)
    return actual, data, info
