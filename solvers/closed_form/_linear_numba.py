"""Compiled loop of the exact online-SGD mode recursion (linear.md eq. 2.5); imported lazily by
:mod:`hidyn.solvers.closed_form.linear` so that ``import hidyn`` does not load numba."""
from __future__ import annotations

from numba import njit


# reassociation lets LLVM vectorise the two reductions (~5× measured); no nnan/ninf flags, so the
# divergence test below still sees NaN and inf
@njit(cache=True, nogil=True, fastmath={"reassoc", "contract"})
def recursion_kernel(lam, v, lrs, inv_batch, noise2, save_steps, out_loss, out_modes, keep_modes, blowup):
    """Advance v in place through ``save_steps[-1]`` steps, recording the loss (and v) at the save steps.

    One fused pass per step: v_i ← a_i(η)v_i + (η²/B)λ_i L, L ← σ² + Σ λ_i v_i (O(d)).  Returns the
    first step whose loss is non-finite or above ``blowup``·(L₀ + 1), or −1.
    """
    d = lam.size
    c = 1.0 + inv_batch
    loss = noise2
    for i in range(d):
        loss += lam[i] * v[i]
    limit = blowup * (loss + 1.0)
    j = 0
    n_save = save_steps.size
    total = save_steps[n_save - 1]
    for k in range(total + 1):
        while j < n_save and save_steps[j] == k:
            out_loss[j] = loss
            if keep_modes:
                for i in range(d):
                    out_modes[j, i] = v[i]
            j += 1
        if k == total:
            break
        eta = lrs[k]
        inject = eta * eta * inv_batch * loss
        e2c = eta * eta * c
        new = noise2
        for i in range(d):
            li = lam[i]
            vi = (1.0 - 2.0 * eta * li + e2c * li * li) * v[i] + inject * li
            v[i] = vi
            new += li * vi
        loss = new
        if not (loss <= limit):    # also catches NaN
            return k + 1
    return -1
