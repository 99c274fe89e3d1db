"""Accuracy and cost of the default quadrature by span dimension r (run by hand).

For each r, a teacher with 3 components and a student with 6 in d = r, in four
regimes (optim: means 0.05 from a realizable optimum with matched weights; near:
the same means with uniform weights; mid: means 0.6 away; far: one student component
8 away from the teacher), compares the
default rule with a much finer one (the reference) and prints the relative error,
the returned error estimate and the median time of one value-and-gradient
evaluation (compiled), plus the ratio to the teacher-centred (non-defensive) rule
measured in the same run.

    .venv/bin/python benchmarks/quadrature_accuracy.py [--max-rank 5]
"""

import argparse
import time

import jax
import numpy as np

import overgmm as og

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


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--max-rank", type=int, default=5)
    args = parser.parse_args()
    print(f"{'r':>2} {'regime':>6} {'loss':>10} {'rel.err':>9} {'estimate':>9} {'eval s':>8} {'defensive/plain':>15}")
    for r in range(1, args.max_rank + 1):
        rng = np.random.default_rng(r)
        tm = rng.normal(size=(3, r)) * 2.0
        teacher = og.Mixture(tm, [0.2, 0.3, 0.5])
        a = np.arange(6) % 3
        split = np.array([0.2, 0.3, 0.5])[a] / 2  # Delta_pi = 0: the optimum is realizable
        regimes = [
            ("optim", 0.05, 0.0, split),
            ("near", 0.05, 0.0, None),
            ("mid", 0.6, 0.0, None),
            ("far", 0.3, 8.0, None),
        ]
        for regime, scale, shift, weights in regimes:
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
    print("rule:", og.Quadrature().describe(args.max_rank))


if __name__ == "__main__":
    main()
