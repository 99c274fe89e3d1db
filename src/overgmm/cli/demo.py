"""``overgmm demo [--out DIR] [--steps T]``: a short end-to-end run (teacher -> exact
quadrature -> KL -> alternating Polyak and gradient EM -> history table -> figure).
"""

from __future__ import annotations

import argparse
import csv
import json
import time
from pathlib import Path

import overgmm as og
from overgmm.cli._args import positive_int
from overgmm.cli._data import command


def _demo(args: argparse.Namespace) -> int:
    import jax
    import numpy as np

    from overgmm.cli._data import check_out

    out = Path(args.out)
    check_out(out)
    # A 2-D teacher with 3 components and unequal weights; a 9-component student
    # that splits each teacher component in three (Delta_pi = 0), perturbed.
    teacher = og.Mixture([[0.0, 0.0], [3.0, 0.5], [-1.0, 3.0]], [0.2, 0.3, 0.5])
    rng = np.random.default_rng(args.seed)
    assign = np.repeat(np.arange(3), 3)
    student = og.Mixture(
        np.asarray(teacher.means)[assign] + 0.7 * rng.normal(size=(9, 2)), np.asarray(teacher.weights)[assign] / 3
    )
    problem = og.Problem.population(teacher)
    methods = {
        "polyak": og.polyak(problem, step_size=1.0, n_short=20),
        "gradient_em": og.gradient_em(problem, step_size=1.0),
    }
    rows, summary = [], {"backend": problem.describe(student), "steps": args.steps, "methods": {}}
    print(
        f"demo: a 9-component student learns a 3-component teacher in 2-D (KL by exact quadrature), "
        f"{args.steps} steps of each of {', '.join(methods)}; results go to {out}",
        flush=True,
    )
    for name, alg in methods.items():
        print(f"{name:12s} compiling and running {args.steps} steps ...", flush=True)
        t0 = time.perf_counter()
        hist = og.run(alg, student, args.steps, key=jax.random.key(args.seed))
        secs = time.perf_counter() - t0
        for r in hist.to_rows():
            rows.append({"method": name, **{k: r[k] for k in ("step", "grad_evals", "loss", "grad_norm", "polyak")}})
        summary["methods"][name] = {
            "algorithm": hist.algorithm,
            "final_loss": float(hist["loss"][-1]),
            "grad_evals": int(hist["grad_evals"][-1]),
            "seconds": round(secs, 2),
            "status": "ok" if hist.ok else "non-finite",
        }
        print(
            f"{name:12s} loss {hist['loss'][0]:.3e} -> {hist['loss'][-1]:.3e} "
            f"after {int(hist['grad_evals'][-1])} gradient evaluations ({secs:.1f} s)"
        )
    with open(out / "history.csv", "w", newline="") as fh:
        writer = csv.DictWriter(fh, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    (out / "summary.json").write_text(json.dumps(summary, indent=2))
    _demo_figure(rows, out / "demo.png", summary["backend"])
    print(f"backend: {summary['backend']}")
    print(f"wrote {out / 'history.csv'}, {out / 'summary.json'}, {out / 'demo.png'}")
    return 0


def _demo_figure(rows: list[dict], path: Path, backend: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6, 4))
    for method in dict.fromkeys(r["method"] for r in rows):
        rs = [r for r in rows if r["method"] == method]
        ax.semilogy([r["grad_evals"] for r in rs], [max(r["loss"], 1e-300) for r in rs], label=method)
        long = [r for r in rs if r["polyak"]]
        if long:
            ax.semilogy(
                [r["grad_evals"] for r in long],
                [max(r["loss"], 1e-300) for r in long],
                "v",
                ms=4,
                label=f"{method}: Polyak steps",
            )
    ax.set_xlabel("gradient evaluations")
    ax.set_ylabel("KL(teacher || student)")
    ax.set_title("d=2, m=3, n=9, split weights (exact quadrature)", fontsize=9)
    ax.legend(fontsize=8)
    fig.text(0.01, 0.01, backend, fontsize=6)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


COMMANDS = {"demo": "a short end-to-end run: Polyak vs gradient EM on a 2-D teacher"}


def register(sub) -> None:
    demo = sub.add_parser("demo", help=COMMANDS["demo"])
    demo.add_argument("--out", default="results/demo", help="output folder (default results/demo)")
    demo.add_argument("--steps", type=positive_int, default=220, help="steps per method (default 220)")
    demo.add_argument("--seed", type=int, default=0, help="seed of the student's perturbation (default %(default)s)")
    demo.set_defaults(func=command("demo", _demo))
