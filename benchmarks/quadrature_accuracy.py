"""Accuracy and cost of the population expectations, before/after in one run (by hand).

Pin BLAS/XLA threads first (this is what the numbers in the README were measured with):

    XLA_FLAGS="--xla_cpu_multi_thread_eigen=false intra_op_parallelism_threads=1" \\
        .venv/bin/python benchmarks/quadrature_accuracy.py [--max-rank 5] [--skip-products]

Sections (times are medians of compiled value-and-gradient evaluations):

1. Theorem 7's point of Xu et al. (c = 12, n = 3, teacher N(0, I_d)): per-component
   relative error of ``jax.grad(og.kl)`` against an independent 1-D scipy reference,
   ``Quadrature(tails="off")`` (the rule before issue 11) and the default ``"auto"``.
2. Product-mixture references in r = 3..6 dimensions (teacher means 6 apart; exact KL
   and gradient from 1-D integrals, tests/product_reference.py): relative error of loss
   and gradient, the returned error estimate over the actual error, seconds.
3. The README's random configurations by r (optim / near / mid / far), error against a
   finer rule and the cost of defensive over teacher-centred nodes.
4. Cost at r = 5, m = 3, n = 6 (the issue's reference point) and at d = 5, m = 3,
   n = 20 with about 1e5 nodes per teacher component against its floor (the
   exponentials and GEMMs of the same shape).
"""

import argparse
import itertools
import math
import sys
import time
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
from jax.scipy.special import logsumexp

import overgmm as og

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))
from product_reference import product_case, product_mixture, product_reference  # noqa: E402
from test_tails import _reference_g1, _theorem7_means  # noqa: E402

FINE = {1: (401, 10.0), 2: (241, 10.0), 3: (61, 8.5), 4: (25, 7.5), 5: (21, 7.0)}


def median_time(fn, *args, repeat=5):
    jax.block_until_ready(fn(*args))
    times = []
    for _ in range(repeat):
        t0 = time.perf_counter()
        jax.block_until_ready(fn(*args))
        times.append(time.perf_counter() - t0)
    return float(np.median(times))


def value_and_grad(teacher, student, backend):
    return jax.value_and_grad(lambda s: og.kl(teacher, s, backend=backend))(student)


def theorem7(ds):
    print("\n1. Theorem 7 (c = 12, n = 3): relative error of dL/dmu_1 (and |dL/dmu_3|, true 0), ms per eval")
    print(f"{'d':>3} {'true g1':>10} {'off: rel':>9} {'off: ms':>8} {'auto: rel':>9} {'auto |g3|':>9} {'auto: ms':>8}")
    for d in ds:
        teacher = og.Mixture(np.zeros((1, d)))
        mu = jnp.asarray(_theorem7_means(d))
        g1 = _reference_g1(12.0 * math.sqrt(d), 3)
        row = []
        for tails in ("off", "auto"):
            q = og.Quadrature(tails=tails)
            f = jax.jit(jax.value_and_grad(lambda m, q=q, t=teacher: og.kl(t, og.Mixture(m), backend=q)))
            g = np.asarray(f(mu)[1])
            row += [abs(g[0, 0] / g1 - 1), float(np.max(np.abs(g[2]))), 1e3 * median_time(f, mu)]
        print(f"{d:>3} {g1:10.3e} {row[0]:9.1e} {row[2]:8.1f} {row[3]:9.1e} {row[4]:9.1e} {row[5]:8.1f}")


def products(ranks):
    print("\n2. Product-mixture references (exact): default rule (before) and rule='anisotropic'")
    print(
        f"{'rule':>11} {'r':>2} {'n':>3} {'m':>2} {'case':>5} {'loss':>10} {'rel L':>8} {'rel grad':>8} "
        f"{'est/act':>8} {'eval s':>7}"
    )
    for r, away, rule in itertools.product(ranks, (False, True), ("auto", "anisotropic")):
        tf, sf = product_case(r, away)
        (tm, tw, _), (sm, sw, _) = product_mixture(tf), product_mixture(sf)
        kl, gm, ga = product_reference(tf, sf)
        teacher, student = og.Mixture(tm, tw), og.Mixture(sm, sw)
        f = jax.jit(value_and_grad, static_argnums=2)
        q = og.Quadrature(rule=rule)
        val, g = f(teacher, student, q)
        est = og.kl(teacher, student, backend=q, with_error=True)
        gg = np.concatenate([np.asarray(g.means).ravel(), np.asarray(g.log_weights)])
        gr = np.concatenate([gm.ravel(), ga])
        act = abs(float(val) - kl)
        print(
            f"{rule:>11} {r:>2} {len(sm):>3} {len(tm):>2} {'away' if away else 'near':>5} {kl:10.3e} "
            f"{act / kl:8.1e} {np.linalg.norm(gg - gr) / np.linalg.norm(gr):8.1e} "
            f"{float(est.error) / max(act, 1e-300):8.3g} {median_time(f, teacher, student, q, repeat=3):7.3f}"
        )


def random_configs(max_rank):
    print("\n3. Random configurations (README table): error against a finer rule")
    print(f"{'r':>2} {'regime':>6} {'loss':>10} {'rel.err':>9} {'estimate':>9} {'eval s':>8} {'defensive/plain':>15}")
    for r in range(1, max_rank + 1):
        rng = np.random.default_rng(r)
        tm = rng.normal(size=(3, r)) * 2.0
        teacher = og.Mixture(tm, [0.2, 0.3, 0.5])
        a = np.arange(6) % 3
        split = np.array([0.2, 0.3, 0.5])[a] / 2
        for regime, scale, shift, weights in [
            ("optim", 0.05, 0.0, split),
            ("near", 0.05, 0.0, None),
            ("mid", 0.6, 0.0, None),
            ("far", 0.3, 8.0, None),
        ]:
            means = tm[a] + scale * rng.normal(size=(6, r))
            means[0] += shift
            student = og.Mixture(means, np.full(6, 1 / 6) if weights is None else weights)
            k, hw = FINE[r]
            ref = float(og.kl(teacher, student, backend=og.Quadrature(nodes=k, half_width=hw)))
            est = og.kl(teacher, student, with_error=True)
            rel = abs(float(est.value) - ref) / ref
            f = jax.jit(value_and_grad, static_argnums=2)
            t_def = median_time(f, teacher, student, og.Quadrature())
            t_plain = median_time(f, teacher, student, og.Quadrature(defensive=False))
            print(
                f"{r:>2} {regime:>6} {ref:10.3e} {rel:9.1e} {float(est.error) / ref:9.1e} "
                f"{t_def:8.4f} {t_def / t_plain:15.1f}"
            )


def costs():
    print("\n4. Cost")
    rng = np.random.default_rng(5)
    teacher = og.Mixture(rng.normal(size=(3, 5)) * 2.0, [0.2, 0.3, 0.5])
    student = og.Mixture(np.asarray(teacher.means)[np.arange(6) % 3] + 0.3 * rng.normal(size=(6, 5)))
    f = jax.jit(value_and_grad, static_argnums=2)
    for q in (og.Quadrature(), og.Quadrature(rule="anisotropic")):
        print(f"r=5 m=3 n=6 {q.describe(5)}: {1e3 * median_time(f, teacher, student, q):.1f} ms")
    student20 = og.Mixture(np.asarray(teacher.means)[np.arange(20) % 3] + 0.3 * rng.normal(size=(20, 5)))
    q = og.Quadrature(nodes=15, defensive=False)
    k = len(og.expectations._tensor_rule("trapezoid", 15, 5, 6.5)[1])
    t_kl = median_time(f, teacher, student20, q)

    x = jnp.asarray(rng.normal(size=(3 * k, 5)))

    @jax.jit
    def floor(x, sm, tmn):
        def loss(sm):
            ls = x @ sm.T - 0.5 * jnp.sum(sm**2, axis=-1)
            lt = x @ tmn.T - 0.5 * jnp.sum(tmn**2, axis=-1)
            return jnp.mean(logsumexp(lt, axis=-1) - logsumexp(ls, axis=-1))

        return jax.value_and_grad(loss)(sm)

    t_floor = median_time(floor, x, student20.means, teacher.means)
    print(
        f"d=5 m=3 n=20, {k} nodes per teacher component (teacher-centred): {1e3 * t_kl:.1f} ms; "
        f"floor (logits GEMMs + logsumexp + backward, same shapes): {1e3 * t_floor:.1f} ms; ratio {t_kl / t_floor:.2f}"
    )


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--max-rank", type=int, default=5)
    parser.add_argument("--skip-products", action="store_true")
    args = parser.parse_args()
    theorem7([1, 2, 3, 5, 8, 12, 16, 20])
    if not args.skip_products:
        products([3, 4, 5, 6])
    random_configs(args.max_rank)
    costs()


if __name__ == "__main__":
    main()
