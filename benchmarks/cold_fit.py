"""Latency of a first fit: OverparamGMM against BayesianGaussianMixture(n_components=10),
each in a fresh process, on scikit-learn's iris (and optionally other bundled data sets).

Three overgmm timings per repeat, import time not counted (the imports run first):
* ``cold``: a fresh process with an empty persistent compilation cache (a new
  ``OVERGMM_CACHE_DIR``): everything is compiled;
* ``cached``: a second fresh process on the same cache folder (what every later process of
  a user pays);
* ``in-process``: a second fit in the same process (compiled code reused).

The peer is timed the same way (fresh process, first fit; then a second fit). Targets of
issue 9: cold <= 3x the peer's first fit, cached <= 2x. Medians over ``--repeats``.

    python benchmarks/cold_fit.py [--repeats 3] [--data iris wine] [--covariance-type diag]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile

OURS = """
import json, time, warnings
from sklearn.datasets import load_{data}
import overgmm
from overgmm import OverparamGMM
X = load_{data}().data
warnings.simplefilter("ignore")
t0 = time.perf_counter(); OverparamGMM(random_state=0{kw}).fit(X); t1 = time.perf_counter()
OverparamGMM(random_state=1{kw}).fit(X); t2 = time.perf_counter()
print(json.dumps({{"first": t1 - t0, "second": t2 - t1}}))
"""

PEER = """
import json, time, warnings
from sklearn.datasets import load_{data}
from sklearn.mixture import BayesianGaussianMixture
X = load_{data}().data
warnings.simplefilter("ignore")
t0 = time.perf_counter(); BayesianGaussianMixture(n_components=10, random_state=0).fit(X); t1 = time.perf_counter()
BayesianGaussianMixture(n_components=10, random_state=1).fit(X); t2 = time.perf_counter()
print(json.dumps({{"first": t1 - t0, "second": t2 - t1}}))
"""


def _run(code: str, env: dict) -> dict:
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True)
    return json.loads(out.stdout.strip().splitlines()[-1])


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--data", nargs="+", default=["iris"])
    ap.add_argument("--covariance-type", default=None, help="passed to OverparamGMM (default: its default)")
    args = ap.parse_args(argv)
    kw = f", covariance_type={args.covariance_type!r}" if args.covariance_type else ""
    print(
        f"{'data':14} {'peer first':>10} {'cold':>8} {'cached':>8} {'in-proc':>8} {'cold/peer':>9} {'cached/peer':>11}"
    )
    for data in args.data:
        peer, cold, cached, inproc = [], [], [], []
        for _ in range(args.repeats):
            peer.append(_run(PEER.format(data=data), dict(os.environ))["first"])
            with tempfile.TemporaryDirectory() as cache:
                env = {**os.environ, "OVERGMM_CACHE_DIR": cache}
                r = _run(OURS.format(data=data, kw=kw), env)
                cold.append(r["first"])
                inproc.append(r["second"])
                cached.append(_run(OURS.format(data=data, kw=kw), env)["first"])
        p, c, k, i = (statistics.median(x) for x in (peer, cold, cached, inproc))
        print(f"{data:14} {p:10.3f} {c:8.3f} {k:8.3f} {i:8.3f} {c / p:9.1f} {k / p:11.1f}", flush=True)


if __name__ == "__main__":
    main()
