"""Benchmark: hidyn's two-layer ODE solver against naive loops, and how far it scales with width K.

Part 1 (docs/theory/teacher_student.md §6.1): K = M = 2, erf, η = 0.5, T = I, v = A = 1, first layer trained,
Q0 = diag(0.2, 0.3), R0 = δ·P with δ = 1e-3 and the note's matrix P; t ∈ [0, 1000] (plateau, escape at
t ≈ 266, convergence), ~200 log-spaced save times.

* ``solve``: :func:`hidyn.solvers.ode.two_layer.solve` (compiled erf right-hand side, Schur-complement
  variables) with the defaults (DOP853, rtol 1e-10, atol 1e-12), with rtol 1e-8, and with LSODA; each
  timed as the median of 3 runs (wall and CPU seconds: the CPU time is the robust figure on a shared
  machine).
* baselines, written as a researcher typically would — plain Python loops over i, k, n, m with ``math``
  and the expanded teacher/student sums of note §3, independent of hidyn's code: forward Euler with
  dt = 0.01 (1e5 steps), and scipy's DOP853 (rtol 1e-10, atol 1e-12) on that scalar right-hand side.
* reference: ``solve`` with rtol 1e-13, atol 1e-16.

Part 2: one right-hand-side evaluation at K = M ∈ {10, 50, 100} (compiled; the generic vectorised path
that builds the full I4 tensor at K = 10 for comparison), and the largest K = M whose ODE (T = I,
v = A = 1, η = 0.5, Q0 = I/4, R0 ~ 1e-3·U(0, 1), default tolerances) reaches t = 1000 within 60 s of wall
time.

Run with ``python benchmarks/two_layer_ode.py`` (several minutes: the naive loops and the 60-s
attempts); ``--skip-scaling`` runs part 1 only, ``--budget`` changes the 60 s.
"""
from __future__ import annotations

import argparse
import math
import time

import numpy as np

P_K2 = np.array([[0.625095, 0.897214], [0.775686, 0.225207]])


# ------------------------------------------------------------------------------------------------
# naive baseline: loops over indices, erf closed forms with math (note §3 expanded form, §4.1, §5)
# ------------------------------------------------------------------------------------------------
def _i3(caa, cab, cac, cbc, ccc):
    """E[g'(u_a) u_b g(u_c)] for g = erf(x/√2)."""
    return (2.0 / math.pi) * (cbc * (1 + caa) - cab * cac) / ((1 + caa) * math.sqrt((1 + caa) * (1 + ccc) - cac * cac))


def _i4(caa, cbb, ccc, cdd, cab, cac, cad, cbc, cbd, ccd):
    """E[g'(u_a) g'(u_b) g(u_c) g(u_d)] for g = erf(x/√2)."""
    l4 = (1 + caa) * (1 + cbb) - cab * cab
    l0 = l4 * ccd - cbc * cbd * (1 + caa) - cac * cad * (1 + cbb) + cab * cac * cbd + cab * cad * cbc
    l1 = l4 * (1 + ccc) - cbc * cbc * (1 + caa) - cac * cac * (1 + cbb) + 2 * cab * cac * cbc
    l2 = l4 * (1 + cdd) - cbd * cbd * (1 + caa) - cad * cad * (1 + cbb) + 2 * cab * cad * cbd
    x = max(-1.0, min(1.0, l0 / math.sqrt(l1 * l2)))
    return 4.0 / (math.pi ** 2) / math.sqrt(l4) * math.asin(x)


def _naive_rhs(Q, R, T, v, A, lr):
    K, M = len(Q), len(T)

    def cov(a, b):  # fields 0..K-1 students, K..K+M-1 teachers
        if a < K and b < K:
            return Q[a][b]
        if a < K:
            return R[a][b - K]
        if b < K:
            return R[b][a - K]
        return T[a - K][b - K]

    w = list(v) + list(A)                 # output weights of all fields
    sgn = [1.0] * K + [-1.0] * M          # student fields enter Δ with −, teachers with +

    def i3(a, b, c):
        return _i3(cov(a, a), cov(a, b), cov(a, c), cov(b, c), cov(c, c))

    def i4(a, b, c, d):
        return _i4(cov(a, a), cov(b, b), cov(c, c), cov(d, d), cov(a, b), cov(a, c), cov(a, d),
                   cov(b, c), cov(b, d), cov(c, d))

    dR = [[0.0] * M for _ in range(K)]
    for i in range(K):
        for n in range(M):
            s = 0.0
            for m in range(M):
                s += A[m] * i3(i, K + n, K + m)
            for j in range(K):
                s -= v[j] * i3(i, K + n, j)
            dR[i][n] = lr * v[i] * s
    dQ = [[0.0] * K for _ in range(K)]
    for i in range(K):
        for k in range(K):
            s = 0.0
            for m in range(M):
                s += A[m] * i3(i, k, K + m)
            for j in range(K):
                s -= v[j] * i3(i, k, j)
            s2 = 0.0
            for m in range(M):
                s2 += A[m] * i3(k, i, K + m)
            for j in range(K):
                s2 -= v[j] * i3(k, i, j)
            quad = 0.0
            for a in range(K + M):
                for b in range(K + M):
                    quad += sgn[a] * sgn[b] * w[a] * w[b] * i4(i, k, a, b)
            dQ[i][k] = lr * v[i] * s + lr * v[k] * s2 + lr * lr * v[i] * v[k] * quad
    return dQ, dR


def _naive_eg(Q, R, T, v, A):
    K, M = len(Q), len(T)
    e = 0.0
    for i in range(K):
        for k in range(K):
            e += v[i] * v[k] * math.asin(Q[i][k] / math.sqrt((1 + Q[i][i]) * (1 + Q[k][k])))
    for n in range(M):
        for m in range(M):
            e += A[n] * A[m] * math.asin(T[n][m] / math.sqrt((1 + T[n][n]) * (1 + T[m][m])))
    for i in range(K):
        for n in range(M):
            e -= 2 * v[i] * A[n] * math.asin(R[i][n] / math.sqrt((1 + Q[i][i]) * (1 + T[n][n])))
    return e / math.pi


def naive_euler(Q0, R0, T, v, A, lr, dt, save_steps):
    """Forward Euler; returns ε_g at the step numbers in ``save_steps`` (sorted ints)."""
    Q = [list(map(float, row)) for row in Q0]
    R = [list(map(float, row)) for row in R0]
    T = [list(map(float, row)) for row in T]
    v, A = list(map(float, v)), list(map(float, A))
    K, M = len(Q), len(T)
    out = []
    save = list(save_steps)
    pos = 0
    step = 0
    while pos < len(save):
        while pos < len(save) and save[pos] == step:
            out.append(_naive_eg(Q, R, T, v, A))
            pos += 1
        if pos == len(save):
            break
        dQ, dR = _naive_rhs(Q, R, T, v, A, lr)
        for i in range(K):
            for k in range(K):
                Q[i][k] += dt * dQ[i][k]
            for n in range(M):
                R[i][n] += dt * dR[i][n]
        step += 1
    return np.array(out)


def naive_dop853(Q0, R0, T, v, A, lr, times, rtol=1e-10, atol=1e-12):
    """scipy's DOP853 on the scalar Python right-hand side (state: Q and R flattened, Q in full)."""
    from scipy.integrate import solve_ivp

    K, M = len(Q0), len(T)
    T = [list(map(float, row)) for row in T]
    v, A = list(map(float, v)), list(map(float, A))

    def unflat(y):
        Q = [[float(y[i * K + k]) for k in range(K)] for i in range(K)]
        R = [[float(y[K * K + i * M + n]) for n in range(M)] for i in range(K)]
        return Q, R

    def rhs(t, y):
        Q, R = unflat(y)
        dQ, dR = _naive_rhs(Q, R, T, v, A, lr)
        return [x for row in dQ for x in row] + [x for row in dR for x in row]

    y0 = list(np.ravel(Q0)) + list(np.ravel(R0))
    sol = solve_ivp(rhs, (times[0], times[-1]), y0, method="DOP853", t_eval=times, rtol=rtol, atol=atol)
    eg = np.array([_naive_eg(*unflat(sol.y[:, j]), T, v, A) for j in range(sol.t.size)])
    return eg, int(sol.nfev)


def _max_rel(a, b, floor):
    mask = np.abs(b) > floor
    return float(np.max(np.abs(a[mask] - b[mask]) / np.abs(b[mask]))) if mask.any() else float("nan")


def _timed(fn, repeat=1):
    """Median wall and CPU seconds of ``repeat`` calls, and the last result."""
    walls, cpus = [], []
    for _ in range(repeat):
        w0, c0 = time.perf_counter(), time.process_time()
        out = fn()
        walls.append(time.perf_counter() - w0)
        cpus.append(time.process_time() - c0)
    return float(np.median(walls)), float(np.median(cpus)), out


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--t-max", type=float, default=1000.0)
    parser.add_argument("--n-save", type=int, default=200)
    parser.add_argument("--dt", type=float, default=0.01)
    parser.add_argument("--lr", type=float, default=0.5)
    parser.add_argument("--delta", type=float, default=1e-3)
    parser.add_argument("--budget", type=float, default=60.0, help="seconds per K in the scaling run")
    parser.add_argument("--skip-scaling", action="store_true")
    parser.add_argument("--only-scaling", action="store_true")
    parser.add_argument("--jax", action="store_true", help="also time the JAX/diffrax engine (part 1 problem)")
    parser.add_argument("--only-jax", action="store_true")
    args = parser.parse_args(argv)
    if args.only_scaling:
        return {"scaling": scaling(args.budget, args.lr)}

    from hidyn.solvers.ode.two_layer import solve

    Q0, R0 = np.diag([0.2, 0.3]), args.delta * P_K2
    T, v, A = np.eye(2), np.ones(2), np.ones(2)
    # log-spaced save times on the Euler grid (both methods are compared at identical times)
    steps = np.unique(np.round(np.logspace(math.log10(10 * args.dt), math.log10(args.t_max), args.n_save - 1)
                               / args.dt).astype(np.int64))
    steps = np.concatenate([[0], steps])
    times = steps * args.dt

    def run(rtol=1e-10, atol=1e-12, method="DOP853"):
        return solve(Q0, R0, T, v, A, "erf", times, lr=args.lr, rtol=rtol, atol=atol, method=method)

    if args.jax or args.only_jax:
        jax_part(Q0, R0, T, v, A, args.lr, times, run(1e-13, 1e-16)["test_loss"])
        if args.only_jax:
            return {}

    solve(Q0, R0, T, v, A, "erf", times[:5], lr=args.lr)  # warm-up (imports, caches)
    configs = [("hidyn solve, DOP853 rtol=1e-10 atol=1e-12 (default)", dict()),
               ("hidyn solve, DOP853 rtol=1e-8 atol=1e-12", dict(rtol=1e-8)),
               ("hidyn solve, LSODA rtol=1e-10 atol=1e-12", dict(method="LSODA"))]
    results = []
    for name, kw in configs:
        w, c, sol = _timed(lambda: run(**kw), repeat=3)
        results.append((name, w, c, sol["info"]["nfev"], sol["test_loss"]))
    ref = run(1e-13, 1e-16)
    w_euler, c_euler, eg_euler = _timed(lambda: naive_euler(Q0, R0, T, v, A, args.lr, args.dt, steps))
    results.append((f"naive Python Euler, dt={args.dt:g} ({steps[-1]} steps)", w_euler, c_euler, int(steps[-1]),
                    eg_euler))
    w_dop, c_dop, (eg_dop, nfev_dop) = _timed(lambda: naive_dop853(Q0, R0, T, v, A, args.lr, times))
    results.append(("naive Python RHS, scipy DOP853 rtol=1e-10 atol=1e-12", w_dop, c_dop, nfev_dop, eg_dop))

    eg_ref = ref["test_loss"]
    floor = 1e-8  # ε_g is a difference of O(1) arcsin terms: below ~1e-12 it is round-off
    early = times <= 200.0
    print(f"two-layer ODE benchmark: K=M=2, erf, lr={args.lr}, delta={args.delta}, t in [0, {args.t_max:g}], "
          f"{times.size} save times; eps_g from {eg_ref.min():.2e} to {eg_ref.max():.2e}")
    print(f"{'method':52s} {'wall [s]':>9s} {'cpu [s]':>8s} {'nfev':>7s} {'max rel':>9s} {'(t<=200)':>9s} "
          f"{'max abs':>9s} {'vs Euler wall/cpu':>18s} {'vs DOP853 cpu':>13s}")
    for name, w, c, nfev, eg in results:
        print(f"{name:52s} {w:9.3f} {c:8.3f} {nfev:7d} {_max_rel(eg, eg_ref, floor):9.2e} "
              f"{_max_rel(eg[early], eg_ref[early], floor):9.2e} {np.max(np.abs(eg - eg_ref)):9.2e} "
              f"{w_euler / w:8.1f}x/{c_euler / c:6.1f}x {c_dop / c:12.1f}x")
    print(f"errors vs DOP853 rtol=1e-13 atol=1e-16; relative errors over save times with eps_g_ref > {floor:g} "
          f"(the largest DOP853 relative error sits in the converged tail, eps_g ~ 1e-7, from its dense-output "
          f"interpolant)")
    print(f"Euler vs default solve: max rel. difference {_max_rel(eg_euler, results[0][4], floor):.3e}")
    out = {name: {"wall": w, "cpu": c} for name, w, c, _, _ in results}
    if not args.skip_scaling:
        out["scaling"] = scaling(args.budget, args.lr)
    return out


def jax_part(Q0, R0, T, v, A, lr, times, eg_ref):
    """The JAX/diffrax engine on the part-1 problem: first call (compiles), second call, accuracy."""
    from hidyn.solvers.ode import two_layer_jax

    if not two_layer_jax.available():
        print("JAX engine: jax/diffrax not installed")
        return
    first = _timed(lambda: two_layer_jax.solve(Q0, R0, T, v, A, "erf", times, lr=lr))
    second = _timed(lambda: two_layer_jax.solve(Q0, R0, T, v, A, "erf", times, lr=lr), repeat=3)
    lrs = np.linspace(0.3, 0.7, 8)
    batch = _timed(lambda: two_layer_jax.solve_batch(Q0, R0, T, v, A, "erf", times, lr=lrs))
    batch2 = _timed(lambda: two_layer_jax.solve_batch(Q0, R0, T, v, A, "erf", times, lr=lrs))
    eg = second[2]["test_loss"]
    floor = 1e-8
    print(f"JAX engine (diffrax Dopri8, rtol 1e-10, atol 1e-12): first call {first[0]:.2f} s wall / {first[1]:.2f} s "
          f"cpu (compiling), later calls {second[0]:.3f} s wall / {second[1]:.3f} s cpu; max rel. error of eps_g "
          f"{_max_rel(eg, eg_ref, floor):.2e}; vmap over 8 learning rates: first {batch[0]:.2f} s, "
          f"later {batch2[0]:.3f} s wall / {batch2[1]:.3f} s cpu")


# ------------------------------------------------------------------------------------------------
# part 2: width scaling
# ------------------------------------------------------------------------------------------------
class _OutOfTime(Exception):
    pass


def _system(K, lr, compiled=True):
    from hidyn.activations import get_activation
    from hidyn.solvers.ode.two_layer import _System

    return _System(np.eye(K), np.ones(K), np.ones(K), K, K, get_activation("erf"), lr, 0.0, False, 0.0, 1,
                   variables="schur", compiled=compiled)


def _init(K, seed=0):
    rng = np.random.default_rng(seed)
    return 0.25 * np.eye(K), 1e-3 * rng.uniform(size=(K, K))


def rhs_time(K, lr, compiled=True, repeat=3):
    sys_ = _system(K, lr, compiled)
    Q0, R0 = _init(K)
    y = sys_.pack(Q0, R0, None)
    sys_.rhs(0.0, y)                                          # compile / warm caches
    w, c, _ = _timed(lambda: sys_.rhs(0.0, y), repeat=repeat)
    return w, c


def run_to(K, lr, t_max, budget):
    """Integrate K = M to t_max with the default tolerances; (wall s, nfev) or (None, nfev) past the budget."""
    from hidyn.solvers.ode.integrate import integrate

    sys_ = _system(K, lr)
    Q0, R0 = _init(K)
    y0 = sys_.pack(Q0, R0, None)
    sys_.rhs(0.0, y0)
    count = [0]
    start = time.perf_counter()

    def rhs(t, y):
        count[0] += 1
        if time.perf_counter() - start > budget:
            raise _OutOfTime
        return sys_.rhs(t, y)

    try:
        res = integrate(rhs, y0, np.array([0.0, t_max]), rtol=1e-10, atol=1e-12)
    except _OutOfTime:
        return None, count[0], float("nan")
    Q, R, v, _ = sys_.unpack(res.y, project=True)
    from hidyn.observables import two_layer_test_loss

    eg = float(two_layer_test_loss(Q[-1], R[-1], np.eye(K), v[-1], np.ones(K), "erf", check=False))
    return time.perf_counter() - start, count[0], max(eg, 0.0)


def scaling(budget, lr):
    import os

    print(f"\nwidth scaling (K = M, erf, T = I, v = A = 1, lr = {lr}); numba threads: "
          f"{os.environ.get('NUMBA_NUM_THREADS', 'all cores')}")
    w, c = rhs_time(10, lr, compiled=False)
    print(f"one RHS evaluation, generic vectorised path (full I4 tensor), K = 10: wall {w * 1e3:.2f} ms, "
          f"cpu {c * 1e3:.2f} ms")
    rhs = {}
    for K in (10, 50, 100):
        w, c = rhs_time(K, lr, repeat=3 if K < 100 else 1)
        rhs[K] = (w, c)
        print(f"one RHS evaluation, compiled, K = {K}: wall {w * 1e3:.2f} ms, cpu {c * 1e3:.2f} ms "
              f"({K * (K + 1) // 2 * (2 * K) * (2 * K + 1) // 2:.3g} arcsines)")
    reached = {}
    for K in (2, 5, 10, 15, 20, 25, 30, 35, 40, 50):
        wall, nfev, eg = run_to(K, lr, 1000.0, budget)
        if wall is None:
            print(f"K = {K}: t = 1000 NOT reached within {budget:g} s ({nfev} RHS evaluations done)")
            break
        reached[K] = (wall, nfev, eg)
        print(f"K = {K}: t = 1000 reached in {wall:.1f} s wall, {nfev} RHS evaluations, eps_g(1000) = {eg:.3e}")
    if reached:
        print(f"largest K = M reaching t = 1000 within {budget:g} s: {max(reached)}")
    return {"rhs": rhs, "reached": reached}


if __name__ == "__main__":
    main()
