"""JAX engine of the one-pass DLN DMFT (docs/theory/dln.md §5.2); :mod:`hidyn.solvers.dmft.dln` is the reference.

The DMFT of GD on a diagonal linear network is solved in one causal forward pass over the GD steps
(docs/theory/dln.md §5.2).  Its cost splits very unevenly:

* **sample side** — K single-site trajectories, their forward-mode response tangents ∂β^l/∂h^j with
  the memory term, the per-batch rows of C_Δ and R_β, the separable observables: O(K T²) memory and
  O(K T³/6) flops.  This is the part that benefits from an accelerator, and it runs here as jitted,
  sample-vectorised JAX kernels (one per step; the step index is a traced argument, so each kernel
  compiles once per (T, K) shape and is reused across steps and solves).
* **kernel side** — row k of M = (I + R_β/δ)^{-1}, of C_r = M (C_Δ + σ²) Mᵀ and of the incremental
  Cholesky factor of C_r/δ: O(T²) per step, independent of K.  It runs on the host with the very
  classes the numpy engine uses (:mod:`hidyn.solvers.dmft.grid`).  The Cholesky row is a
  least-squares solve restricted to the kept pivots (about 15–30 of them, docs/theory/dln.md §10 pitfall 5);
  a static-shape device version has to factor the full padded (T+1)² system every step (measured
  6.5 ms per step for T = 150 on the 2-core CPU against 0.4 ms for the rank-restricted host solve),
  and sharing the host code keeps the pivot decisions identical to the reference.

Per step the host and the device exchange a few rows of length T+1 (C_Δ and R_β rows per batch one
way, M and Cholesky rows the other), so the device does all O(K)-sized work and the transfers are
O(T) numbers.  With the same ``seed`` the two engines draw the same teacher samples and white noise
(the random numbers come from numpy on the host), so their results agree to rounding, not only
within Monte-Carlo error.

Float64 is switched on with the scoped ``jax.enable_x64(True)`` context inside :func:`solve`; the
global JAX configuration is never touched.

Tangent history layout: rows l and kick times j < l are stored in square tiles of ``block × block``
(l, j) entries × K samples, packed lower-triangularly (tile (lb, jb), jb <= lb, at index
lb(lb+1)/2 + jb).  The memory contraction δg^k_j = Σ_{l<=k} M[k, l] ∂β^l/∂h^j visits only the
tiles with l <= k through ``fori_loop``s with traced bounds, so it costs the same O(k² K/2) flops per
step as the reference instead of the O(T² K) of a fully masked contraction.

References
----------
S. Nishiyama, M. Imaizumi, arXiv:2510.01930; C. Gerbelot et al., arXiv:2210.06591 (discrete-time DMFT).
"""
from __future__ import annotations

import functools
import math
import time as _time
import warnings

import numpy as np

from hidyn.solvers.dmft import dln as _ref
from hidyn.solvers.dmft.grid import (
    DEFAULT_PIVOT_RTOL,
    CausalKernels,
    IncrementalCholesky,
    ResidualKernels,
)

__all__ = ["solve", "solve_gradient_flow", "estimate_memory", "available", "DEFAULT_BLOCK"]

#: Tile edge of the tangent history (rows l and kick times j per tile).  16 matches the numpy
#: engine's block; larger tiles waste more of the diagonal tiles but launch fewer kernels on a GPU.
DEFAULT_BLOCK = 16
_SUMS = ("overlap", "norm1", "norm2", "tp", "fp")


def available() -> bool:
    """True if jax can be imported (the engine's only extra dependency)."""
    try:
        import jax  # noqa: F401
    except ImportError:
        return False
    return True


def _import_jax():
    try:
        import jax
    except ImportError as exc:  # pragma: no cover - exercised only without jax
        raise ImportError("engine='jax' needs jax: pip install 'hidyn[jax]' (CPU) or 'hidyn[cuda12]'") from exc
    return jax


# ----------------------------------------------------------------------------------------------------
# sizes and memory
# ----------------------------------------------------------------------------------------------------
def _layout(n_steps: int, block: int) -> tuple[int, int, int]:
    """(n_tile_rows, padded length, number of packed tiles) for T = n_steps."""
    nb = -(-(n_steps + 1) // block)
    return nb, nb * block, nb * (nb + 1) // 2


def estimate_memory(n_samples: int, n_steps: int, tangent_dtype: str = "float32", n_batches: int = 8,
                    block: int = DEFAULT_BLOCK) -> dict:
    """Bytes :func:`solve` holds at its peak (device arrays plus host copies).

    Parameters
    ----------
    n_samples, n_steps, n_batches : int
        K, T and the number of error batches.
    tangent_dtype : {"float32", "float64"}
    block : int
        Tile edge of the tangent history.

    Returns
    -------
    dict
        ``tangent_history`` (packed tiles, ≈ K T²/2 (1 + block/T) items), ``tangent_state``
        (∂(a, b)/∂h^j and four per-step temporaries of shape (T+1, K) in the tangent dtype),
        ``samples`` (float64 Δβ history, white noise on device and on the host, and a float64 copy of
        the tangent row for the batch means), ``kernels`` (host kernels, as in the numpy engine) and
        ``total``.  The replica pass runs after the main pass has been freed, with the same total K.
    """
    it = np.dtype(tangent_dtype).itemsize
    _, npad, ntiles = _layout(n_steps, block)
    n = n_steps + 1
    out = {
        "tangent_history": ntiles * block * block * n_samples * it,
        "tangent_state": 6 * npad * n_samples * it,
        "samples": 3 * npad * n_samples * 8 + n * n_samples * 8 + 8 * n_samples * 8,
        "kernels": (8 * n_batches + 8) * n * n * 8,
    }
    out["total"] = sum(out.values())
    return out


def _check_memory(n_samples, n_steps, tangent_dtype, n_batches, budget_gb, block) -> int:
    est = estimate_memory(n_samples, n_steps, tangent_dtype, n_batches, block)["total"]
    if est > budget_gb * 1e9:
        k_fit = int(budget_gb * 1e9 / (est / n_samples))
        raise ValueError(
            f"DMFT solve (engine='jax') needs about {est / 1e9:.2f} GB (n_samples={n_samples}, "
            f"n_steps={n_steps}, tangent_dtype={tangent_dtype}), above memory_budget_gb={budget_gb:g}. "
            f"To fit: lower n_samples (at most ~{k_fit} at this n_steps), or reach the same time with "
            f"fewer steps (larger lr; memory grows like n_steps²), use tangent_dtype='float32', or raise "
            f"memory_budget_gb (an accelerator's memory is the limit on a GPU).")
    return int(est)


# ----------------------------------------------------------------------------------------------------
# device kernels (one closure per group; vmapped over groups)
# ----------------------------------------------------------------------------------------------------
@functools.cache
def _kernels(parametrization: str, tangent_dtype: str, block: int, n_batches: int):
    """Jitted per-step kernels for one static configuration.

    Returns ``(measure, advance_measure)``; both take the device state (a dict of arrays with a
    leading group axis, donated) and the step index k as a traced int, so they compile once per array
    shape.  Built inside ``jax.enable_x64(True)`` by the caller.
    """
    jax = _import_jax()
    import jax.numpy as jnp
    from jax import lax

    td = jnp.dtype(tangent_dtype)
    B = int(block)
    uv = parametrization == "uv"

    def tile_index(lb, jb):
        return lb * (lb + 1) // 2 + jb

    def write_row(tiles, row, k):
        """Store ∂β^k/∂h^j (all padded j) as row k%B of tiles (k//B, jb), jb <= k//B."""
        lb, r = k // B, k % B
        rows = row.reshape(-1, B, row.shape[-1])  # (nb, B, K): columns j grouped by tile

        def body(jb, tl):
            piece = lax.dynamic_index_in_dim(rows, jb, keepdims=True)[:, None]  # (1, 1, B, K)
            return lax.dynamic_update_slice(tl, piece, (tile_index(lb, jb), r, 0, 0))

        # columns j >= k of the row are exact zeros (no kick yet), so tiles jb > lb need no write
        return lax.fori_loop(0, lb + 1, body, tiles)

    def contract(tiles, m, k):
        """δg^k_j = Σ_{l=j+1}^{k} m[l] ∂β^l/∂h^j for every padded j (zero for j >= k)."""
        kb = k // B + 1  # tile rows holding some l <= k; m[l > k] = 0 masks the rest of the last one
        K = tiles.shape[-1]

        def over_j(jb, acc):
            def over_l(lb, part):
                tile = lax.dynamic_index_in_dim(tiles, tile_index(lb, jb), keepdims=False)  # (B, B, K)
                w = lax.dynamic_slice(m, (lb * B,), (B,))
                return part + jnp.einsum("l,ljk->jk", w, tile)

            part = lax.fori_loop(jb, kb, over_l, jnp.zeros((B, K), td))
            return lax.dynamic_update_slice(acc, part, (jb * B, 0))

        return lax.fori_loop(0, kb, over_j, jnp.zeros((m.shape[0], K), td))

    def measure(st, k):
        """Step 1–2 of docs/theory/dln.md §5.2 for one closure: Δβ^k, per-batch rows of C_Δ and R_β, observables."""
        a, b, bstar = st["a"], st["b"], st["bstar"]
        K = a.shape[0]
        Kb = K // n_batches
        beta = a * b if uv else a * a - b * b
        db = beta - bstar
        dbeta = lax.dynamic_update_slice(st["dbeta"], db[None], (k, 0))
        # C_Δ[k, l] per batch (rows l > k of the history are still zero)
        cb = jnp.einsum("lbi,bi->bl", dbeta.reshape(-1, n_batches, Kb), db.reshape(n_batches, Kb)) / Kb
        # ∂β^k/∂h^j from the propagated tangents of (a, b), in the tangent dtype as the reference
        a_t, b_t = a.astype(td), b.astype(td)
        if uv:  # δβ = v δu + u δv
            tk = st["dA"] * b_t + st["dB"] * a_t
        else:  # δβ = 2 (w+ δw+ − w− δw−)
            tk = st["dA"] * (2 * a_t) - st["dB"] * (2 * b_t)
        tiles = write_row(st["tiles"], tk, k)
        # R_β[k, j] per batch from the SAME samples as C_Δ (docs/theory/dln.md §10 pitfall 6), averaged in float64
        rb = tk.astype(jnp.float64).reshape(-1, n_batches, Kb).mean(axis=2).T
        bb, bs = beta.reshape(n_batches, Kb), bstar.reshape(n_batches, Kb)
        big = jnp.abs(bb) > _ref.SUPPORT_THRESHOLD
        supp = bs != 0
        sums = jnp.stack([(bb * bs).sum(1), jnp.abs(bb).sum(1), (bb * bb).sum(1),
                          (big & supp).sum(1).astype(jnp.float64), (big & ~supp).sum(1).astype(jnp.float64)],
                         axis=-1)
        # the tangents overflow before β does in a diverging run, hence the check on rb too
        finite = jnp.all(jnp.isfinite(beta)) & jnp.all(jnp.isfinite(cb)) & jnp.all(jnp.isfinite(rb))
        new = dict(st, dbeta=dbeta, tiles=tiles)
        return new, (cb, rb, sums, finite)

    def advance(st, k, m_row, l_row, lr):
        """Steps 4–5 of docs/theory/dln.md §5.2: field g^k and the GD step k → k+1 of states and tangents."""
        a, b = st["a"], st["b"]
        dA, dB, tiles = st["dA"], st["dB"], st["tiles"]
        zeta = l_row @ st["z"]  # ζ^k = Σ_{j<=k} L[k, j] z_j (entries j > k of the row are zero)
        g = zeta + m_row @ st["dbeta"]  # g^k = ζ^k + Σ_{l<=k} M[k, l] Δβ^l
        dG = contract(tiles, m_row.astype(td), k)  # memory term of the tangent of g^k
        g_t, a_t, b_t = g.astype(td), a.astype(td), b.astype(td)
        eta = lr.astype(td)
        if uv:  # δu' = δu − η(δv g + v δg), δv' = δv − η(δu g + u δg)  (simultaneous update)
            dA_new = dA - eta * (dB * g_t + dG * b_t)
            dB_new = dB - eta * (dA * g_t + dG * a_t)
            kick_a, kick_b = lr * b, lr * a
            a_new, b_new = a - lr * b * g, b - lr * a * g
        else:  # δw+' = δw+ (1 − 2ηg) − 2η w+ δg,  δw−' = δw− (1 + 2ηg) + 2η w− δg
            dA_new = dA * (1 - 2 * lr * g).astype(td) - dG * (2 * lr * a).astype(td)
            dB_new = dB * (1 + 2 * lr * g).astype(td) + dG * (2 * lr * b).astype(td)
            kick_a, kick_b = 2 * lr * a, -2 * lr * b
            a_new, b_new = a * (1 - 2 * lr * g), b * (1 + 2 * lr * g)
        # kick at j = k: the force enters as g − h and acts on the k → k+1 update only; rows j >= k of
        # the tangents were zero before (dG vanishes there too), so this is the only write they need
        dA_new = lax.dynamic_update_slice(dA_new, kick_a.astype(td)[None], (k, 0))
        dB_new = lax.dynamic_update_slice(dB_new, kick_b.astype(td)[None], (k, 0))
        return dict(st, a=a_new, b=b_new, dA=dA_new, dB=dB_new)

    def measure_all(st, k):
        return jax.vmap(measure, in_axes=(0, None))(st, k)

    def advance_measure_all(st, k, m_rows, l_rows, lr):
        st = jax.vmap(advance, in_axes=(0, None, 0, 0, None))(st, k, m_rows, l_rows, lr)
        return jax.vmap(measure, in_axes=(0, None))(st, k + 1)

    return (jax.jit(measure_all, donate_argnums=(0,)),
            jax.jit(advance_measure_all, donate_argnums=(0,)))


# ----------------------------------------------------------------------------------------------------
# one pass: device sample side + host kernel side
# ----------------------------------------------------------------------------------------------------
def _device(device):
    jax = _import_jax()
    if device is None or not isinstance(device, str):
        return device if device is not None else jax.devices()[0]
    name = {"cuda": "gpu"}.get(device, device)
    try:
        return jax.devices(name)[0]
    except RuntimeError as exc:
        raise ValueError(f"device={device!r}: no such JAX backend here ({exc})") from exc


def _one_pass(beta_star, z, *, n_groups, n_batches, a0, b0, ratio, noise, lr, n_steps, parametrization,
              tangent_dtype, pivot_rtol, eta_max, progress, desc, device, block):
    """One causal forward pass of ``n_groups`` independent closures (same returns as the reference's).

    The K samples form n_groups contiguous groups (one closure each) made of n_batches/n_groups
    contiguous batches (error bars).  Device kernels are vmapped over groups; the host owns, per
    group, the causal kernels, the n-side algebra and the incremental Cholesky of the reference.
    """
    jax = _import_jax()
    import jax.numpy as jnp

    K, G, B, T = beta_star.shape[0], n_groups, n_batches, n_steps
    n, Kb, Kg, bpg = T + 1, K // B, K // G, B // G
    nb, npad, ntiles = _layout(T, block)
    measure, advance_measure = _kernels(parametrization, tangent_dtype, block, bpg)
    td = np.dtype(tangent_dtype)

    def put(x):
        return jax.device_put(x, device)

    zpad = np.zeros((G, npad, Kg))
    zpad[:, :n] = z.reshape(n, G, Kg).transpose(1, 0, 2)
    st = {
        "a": put(np.full((G, Kg), float(a0))), "b": put(np.full((G, Kg), float(b0))),
        "bstar": put(beta_star.reshape(G, Kg)), "z": put(zpad),
        "dbeta": put(np.zeros((G, npad, Kg))),
        "dA": jax.device_put(jnp.zeros((G, npad, Kg), td), device),
        "dB": jax.device_put(jnp.zeros((G, npad, Kg), td), device),
        "tiles": jax.device_put(jnp.zeros((G, ntiles, block, block, Kg), td), device),
    }
    del zpad
    lr_dev = put(np.float64(lr))
    kerns = [CausalKernels(n) for _ in range(G)]
    resid = [ResidualKernels(n, ratio, noise) for _ in range(G)]
    chols = [IncrementalCholesky(n, pivot_rtol) for _ in range(G)]
    Cb = np.zeros((B, n, n))
    Rb = np.zeros((B, n, n))
    sums = {key: np.full((B, n), np.nan) for key in _SUMS}
    supp = (beta_star != 0).reshape(B, Kb)
    m_rows = np.zeros((G, npad))
    l_rows = np.zeros((G, npad))
    diverged_at = -1

    steps = range(n)
    if progress:
        from tqdm.auto import tqdm
        steps = tqdm(steps, desc=desc, total=n)
    for k in steps:
        if k == 0:
            st, rows = measure(st, 0)
        else:
            # copies: the host rows are overwritten in place at the next step
            st, rows = advance_measure(st, k - 1, put(m_rows.copy()), put(l_rows.copy()), lr_dev)
        cb, rb, sm, finite = jax.device_get(rows)  # the only per-step device -> host sync
        if not np.all(finite):
            diverged_at = k
            break
        cb = cb.reshape(B, npad)[:, : k + 1]
        rb = rb.reshape(B, npad)[:, :k]
        Cb[:, k, : k + 1] = cb
        Cb[:, : k + 1, k] = cb
        Rb[:, k, :k] = rb
        sm = sm.reshape(B, len(_SUMS))
        for i, key in enumerate(_SUMS):
            sums[key][:, k] = sm[:, i]
        for g in range(G):
            bat = slice(g * bpg, (g + 1) * bpg)
            kerns[g].set_C_row(k, cb[bat].mean(axis=0))
            kerns[g].set_R_row(k, rb[bat].mean(axis=0))
            # step 3: rows k of M = (I + R_β/δ)^{-1} and C_r = M (C_Δ + σ²) Mᵀ
            cr_row = resid[g].update(k, kerns[g].C[k, : k + 1], kerns[g].R[k, :k])
            if k < T:
                # step 4: row k of the Cholesky of C_r/δ with the relative pivot cutoff
                l_rows[g, : k + 1] = chols[g].add_row(cr_row / ratio)
                m_rows[g, : k + 1] = resid[g].M[k, : k + 1]
    del st  # frees the tangent history before the caller's next pass

    if diverged_at >= 0:
        warnings.warn(f"DMFT trajectories or responses diverged at step {diverged_at} "
                      f"(t = {lr * diverged_at:g}); outputs are NaN from there on. Lower lr (stability "
                      f"bound {eta_max:.4g}).", RuntimeWarning, stacklevel=3)
    return {
        "C": np.stack([kr.C for kr in kerns]), "R": np.stack([kr.R for kr in kerns]),
        "M": np.stack([r.M for r in resid]), "C_r": np.stack([r.C_r for r in resid]),
        "Cb": Cb, "Rb": Rb, "sums": sums, "n_supp": supp.sum(axis=1).astype(float),
        "ranks": [c.rank for c in chols], "diverged_at": diverged_at, "Kb": Kb,
    }


# ----------------------------------------------------------------------------------------------------
# public solver
# ----------------------------------------------------------------------------------------------------
def solve(*, ratio: float, sparsity: float, teacher: str = "rademacher", noise: float = 0.0,
          init_scale: float, init: str = "pesme", parametrization: str = "uv", lr: float, n_steps: int,
          n_samples: int = 16000, seed=0, n_batches: int = 8, tangent_dtype: str = "float32",
          memory_budget_gb: float = 4.0, pivot_rtol: float = DEFAULT_PIVOT_RTOL,
          error_method: str = "replicas", progress: bool = False, device=None,
          block: int = DEFAULT_BLOCK) -> dict:
    """Discrete-time DMFT of GD on a DLN, one causal forward pass, with JAX doing the sample side.

    Same model, parameters, outputs and random numbers as :func:`hidyn.solvers.dmft.dln.solve` (read
    its docstring for every parameter and output); only the engine differs (see the module
    docstring).  With equal ``seed`` the two engines agree to rounding.

    Parameters
    ----------
    ratio, sparsity, teacher, noise, init_scale, init, parametrization, lr, n_steps, n_samples, seed,
    n_batches, tangent_dtype, pivot_rtol, error_method, progress
        As in :func:`hidyn.solvers.dmft.dln.solve`.
    memory_budget_gb : float
        Refuse (ValueError) if :func:`estimate_memory` exceeds it (on a GPU, the device memory is
        what has to hold the tangent history).
    device : str or jax.Device, optional
        Where the sample side runs: ``"cpu"``, ``"gpu"``/``"cuda"``, a ``jax.Device``, or None for
        JAX's default device.
    block : int
        Tile edge of the tangent history (>= 1).

    Returns
    -------
    dict
        The keys of the numpy engine's :func:`~hidyn.solvers.dmft.dln.solve`, including every
        ``<name>_sem`` and ``info``; ``info`` also records ``engine = "jax"``, the JAX ``device``,
        ``jax_version`` and ``block``.
    """
    t_start = _time.perf_counter()
    _ref._validate(ratio, sparsity, teacher, noise, init_scale, init, parametrization, lr, n_steps,
                   n_samples, n_batches, tangent_dtype, memory_budget_gb, pivot_rtol)
    if error_method not in _ref.ERROR_METHODS:
        raise ValueError(f"error_method must be one of {_ref.ERROR_METHODS}, got {error_method!r}")
    if not isinstance(block, (int, np.integer)) or block < 1:
        raise ValueError(f"block must be an integer >= 1, got {block!r}")
    jax = _import_jax()
    dev = _device(device)
    mem_est = _check_memory(n_samples, n_steps, tangent_dtype, n_batches, memory_budget_gb, int(block))

    # identical random numbers to the numpy engine (same spawn order and draws)
    ss = seed if isinstance(seed, np.random.SeedSequence) else np.random.SeedSequence(seed)
    rngs = [np.random.default_rng(s) for s in ss.spawn(4)]
    K, T, nb = int(n_samples), int(n_steps), int(n_batches)
    n = T + 1
    a0, b0 = _ref.initial_state(init, parametrization, init_scale)
    Delta = a0**2 - b0**2 if parametrization == "uv" else 4 * a0 * b0
    beta0 = float(_ref._beta_of(a0, b0, parametrization))
    beta_star = _ref.sample_teacher(rngs[0], teacher, sparsity, nb, K // nb)
    beta_max = max(float(np.max(np.abs(beta_star))), abs(beta0))
    eta_max = _ref.gd_stability_bound(ratio, beta_max, Delta, parametrization)
    if lr >= eta_max:
        warnings.warn(
            f"lr={lr:g} exceeds the GD stability bound η < 2/(c·√(Δ²+4β_max²)·(1+δ^(-1/2))²) = "
            f"{eta_max:.4g} (docs/theory/dln.md §10 pitfall 4; δ={ratio:g}, β_max={beta_max:.3g}, Δ={Delta:.3g}, "
            f"c={1 if parametrization == 'uv' else 2}); GD may oscillate or diverge and its implicit bias "
            f"differs from gradient flow.", RuntimeWarning, stacklevel=2)
    common = dict(a0=a0, b0=b0, ratio=float(ratio), noise=float(noise), lr=float(lr), n_steps=T,
                  parametrization=parametrization, tangent_dtype=tangent_dtype, pivot_rtol=pivot_rtol,
                  eta_max=eta_max, progress=progress, device=dev, block=int(block))

    with jax.enable_x64(True), jax.default_device(dev):
        main = _one_pass(beta_star, rngs[1].standard_normal((n, K)), n_groups=1, n_batches=nb,
                         desc="DMFT (dln, jax)", **common)
        rep = None
        if error_method == "replicas":
            rep_star = _ref.sample_teacher(rngs[2], teacher, sparsity, nb, K // nb)
            rep = _one_pass(rep_star, rngs[3].standard_normal((n, K)), n_groups=nb, n_batches=nb,
                            desc="DMFT (dln, jax) replicas", **common)

    kmax = n if main["diverged_at"] < 0 else main["diverged_at"]
    out = {"time": lr * np.arange(n)}
    out.update({key: v[0] for key, v in _ref._group_curves(main, noise, 1).items()})
    out["C_delta"], out["R_beta"] = main["C"][0], main["R"][0]
    out["M"], out["C_r"] = main["M"][0], main["C_r"][0]
    if rep is None:
        sems = _ref._jackknife_sems(main, ratio, noise)
    else:
        curves = _ref._group_curves(rep, noise, nb)
        sems = {key: curves[key].std(axis=0, ddof=1) / math.sqrt(nb) for key in _ref._SCALARS}
        sems["C_delta"] = rep["C"].std(axis=0, ddof=1) / math.sqrt(nb)
        sems["R_beta"] = rep["R"].std(axis=0, ddof=1) / math.sqrt(nb)
        if rep["diverged_at"] >= 0:
            kmax = min(kmax, rep["diverged_at"])
    for key, val in sems.items():
        out[f"{key}_sem"] = val
    _ref.mask_after_divergence(out, kmax)  # NaN from the first non-finite step on, as the reference

    out["info"] = _ref.solve_info(
        ratio=ratio, sparsity=sparsity, teacher=teacher, noise=noise, init_scale=init_scale, init=init,
        parametrization=parametrization, lr=lr, n_steps=T, n_samples=K, n_batches=nb, seed=ss.entropy,
        tangent_dtype=tangent_dtype, pivot_rtol=pivot_rtol, n_pivots_kept=main["ranks"][0],
        memory_estimate_bytes=mem_est, memory_budget_gb=memory_budget_gb, gd_stability_bound=eta_max,
        error_method=error_method, diverged_at_step=-1 if kmax == n else kmax,
        wall_time_s=_time.perf_counter() - t_start)
    out["info"].update(engine="jax", device=str(dev), jax_version=jax.__version__, block=int(block))
    return out


def solve_gradient_flow(*, lr: float, n_steps: int, seed=0, **kwargs) -> dict:
    """Gradient-flow DMFT by Richardson extrapolation 2f(η/2) − f(η) of two JAX solves.

    The JAX counterpart of :func:`hidyn.solvers.dmft.dln.solve_gradient_flow`: same seeds, same
    extrapolation of curves, kernels and response densities, same combination of standard errors and
    the same ``info`` layout (``coarse_``/``fine_`` prefixes).  The fine solve (η/2, 2T) runs first so
    that a memory refusal comes before any work.

    Parameters
    ----------
    lr : float
        Coarse step η.
    n_steps : int
        T (coarse grid).
    seed : int or numpy.random.SeedSequence
    **kwargs
        Every other keyword of :func:`solve` (``device``, ``block`` included).

    Returns
    -------
    dict
    """
    ss = seed if isinstance(seed, np.random.SeedSequence) else np.random.SeedSequence(seed)
    s1, s2 = ss.spawn(2)
    fine = solve(lr=lr / 2, n_steps=2 * n_steps, seed=s2, **kwargs)
    coarse = solve(lr=lr, n_steps=n_steps, seed=s1, **kwargs)
    out = {"time": coarse["time"]}
    for key in _ref._SCALARS + ("C_delta", "C_r"):
        out[key] = _ref.richardson(coarse[key], fine[key])
    # R_β and M − I are O(step) kernels: extrapolate their densities (ratio η/(η/2) = 2)
    out["R_beta"] = _ref.richardson(coarse["R_beta"], 2.0 * fine["R_beta"])
    eye_c, eye_f = np.eye(n_steps + 1), np.eye(2 * n_steps + 1)
    out["M"] = eye_c + _ref.richardson(coarse["M"] - eye_c, 2.0 * (fine["M"] - eye_f))
    for key in _ref._SCALARS + ("C_delta",):
        sem_f = fine[f"{key}_sem"]
        sem_f = sem_f[tuple(slice(None, None, 2) for _ in range(sem_f.ndim))]
        out[f"{key}_sem"] = np.sqrt(4 * sem_f**2 + coarse[f"{key}_sem"] ** 2)
    out["R_beta_sem"] = np.sqrt(16 * fine["R_beta_sem"][::2, ::2] ** 2 + coarse["R_beta_sem"] ** 2)
    info = {"method": "dmft_richardson"}
    for tag, sol in (("coarse", coarse), ("fine", fine)):
        for key, val in sol["info"].items():
            info[f"{tag}_{key}"] = val
    for key in ("ratio", "sparsity", "teacher", "noise", "init_scale", "init", "parametrization"):
        info[key] = coarse["info"][key]
    info["lr"] = float(lr)
    info["n_steps"] = int(n_steps)
    info["wall_time_s"] = coarse["info"]["wall_time_s"] + fine["info"]["wall_time_s"]
    info["engine"] = "jax"
    out["info"] = info
    return out
