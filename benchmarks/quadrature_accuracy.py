"""Accuracy and cost of the population expectations, before/after in one run (by hand).

Pin BLAS/XLA threads first (this is what the numbers in the README were measured with):

    XLA_FLAGS="--xla_cpu_multi_thread_eigen=false intra_op_parallelism_threads=1" \\
        .venv/bin/python benchmarks/quadrature_accuracy.py [--max-rank 5] [--skip-products]

Sections (times are medians of compiled value-and-gradient evaluations):

1. Theorem 7's point of Xu et al. (c = 12, n = 3, teacher N(0, I_d)): relative error of
   the whole gradient vector of ``jax.grad(og.kl)`` against an independent 1-D scipy
   reference, ``Quadrature(tails="off")`` (before issue 19) and the default.
2. Product-mixture references in r = 3..6 dimensions (teacher means 6 apart; exact KL
   and gradient from 1-D integrals, tests/product_reference.py): relative error of loss
   and gradient, the returned error estimate over the actual error, seconds;
   ``rule="trapezoid"`` (the default before issue 19) and the default.
3. The README's random configurations by r (optim / near / mid / far), error against a
   finer rule and the cost of defensive over teacher-centred nodes.
4. Cost at r = 5, m = 3, n = 6 (the issue's reference point) and at r = 2, before
   (trapezoid, tails off) and with the defaults, and at d = 5, m = 3, n = 20 with about
   1e5 nodes per teacher component against its floor (the exponentials and GEMMs of
   the same shape).
5. The first value-and-gradient call in a fresh process with an empty compilation
   cache, before and with the defaults, eager and under jit.
6. Score matching at t = 0 against a finer rule.

``--only SECTION`` runs one section.
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

FINE = {1: (401, 10.0), 2: (241, 10.0)}


def fine_rule(r: int) -> og.Quadrature:
    """The reference of section 3: a finer trapezoid rule at r <= 2, a finer anisotropic
    rule above (finer sharp spacing, 13 Gauss-Hermite nodes per mild axis)."""
    if r <= 2:
        k, hw = FINE[r]
        return og.Quadrature(rule="trapezoid", nodes=k, half_width=hw)
    return og.Quadrature(rule="anisotropic", nodes=13, spacing=0.2, half_width=8.0)


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
    print("\n1. Theorem 7 (c = 12, n = 3): relative error of the whole gradient vector (norm of the error over")
    print("   the norm of the reference, which has g1 and -g1 on mu_1, mu_2 and 0 elsewhere), ms per eval")
    print(f"{'d':>3} {'true g1':>10} {'before: rel':>11} {'ms':>6} {'default: rel':>12} {'|g3|':>9} {'ms':>6}")
    for d in ds:
        teacher = og.Mixture(np.zeros((1, d)))
        mu = jnp.asarray(_theorem7_means(d))
        g1 = _reference_g1(12.0 * math.sqrt(d), 3)
        ref = np.zeros((3, d))
        ref[0, 0], ref[1, 0] = g1, -g1
        row = []
        for q in (og.Quadrature(tails="off"), og.Quadrature()):
            f = jax.jit(jax.value_and_grad(lambda m, q=q, t=teacher: og.kl(t, og.Mixture(m), backend=q)))
            g = np.asarray(f(mu)[1])
            scale = abs(g1)  # the squares of 1e-157 entries would underflow
            rel = np.linalg.norm((g - ref) / scale) / np.linalg.norm(ref / scale)
            row += [rel, float(np.max(np.abs(g[2]))), 1e3 * median_time(f, mu)]
        print(f"{d:>3} {g1:10.3e} {row[0]:11.1e} {row[2]:6.1f} {row[3]:12.1e} {row[4]:9.1e} {row[5]:6.1f}")


def products(ranks):
    print("\n2. Product-mixture references (exact): rule='trapezoid' (the default before issue 19) and the default")
    print(
        f"{'rule':>11} {'r':>2} {'n':>3} {'m':>2} {'case':>5} {'loss':>10} {'rel L':>8} {'rel grad':>8} "
        f"{'est/act':>8} {'eval s':>7}"
    )
    for r, away, rule in itertools.product(ranks, (False, True), ("trapezoid", "auto")):
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
            ref = float(og.kl(teacher, student, backend=fine_rule(r)))
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
    for q in (og.Quadrature(rule="trapezoid", tails="off"), og.Quadrature()):
        print(f"r=5 m=3 n=6 {q.describe(5, True, (3, 6))}: {1e3 * median_time(f, teacher, student, q):.1f} ms")
    t2 = og.Mixture(rng.normal(size=(2, 2)) * 2.0)
    s2 = og.Mixture(np.asarray(t2.means)[np.arange(3) % 2] + 0.3 * rng.normal(size=(3, 2)))
    for q in (og.Quadrature(tails="off"), og.Quadrature()):
        print(f"r=2 m=2 n=3 {q.describe(2, True, (2, 3))}: {1e3 * median_time(f, t2, s2, q):.1f} ms")
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


_FIRST_CALL = """
import sys, time
import jax, numpy as np
import overgmm as og
d, m, n, mode, backend = int(sys.argv[1]), int(sys.argv[2]), int(sys.argv[3]), sys.argv[4], sys.argv[5]
rng = np.random.default_rng(5)
teacher = og.Mixture(rng.normal(size=(m, d)) * 2.0)
student = og.Mixture(np.asarray(teacher.means)[np.arange(n) % m] + 0.3 * rng.normal(size=(n, d)))
q = og.Quadrature(rule="trapezoid", tails="off") if backend == "before" else og.Quadrature()
f = jax.value_and_grad(lambda s: og.kl(teacher, s, backend=q))
f = jax.jit(f) if mode == "jit" else f
t0 = time.perf_counter()
jax.block_until_ready(f(student))
print(time.perf_counter() - t0)
"""


def first_calls(repeat=3):
    """Seconds of the first value-and-gradient call in a fresh process with an empty
    compilation cache: eager (``jax.value_and_grad(og.kl)``) and under ``jax.jit``."""
    import os
    import subprocess
    import tempfile

    print("\n5. First call in a fresh process, empty compilation cache (median of 3, seconds)")
    print(f"{'shape':>14} {'mode':>6} {'before':>7} {'default':>8} {'ratio':>6}")
    for d, m, n in ((2, 2, 3), (5, 3, 6)):
        for mode in ("eager", "jit"):
            row = []
            for backend in ("before", "default"):
                times = []
                for _ in range(repeat):
                    with tempfile.TemporaryDirectory() as cache:
                        env = dict(os.environ, OVERGMM_CACHE_DIR=cache)
                        args = [sys.executable, "-c", _FIRST_CALL, str(d), str(m), str(n), mode, backend]
                        out = subprocess.run(args, env=env, capture_output=True, text=True, check=True)
                        times.append(float(out.stdout.split()[-1]))
                row.append(float(np.median(times)))
            print(f"{f'd={d} m={m} n={n}':>14} {mode:>6} {row[0]:7.2f} {row[1]:8.2f} {row[1] / row[0]:6.2f}")


def score_matching_t0():
    """Score matching at t = 0 (teacher N(0, I_3), n = 5): the default rule against a
    121-node rule (half width 10), loss and gradient."""
    print("\n6. Score matching at t = 0, d = 3 (r = 3): relative error against a 121-node rule")
    rng = np.random.default_rng(0)
    teacher = og.Mixture(np.zeros((1, 3)))
    cases = {
        "S1 start M=6": np.array([6.0, 0, 0]) + 1e-7 * rng.normal(size=(5, 3)),
        "spread": rng.normal(size=(5, 3)) * 2.0,
        "means 10 apart": np.array([[0.3, 0.1, 0], [5, 1, 0], [-4, 2, 1], [6, -3, 2], [0.1, 0.2, 0.1]]),
    }
    fine = og.Quadrature(nodes=121, half_width=10.0)
    for name, means in cases.items():

        def loss(mm, q):
            return og.score_matching(teacher, og.Mixture(mm), 0.0, backend=q)

        ref, gref = jax.value_and_grad(loss)(means, fine)
        val, g = jax.value_and_grad(loss)(means, og.Quadrature())
        est = og.score_matching(teacher, og.Mixture(means), 0.0, with_error=True)
        print(
            f"{name:>15}: loss {float(ref):.4e}, rel {abs(float(val - ref)) / float(ref):.1e} "
            f"(estimate {float(est.error) / float(ref):.1e}), gradient rel "
            f"{float(jnp.linalg.norm(g - gref) / jnp.linalg.norm(gref)):.1e}"
        )


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--max-rank", type=int, default=5)
    parser.add_argument("--skip-products", action="store_true")
    parser.add_argument("--only", choices=["theorem7", "products", "random", "costs", "first", "score"])
    args = parser.parse_args()
    sections = {
        "theorem7": lambda: theorem7([1, 2, 3, 5, 8, 12, 16, 20]),
        "products": lambda: None if args.skip_products else products([3, 4, 5, 6]),
        "random": lambda: random_configs(args.max_rank),
        "costs": costs,
        "first": first_calls,
        "score": score_matching_t0,
    }
    for name, run in sections.items():
        if args.only in (None, name):
            run()


if __name__ == "__main__":
    main()
