"""The default fit, end to end, as a practitioner meets it (issue 17): OverparamGMM with every
default against scikit-learn's ways of choosing a Gaussian mixture, each timed in a fresh
process, on bundled real data and on a synthetic 5-cluster mixture at three sizes.

    .venv/bin/python benchmarks/end_to_end.py --quick                    # iris and synth1e4, a smoke run
    nice -n 10 .venv/bin/python benchmarks/end_to_end.py                  # every data set (long: synth1e6)
    .venv/bin/python benchmarks/end_to_end.py --data iris wine --repeats 3 --out results/e2e.json

Data sets (``--data``):
* ``iris``, ``wine``, ``breast_cancer``, ``digits``: scikit-learn's bundled data, raw (no
  standardization, as a user would pass them), one random 80/20 train/test split
  (``train_test_split(test_size=0.2, random_state=0)``, not stratified).
* ``synth1e4``, ``synth1e5``, ``synth1e6``: :func:`synthetic`, 5 well-separated clusters with
  full anisotropic covariances in d = 10; train = N rows, test = 20000 fresh rows of the same
  mixture (same means and covariances, other rows).
* ``wide``: wide data, 500 rows of N(0, I) noise in d = 200 (400 to train, 100 to test; the
  second fit: 400 other rows). The right k is 1.

Methods, each in a fresh ``python`` process (imports and data loading before the clock
starts; OMP/OpenBLAS/MKL and XLA's CPU pinned to one thread each):
* ``overgmm``: ``OverparamGMM(random_state=0).fit(Xtrain)``, every default. The first fit in
  the process, then a second fit in the same process on new data of the same shape (real
  data: the training rows plus Gaussian jitter of 1e-3 x each feature's standard deviation;
  synthetic: N new rows of the same mixture). Per repeat: a ``cold`` process on an empty
  persistent compilation cache (a new ``OVERGMM_CACHE_DIR``), then a ``cached`` process on
  that same folder.
* ``sklearn_full_bic``: ``GaussianMixture(k, covariance_type="full", random_state=0)`` for
  k = 1..10, lowest BIC on the training data (time: the whole search).
* ``sklearn_doc_search``: scikit-learn's documented model selection (covariance types
  spherical, tied, diag, full x k = 1..10, lowest BIC; time: the whole search).
* ``sklearn_bgmm``: ``BayesianGaussianMixture(n_components=10, covariance_type="full",
  random_state=0)``; its components are those of weight > 0.01.

Reported per data set: time (median over ``--repeats``), chosen k and covariance type,
held-out log-likelihood per sample (``model.score(Xtest)``, nats), the ratios overgmm cold
first fit / each scikit-learn method's time, and the targets, met or missed: cold first fit
<= sklearn_full_bic; <= 0.5 x sklearn_doc_search; held-out log-likelihood within 0.02
nats/sample of the best scikit-learn method (or better); k == 5 on the synthetic data, k == 1 on ``wide``; on
iris, cold first fit <= 3 x and cached first fit <= 2 x sklearn_bgmm's (first) fit.

Prints a Markdown table (stdout, ready for the README), progress on stderr, and writes
every raw number to ``--out`` (JSON, default results/end_to_end.json under the repository
root). A child that fails or runs past ``--timeout`` is recorded as such (with the end of
its stderr); the run goes on.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
REAL = ("iris", "wine", "breast_cancer", "digits")
SYNTH = {"synth1e4": 10_000, "synth1e5": 100_000, "synth1e6": 1_000_000}
WIDE = {"wide": (500, 200)}  # rows (80% to train) x features of pure N(0, I) noise: the truth is k = 1
ALL_DATA = (*REAL, *SYNTH, *WIDE)
QUICK_DATA = ("iris", "synth1e4")
SYNTH_M, SYNTH_TEST_ROWS = 5, 20_000
SK_METHODS = ("sklearn_full_bic", "sklearn_doc_search", "sklearn_bgmm")
LL_TOL = 0.02  # nats/sample
JITTER = 1e-3  # x each feature's standard deviation, for the second fit on real data
PINNED = {
    "OMP_NUM_THREADS": "1",
    "OPENBLAS_NUM_THREADS": "1",
    "MKL_NUM_THREADS": "1",
    "XLA_FLAGS": "--xla_cpu_multi_thread_eigen=false intra_op_parallelism_threads=1",
}

# Each child reads a JSON spec from argv[1] (paths of .npy files) and prints one JSON line last.
OURS = """
import json, sys, time, warnings
spec = json.loads(sys.argv[1])
import numpy as np
from overgmm import OverparamGMM
Xtr, X2, Xte = (np.load(spec[k]) for k in ("train", "train2", "test"))
warnings.simplefilter("ignore")
t0 = time.perf_counter(); g = OverparamGMM(random_state=0).fit(Xtr); t1 = time.perf_counter()
g2 = OverparamGMM(random_state=0).fit(X2); t2 = time.perf_counter()
print(json.dumps({"first": t1 - t0, "second": t2 - t1, "k": int(g.n_components_), "type": g.covariance_type_,
                  "heldout": float(g.score(Xte)), "second_k": int(g2.n_components_),
                  "second_type": g2.covariance_type_}))
"""

SKLEARN = """
import json, sys, time, warnings
spec = json.loads(sys.argv[1])
import numpy as np
from sklearn.mixture import BayesianGaussianMixture, GaussianMixture
Xtr, Xte = (np.load(spec[k]) for k in ("train", "test"))
warnings.simplefilter("ignore")
method = spec["method"]
t0 = time.perf_counter()
if method == "sklearn_bgmm":
    g = BayesianGaussianMixture(n_components=10, covariance_type="full", random_state=0).fit(Xtr)
    k, kind = int(np.sum(g.weights_ > 0.01)), "full"
else:
    types = ["full"] if method == "sklearn_full_bic" else ["spherical", "tied", "diag", "full"]
    best = None
    for kind_ in types:
        for k_ in range(1, 11):
            m = GaussianMixture(k_, covariance_type=kind_, random_state=0).fit(Xtr)
            b = m.bic(Xtr)
            if best is None or b < best[0]:
                best = (b, m, k_, kind_)
    _, g, k, kind = best
t1 = time.perf_counter()
print(json.dumps({"time": t1 - t0, "k": k, "type": kind, "heldout": float(g.score(Xte))}))
"""


def synthetic(N, seed=0, d=10, m=5, rows_seed=None):
    """N rows of a mixture of m well-separated clusters with full anisotropic covariances in d
    dimensions. The mixture (means, covariances) depends only on ``seed``; ``rows_seed``
    (None: the same generator as the mixture) seeds the rows, so that another ``rows_seed``
    gives new data of the same mixture."""
    rng = np.random.default_rng([seed, 17])
    from scipy.stats import ortho_group

    mus = []
    while len(mus) < m:
        c = rng.normal(size=d) * 5
        if all(np.linalg.norm(c - o) > 12 for o in mus):
            mus.append(c)
    covs = []
    for _ in range(m):
        q = ortho_group.rvs(d, random_state=rng)
        ev = np.exp(rng.uniform(np.log(0.25), np.log(4), size=d))
        covs.append(q @ np.diag(np.sqrt(ev)))
    rows = rng if rows_seed is None else np.random.default_rng([seed, 17, rows_seed])
    comp = rows.integers(0, m, size=N)
    z = rows.normal(size=(N, d))
    return np.array(mus)[comp] + np.einsum("nde,ne->nd", np.array(covs)[comp], z)


def make_data(name: str):
    """(Xtrain, Xtrain2, Xtest): training rows, new training rows of the same shape (for the
    second fit) and held-out rows."""
    if name in SYNTH:
        N = SYNTH[name]
        return synthetic(N), synthetic(N, rows_seed=2), synthetic(SYNTH_TEST_ROWS, rows_seed=1)
    if name in WIDE:
        N, d = WIDE[name]
        X, X2 = (np.random.default_rng([0, 17, r]).normal(size=(N, d)) for r in (0, 2))
        n_train = int(0.8 * N)
        return X[:n_train], X2[:n_train], X[n_train:]
    from sklearn import datasets
    from sklearn.model_selection import train_test_split

    X = getattr(datasets, f"load_{name}")().data.astype(np.float64)
    Xtr, Xte = train_test_split(X, test_size=0.2, random_state=0)
    rng = np.random.default_rng([0, 17])
    Xtr2 = Xtr + JITTER * Xtr.std(0) * rng.normal(size=Xtr.shape)
    return Xtr, Xtr2, Xte


def child_env(cache: str | None = None) -> dict:
    env = {**os.environ, **PINNED}
    for k in ("OVERGMM_CACHE", "JAX_COMPILATION_CACHE_DIR"):  # the cache must be on, in our folder
        env.pop(k, None)
    if cache is not None:
        env["OVERGMM_CACHE_DIR"] = cache
    return env


class Runner:
    def __init__(self, timeout: float):
        self.timeout, self.t0 = timeout, time.perf_counter()

    def log(self, msg: str) -> None:
        print(f"[{time.perf_counter() - self.t0:8.1f} s] {msg}", file=sys.stderr, flush=True)

    def run(self, label: str, code: str, spec: dict, env: dict) -> dict:
        """Runs ``code`` in a fresh process; its last stdout line parsed, or {"error": ...}."""
        self.log(f"{label} ...")
        t = time.perf_counter()
        try:
            out = subprocess.run(
                [sys.executable, "-c", code, json.dumps(spec)],
                env=env,
                capture_output=True,
                text=True,
                timeout=self.timeout,
                cwd=ROOT,
            )
        except subprocess.TimeoutExpired:
            self.log(f"{label}: timed out after {self.timeout:.0f} s")
            return {"error": f"timeout after {self.timeout:.0f} s", "timeout": True}
        wall = time.perf_counter() - t
        lines = out.stdout.strip().splitlines()
        try:
            if out.returncode != 0:
                raise ValueError(f"exit status {out.returncode}")
            res = json.loads(lines[-1])
        except (ValueError, IndexError) as e:
            tail = "\n".join(out.stderr.strip().splitlines()[-15:])
            self.log(f"{label}: FAILED ({e}); stderr ends:\n{tail}")
            return {"error": f"{e}: {tail}", "stdout_tail": lines[-5:]}
        res["process_wall"] = wall
        self.log(f"{label}: done in {wall:.1f} s")
        return res


def _median(runs: list[dict], key: str) -> float | None:
    vals = [r[key] for r in runs if "error" not in r and key in r]
    return statistics.median(vals) if vals else None


def _first_ok(runs: list[dict]) -> dict | None:
    return next((r for r in runs if "error" not in r), None)


def summarize(name: str, runs: dict) -> dict:
    """Medians, choices, ratios and targets of one data set from its raw runs."""
    s: dict = {}
    ours = _first_ok(runs["overgmm_cold"])
    s["overgmm"] = {
        "cold_first": _median(runs["overgmm_cold"], "first"),
        "cached_first": _median(runs["overgmm_cached"], "first"),
        "second": _median(runs["overgmm_cold"], "second"),
        "cached_second": _median(runs["overgmm_cached"], "second"),
        "k": ours and ours["k"],
        "type": ours and ours["type"],
        "heldout": ours and ours["heldout"],
        "error": None if ours else (runs["overgmm_cold"] or [{"error": "not run"}])[0]["error"],
    }
    for m in SK_METHODS:
        r = _first_ok(runs[m])
        s[m] = {
            "time": _median(runs[m], "time"),
            "k": r and r["k"],
            "type": r and r["type"],
            "heldout": r and r["heldout"],
            "error": None if r else (runs[m] or [{"error": "not run"}])[0]["error"],
        }
    cold, cached = s["overgmm"]["cold_first"], s["overgmm"]["cached_first"]

    def ratio(a, b):
        return a / b if a is not None and b else None

    s["ratios"] = {f"cold_over_{m}": ratio(cold, s[m]["time"]) for m in SK_METHODS}
    s["ratios"].update({f"cached_over_{m}": ratio(cached, s[m]["time"]) for m in SK_METHODS})
    sk_ll = [s[m]["heldout"] for m in SK_METHODS if s[m]["heldout"] is not None]
    best_sk = max(sk_ll) if sk_ll else None
    s["best_sklearn_heldout"] = best_sk
    ll = s["overgmm"]["heldout"]
    s["heldout_gap"] = ll - best_sk if ll is not None and best_sk is not None else None

    def cmp(a, b, f=1.0):
        return None if a is None or b is None else a <= f * b

    t = {
        "cold_le_full_bic": cmp(cold, s["sklearn_full_bic"]["time"]),
        "cold_le_half_doc_search": cmp(cold, s["sklearn_doc_search"]["time"], 0.5),
        "heldout_within_0.02": None if s["heldout_gap"] is None else s["heldout_gap"] >= -LL_TOL,
    }
    if name in SYNTH:
        k = s["overgmm"]["k"]
        t["k_eq_5"] = None if k is None else k == SYNTH_M
    if name in WIDE:  # noise: one component is right
        k = s["overgmm"]["k"]
        t["k_eq_1"] = None if k is None else k == 1
    if name == "iris":
        t["cold_le_3x_bgmm"] = cmp(cold, s["sklearn_bgmm"]["time"], 3.0)
        t["cached_le_2x_bgmm"] = cmp(cached, s["sklearn_bgmm"]["time"], 2.0)
    s["targets"] = t
    return s


def _f(x, fmt=".3f", none="–"):
    return none if x is None else format(x, fmt)


def _mark(v):
    return "–" if v is None else ("met" if v else "missed")


def _method_cell(m: dict, with_type: bool = True) -> str:
    if m["time"] is None:
        return "timeout" if m["error"] and m["error"].startswith("timeout") else "error"
    typ = f" {m['type']}" if with_type else ""
    return f"{m['time']:.2f} s, k={m['k']}{typ}, {m['heldout']:.3f}"


def markdown(shapes: dict, summaries: dict) -> str:
    head = [
        "data",
        "N train x d",
        "overgmm cold / cached / 2nd fit (s)",
        "overgmm k, type, held-out LL",
        "sklearn_full_bic",
        "sklearn_doc_search",
        "sklearn_bgmm",
        "cold / full_bic",
        "cold / doc_search",
        "cold / bgmm",
        "cold <= full_bic",
        "cold <= 0.5 doc_search",
        "LL >= best - 0.02",
        "k right (5; wide: 1)",
        "iris: cold <= 3x, cached <= 2x bgmm",
    ]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for name, s in summaries.items():
        o, r, t = s["overgmm"], s["ratios"], s["targets"]
        if o["cold_first"] is None:
            ours_t = "timeout" if o["error"] and o["error"].startswith("timeout") else "error"
            ours_c = "–"
        else:
            ours_t = f"{_f(o['cold_first'], '.2f')} / {_f(o['cached_first'], '.2f')} / {_f(o['second'], '.2f')}"
            gap = "" if s["heldout_gap"] is None else f" ({s['heldout_gap']:+.3f})"
            ours_c = f"k={o['k']} {o['type']}, {o['heldout']:.3f}{gap}"
        n, d = shapes[name]
        iris = "–"
        if "cold_le_3x_bgmm" in t:
            iris = f"{_mark(t['cold_le_3x_bgmm'])}, {_mark(t['cached_le_2x_bgmm'])}"
        row = [
            name,
            f"{n} x {d}",
            ours_t,
            ours_c,
            _method_cell(s["sklearn_full_bic"], with_type=False),
            _method_cell(s["sklearn_doc_search"]),
            _method_cell(s["sklearn_bgmm"], with_type=False),
            *(_f(r[f"cold_over_{m}"], ".2f") for m in SK_METHODS),
            _mark(t["cold_le_full_bic"]),
            _mark(t["cold_le_half_doc_search"]),
            _mark(t["heldout_within_0.02"]),
            _mark(t.get("k_eq_5", t.get("k_eq_1"))),
            iris,
        ]
        lines.append("| " + " | ".join(row) + " |")
    lines += [
        "",
        "Times: medians over repeats, each fit in a fresh process (one thread), imports excluded; "
        "scikit-learn searches timed whole. Held-out LL: mean log-likelihood per test sample (nats); "
        "in brackets overgmm's gap to the best scikit-learn method. sklearn cells: time, chosen k "
        "(bgmm: weights > 0.01), covariance type, held-out LL. Ratios: overgmm cold first fit / method time.",
    ]
    return "\n".join(lines)


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data", nargs="+", default=list(ALL_DATA), choices=ALL_DATA, help="data sets (default: all)")
    ap.add_argument("--repeats", type=int, default=1, help="repeats per method (medians reported)")
    ap.add_argument("--quick", action="store_true", help="smoke run: iris and synth1e4, 1 repeat")
    ap.add_argument("--out", type=Path, default=ROOT / "results" / "end_to_end.json", help="JSON of raw numbers")
    ap.add_argument("--timeout", type=float, default=1800.0, help="seconds per child process")
    ap.add_argument(
        "--skip",
        nargs="+",
        default=[],
        choices=SK_METHODS,
        help="scikit-learn methods not to run (at 1e6 rows the 4-type search alone takes hours here)",
    )
    args = ap.parse_args(argv)
    if args.quick:
        args.data, args.repeats = list(QUICK_DATA), 1
    args.out.parent.mkdir(parents=True, exist_ok=True)
    runner = Runner(args.timeout)
    report = {
        "settings": {"data": args.data, "repeats": args.repeats, "timeout": args.timeout, "pinned_env": PINNED},
        "platform": {
            "python": sys.version.split()[0],
            "machine": platform.machine(),
            "processor": platform.processor(),
            "cpu_count": os.cpu_count(),
        },
        "data": {},
    }
    shapes, summaries = {}, {}
    for name in args.data:
        runner.log(f"{name}: making data")
        Xtr, Xtr2, Xte = make_data(name)
        shapes[name] = Xtr.shape
        runs: dict = {k: [] for k in ("overgmm_cold", "overgmm_cached", *SK_METHODS)}
        with tempfile.TemporaryDirectory(prefix="overgmm_e2e_") as tmp:
            spec = {}
            for key, X in (("train", Xtr), ("train2", Xtr2), ("test", Xte)):
                spec[key] = os.path.join(tmp, f"{key}.npy")
                np.save(spec[key], X)
            del Xtr, Xtr2, Xte
            for i in range(args.repeats):
                tag = f"{name} [{i + 1}/{args.repeats}]"
                with tempfile.TemporaryDirectory(prefix="overgmm_cache_") as cache:
                    env = child_env(cache)
                    cold = runner.run(f"{tag} overgmm cold", OURS, spec, env)
                    runs["overgmm_cold"].append(cold)
                    if "error" in cold:
                        runs["overgmm_cached"].append({"error": "skipped: the cold run failed"})
                    else:
                        runs["overgmm_cached"].append(runner.run(f"{tag} overgmm cached", OURS, spec, env))
                for m in SK_METHODS:
                    if m in args.skip:
                        runs[m].append({"error": "skipped (--skip)"})
                        continue
                    runs[m].append(runner.run(f"{tag} {m}", SKLEARN, {**spec, "method": m}, child_env()))
        summaries[name] = summarize(name, runs)
        report["data"][name] = {"shape_train": list(shapes[name]), "runs": runs, "summary": summaries[name]}
        args.out.write_text(json.dumps(report, indent=1) + "\n")  # after each data set: partial results survive
    report["markdown"] = markdown(shapes, summaries)
    args.out.write_text(json.dumps(report, indent=1) + "\n")
    runner.log(f"wrote {args.out}")
    print(report["markdown"])


if __name__ == "__main__":
    main()
