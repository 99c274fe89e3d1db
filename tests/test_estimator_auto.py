"""The "auto" rule's held-out statistics (overgmm.estimator._auto.held_moments): the
standard error of a per-row difference between types, the same in one call and summed
over chunks, and the half-standard-error margin of simplest_type."""

from __future__ import annotations

import jax
import numpy as np
import pytest

from overgmm import Mixture, OverparamGMM, chunks, streaming
from overgmm.estimator import _auto as A
from overgmm.estimator import _fit as F
from overgmm.estimator._fit import AUTO_MARGIN, simplest_type


def models(d=3, seed=0):
    rng = np.random.default_rng(seed)
    out = []
    for cov in (rng.uniform(0.5, 2.0, size=(2, d)), rng.uniform(0.5, 2.0, size=2)):
        m = Mixture(rng.normal(size=(2, d)), weights=np.array([0.4, 0.6]), covariances=cov)
        out.append((m, rng.normal(size=d), rng.uniform(0.5, 2.0, size=d)))
    return out


def test_held_moments_give_the_paired_standard_error():
    rng = np.random.default_rng(1)
    X, w = rng.normal(size=(400, 3)), rng.uniform(0.5, 2.0, size=400)
    ms = models()
    sums = A.held_moments(X, w, 0, streaming.View(rows="held"), ms)
    held = streaming.holdout_mask(X)
    ll = []
    for student, shift, scale in ms:
        ll.append(np.asarray(student.log_prob((X[held] - shift) / scale)) - np.log(scale).sum())
    d, wh = ll[0] - ll[1], w[held]
    mean = wh @ d / wh.sum()
    want = np.sqrt((wh @ (d - mean) ** 2 / wh.sum()) / wh.sum())
    assert sums.total == pytest.approx(wh.sum(), rel=1e-12)
    np.testing.assert_allclose(sums.s1, [wh @ ll[0], wh @ ll[1]], rtol=1e-10)
    assert sums.se(["a", "b"], "a", "b") == pytest.approx(want, rel=1e-8)
    assert sums.se(["a", "b"], "a", "a") == 0.0


def test_held_moments_summed_over_chunks_equal_one_call():
    X = np.random.default_rng(2).normal(size=(1000, 3))
    ms = models()
    view = streaming.View(rows="held")
    one = A.held_moments(X, np.ones(1000), 0, view, ms)
    summed = chunks.map_sum(chunks.ArrayChunks(X, chunk_rows=256), A.held_moments, view, ms)
    assert float(summed.total) == pytest.approx(one.total)
    np.testing.assert_allclose(summed.s1, one.s1, rtol=1e-12)
    np.testing.assert_allclose(summed.s2, one.s2, rtol=1e-12)


def test_a_type_ahead_by_less_than_half_a_standard_error_is_not_chosen():
    scores = {"spherical": -3.0, "diag": -1.10, "tied": -1.0, "full": -1.0 + AUTO_MARGIN / 2}
    assert simplest_type(scores) == "tied"  # the margin alone
    # tied is 0.10 ahead of diag, with a standard error of 0.3 for that difference: noise
    assert simplest_type(scores, lambda a, b: 0.3 if b == "diag" else 0.01) == "diag"
    # with a standard error of 0.1, 0.10 is two of them: tied stays
    assert simplest_type(scores, lambda a, b: 0.1 if b == "diag" else 0.01) == "tied"
    # a type that failed (-inf) is never chosen and needs no standard error
    failed = {**scores, "spherical": -np.inf}
    assert simplest_type(failed, lambda a, b: 0.3 if b == "diag" else 0.01) == "diag"


def test_rotated_is_the_last_candidate_kept_only_where_it_leads_by_the_margin():
    base = {"spherical": -3.0, "diag": -1.5, "tied": -1.2, "full": -1.0}
    assert simplest_type(base) == "full"  # not tried (one feature, missing values): passed over
    assert simplest_type({**base, "rotated": -1.0 + AUTO_MARGIN / 2}) == "full"
    assert simplest_type({**base, "rotated": -1.0 + 2 * AUTO_MARGIN}) == "rotated"
    # ahead of full by 2 margins, but by less than half a standard error of that difference
    assert simplest_type({**base, "rotated": -1.0 + 2 * AUTO_MARGIN}, lambda a, b: 0.2) == "full"
    assert simplest_type({**base, "rotated": -np.inf}) == "full"


def test_of_the_types_within_the_margin_the_one_with_fewest_parameters_is_kept():
    """A sheared cluster tiled by 9 diagonal components scores within the margin of the 3
    full components that fit it: fewer parameters decide (3 x 6 - 1 = 17 against 9 x 5 - 1
    = 44 in d = 2), the type order only among equals; "rotated" still only when it leads."""
    scores = {"spherical": -0.22, "diag": -0.040, "tied": -0.18, "full": -0.022, "rotated": -0.048}
    sizes = {"spherical": 40, "diag": 44, "tied": 31, "full": 17, "rotated": 20}
    assert simplest_type(scores) == "diag"  # by the type order alone
    assert simplest_type(scores, sizes=sizes) == "full"
    assert simplest_type(scores, sizes={**sizes, "full": 44}) == "diag"  # equal: the type order
    assert simplest_type(scores, sizes={**sizes, "rotated": 5}) == "full"  # within, not leading
    assert simplest_type({**scores, "rotated": 0.1}, sizes={**sizes, "rotated": 50}) == "rotated"


def sheared(seed, n=600):
    """Three clusters in d = 2, each with sd 1.4 along its own random direction and 0.25
    across it (the sheared kind of ``benchmarks/estimator_vs_sklearn.py --hard``), means
    about 7 apart."""
    rng = np.random.default_rng(seed)
    mu = np.array([[0.0, 0.0], [7.0, 1.0], [2.0, 7.0]])
    shear = np.stack([np.linalg.qr(rng.normal(size=(2, 2)))[0] @ np.diag([1.4, 0.25]) for _ in range(3)])
    comp = rng.integers(0, 3, n)
    return mu[comp] + np.einsum("kde,ke->kd", shear[comp], rng.normal(size=(n, 2)))


def test_auto_weighs_each_candidate_by_its_fit_s_parameters_in_memory_and_on_chunks(monkeypatch):
    """Both faces pass the rule each candidate's free parameters as BIC counts them (live
    components of its fit): the same counts in memory and on chunks; on a sheared mixture
    the 3 full components (3 x 6 - 1 = 17) undercut every tiling and are kept. (In
    ``benchmarks/estimator_vs_sklearn.py --hard`` the type order alone kept a tiling of 9
    diag or tied components on 2 of 20 such sets: docs/estimator.md.)"""
    X = sheared(0)
    seen = []
    real = F.simplest_type

    def spy(scores, se=None, sizes=None):
        seen.append(dict(sizes))
        return real(scores, se, sizes)

    monkeypatch.setattr(F, "simplest_type", spy)
    est = OverparamGMM(random_state=0).fit(X)
    chunked = OverparamGMM(random_state=0).fit(chunks.ArrayChunks(X, chunk_rows=256))
    assert seen[0] == seen[1] and set(seen[0]) == {"spherical", "diag", "tied", "full", "rotated"}
    assert seen[0]["full"] == 17 and seen[0]["diag"] % 5 == 4 and seen[0]["diag"] > 17
    assert est.covariance_type_ == chunked.covariance_type_ == "full" and est.n_components_ == 3


def test_take_fits_first_a_type_whose_programs_are_ready():
    """``Precompiler.take``: a type the thread has compiled comes first, then one no thread
    has started (the caller compiles it meanwhile), and only then one still compiling;
    without threads, the caller's order."""
    import threading

    from overgmm.estimator._precompile import Precompiler

    pre = Precompiler(["diag", "tied", "full"])
    assert pre.take(["spherical", "diag"]) == "spherical"  # not started: in order
    pre._state = {"diag": "pending", "tied": "compiling", "full": "compiling"}
    pre._done = {k: threading.Event() for k in pre._state}
    pre._done["full"].set()
    assert pre.take(["diag", "tied", "full"]) == "full"  # compiled: fitted first
    assert pre.take(["diag", "tied"]) == "diag" and pre._state["diag"] == "caller"  # the thread skips it
    pre._done["tied"].set()
    assert pre.take(["tied"]) == "tied"


def test_the_candidates_score_the_same_in_whatever_order_they_are_fitted(monkeypatch):
    """Each candidate's seed is drawn in AUTO_TYPES' order before any is fitted, so the
    order the programs are ready in (``in_turn``) changes nothing, with a RandomState too."""
    X = sheared(1)[:400]
    first = OverparamGMM(random_state=np.random.RandomState(3)).fit(X)

    def backwards(pre, kinds):
        yield from [k for k in reversed(kinds) if k != "rotated"] + ["rotated"]

    monkeypatch.setattr(A, "in_turn", backwards)
    again = OverparamGMM(random_state=np.random.RandomState(3)).fit(X)
    assert list(again.validation_scores_) == list(F.AUTO_TYPES)
    assert again.validation_scores_ == first.validation_scores_
    assert again.covariance_type_ == first.covariance_type_
    np.testing.assert_array_equal(again.means_, first.means_)


def test_held_out_rows_are_scored_in_pieces_of_the_fit_s_shape(monkeypatch):
    """``held_nll`` scores more held-out rows than the fit has through the fit's own summary
    program, in pieces padded to the fit's rows: the weighted mean over all of them (one
    pass of the summary at their own shape, to rounding), a piece of zero weight skipped,
    no program of another shape, and with gaps one missing-value flag for every piece."""
    rng = np.random.default_rng(5)
    ms = [m for m, _, _ in models(d=3, seed=2)][:1] * 2
    students = F.host(jax.tree_util.tree_map(lambda *a: np.stack(a), *ms))
    floor = np.full(3, 1e-4)
    Z, w = rng.normal(size=(700, 3)), rng.uniform(0.5, 2.0, size=700)
    w[256:512] = 0.0  # a piece of zero weight
    w = w / w.sum()
    rows = 256  # the fit's rows: its summary compiled at that shape first
    Zf, wf = F.pad_rows(Z[:rows], w[:rows] / w[:rows].sum(), at_least=rows)
    first = F.InMemory(F.problem(Zf, wf, floor), None).summary(students)[0]
    np.testing.assert_array_equal(A.held_nll(students, Z[:rows], w[:rows] / w[:rows].sum(), floor, rows), first)
    before = F._summary.fast._cache_size() + F._summary.full._cache_size()
    got = A.held_nll(students, Z, w, floor, rows)
    assert F._summary.fast._cache_size() + F._summary.full._cache_size() == before
    Zp, wp = F.pad_rows(Z, w)  # all rows at once, at their own shape
    want = F.InMemory(F.problem(Zp, wp, floor), None).summary(students)[0]
    assert F._summary.fast._cache_size() + F._summary.full._cache_size() == before + 1
    np.testing.assert_allclose(got, want, rtol=1e-12)
    Z[:5, 1] = np.nan  # gaps in the first piece alone
    flags, real_problem = [], F.problem
    monkeypatch.setattr(F, "problem", lambda *a: flags.append(a[3]) or real_problem(*a))
    got = A.held_nll(students, Z, w, floor, rows)
    assert flags == [True, True]  # the zero-weight piece skipped, the other with the same flag
    want = F.InMemory(real_problem(*F.pad_rows(Z, w), floor), None).summary(students)[0]
    np.testing.assert_allclose(got, want, rtol=1e-12)


@pytest.mark.parametrize("kind", ["spherical", "diag", "tied", "full"])
def test_a_warm_start_is_the_same_mixture_in_the_final_fit_s_units(kind):
    """``_fit.warm_start`` moves a candidate's students (two restarts, one with a slot at
    weight 0, standardized by one shift and scale) into other units: the same density of
    X, up to the Jacobian, for each restart; nothing for a fit that is not finite."""
    rng = np.random.default_rng(4)
    d, n = 3, 4

    def one(weights):
        covs = {
            "spherical": rng.uniform(0.5, 2.0, size=n),
            "diag": rng.uniform(0.5, 2.0, size=(n, d)),
            "tied": np.cov(rng.normal(size=(d, 20))),
            "full": np.stack([np.cov(rng.normal(size=(d, 20))) for _ in range(n)]),
        }
        return Mixture(rng.normal(size=(n, d)), weights=weights, covariances=covs[kind], covariance_type=kind)

    ms = [one(np.array([0.1, 0.2, 0.3, 0.4])), one(np.array([0.5, 0.0, 0.25, 0.25]))]
    batch = F.host(jax.tree_util.tree_map(lambda *a: np.stack(a), *ms))
    res = F.FitResult(batch, (np.stack([np.asarray(m.covariances) for m in ms]), None), np.zeros(2), [], 0)
    common = kind == "spherical"  # one scale for every feature, as the estimator's standardization gives it
    units_a = (rng.normal(size=d), np.full(d, 1.7) if common else rng.uniform(0.5, 2.0, size=d))
    units_b = (rng.normal(size=d), np.full(d, 0.6) if common else rng.uniform(0.5, 2.0, size=d))
    moved = F.warm_start(res, units_a, units_b)
    X = rng.normal(size=(50, d)) * 2
    for r, m in enumerate(ms):
        want = np.asarray(m.log_prob((X - units_a[0]) / units_a[1])) - np.log(units_a[1]).sum()
        got = np.asarray(F.take(moved, r).log_prob((X - units_b[0]) / units_b[1])) - np.log(units_b[1]).sum()
        np.testing.assert_allclose(got, want, rtol=1e-12, atol=1e-12)
    assert np.isneginf(np.asarray(moved.log_weights)[1, 1])
    bad = res._replace(loss=np.array([0.0, np.nan]))
    assert F.warm_start(bad, units_a, units_b) is None and F.warm_start(None, units_a, units_b) is None


def test_candidates_on_a_subsample_are_priced_as_all_rows_and_start_the_final_fit(monkeypatch):
    """Beyond AUTO_ROWS training rows (lowered here), every candidate pays the merge price
    of all the rows, and the final fit on all rows starts from the chosen candidate's
    mixture, moved into its units: the same density of X. "diag" is forced, not the last
    type fitted. Below AUTO_ROWS: the candidates pay their own rows' price and the final
    fit starts from a fresh draw."""
    X = sheared(0)
    N = X.shape[0]
    prices, choices, first = [], [], []
    real_price, real_choose, real_solve = OverparamGMM._price, A.choose_type, F.InMemory.solve

    def price(self, d, total, kind):
        prices.append(total)
        return real_price(self, d, total, kind)

    def choose(*args, **kwargs):
        choices.append(real_choose(*args, **kwargs))
        return choices[-1]

    def solve(self, students, keys, max_iter, tol):
        if choices and not first:  # the final fit's first solve
            first.append((students, np.asarray(jax.random.key_data(keys))))
        return real_solve(self, students, keys, max_iter, tol)

    draws, real_draw = [], F.init_students
    monkeypatch.setattr(OverparamGMM, "_price", price)
    monkeypatch.setattr(A, "choose_type", choose)
    monkeypatch.setattr(F.InMemory, "solve", solve)
    monkeypatch.setattr(F, "simplest_type", lambda scores, se=None, sizes=None: "diag")
    monkeypatch.setattr(F, "init_students", lambda *a, **k: draws.append(bool(choices)) or real_draw(*a, **k))
    pieces, real_held = [], A.held_nll
    monkeypatch.setattr(A, "held_nll", lambda *a: pieces.append(a[4]) or real_held(*a))
    OverparamGMM(random_state=0).fit(X)  # about 4N/5 training rows: not a subsample
    assert all(t < N for t in prices[:-1]) and prices[-1] == N and choices[0][:2] == ("diag", None)
    assert draws[-1] is True  # the final fit drew its start
    fresh_keys = first[0][1]
    monkeypatch.setattr(F, "AUTO_ROWS", N // 2)
    prices.clear(), choices.clear(), first.clear(), draws.clear()
    pieces.clear()
    est = OverparamGMM(random_state=0).fit(X)
    assert pieces and all(r == N // 2 for r in pieces)  # held-out rows in pieces of the fit's rows
    assert prices and all(t == N for t in prices)
    assert not any(draws)  # warm-started: no draw, and the keys a fresh draw would have had
    np.testing.assert_array_equal(first[0][1], fresh_keys)
    kind, (res, units), _ = choices[0]
    assert kind == est.covariance_type_ == "diag"
    want = np.asarray(F.take(res.students, 0).log_prob((X - units[0]) / units[1])) - np.log(units[1]).sum()
    start = F.take(first[0][0], 0)
    got = np.asarray(start.log_prob((X - est._shift) / est._scale)) - np.log(est._scale).sum()
    np.testing.assert_allclose(got, want, rtol=1e-10)


def test_the_final_fit_s_programs_compile_in_the_background_on_a_subsample(monkeypatch):
    """On a subsample (AUTO_ROWS lowered here) the final fit's programs (solver, merge round,
    summary on all rows' shapes) start compiling in the background once the type is
    chosen, on a stand-in problem whose structure and shapes are the final fit's (so the
    programs are the same); the final fit waits for each program it calls
    (``Awaiting``) and fits exactly as without them. Not on small data."""
    from overgmm.estimator import _precompile as P

    X = sheared(0)
    choices, claims, engines = [], [], []
    real_choose, real_claim, real_final, real_init = (
        A.choose_type,
        P.Precompiler.claim,
        A.final_fit,
        P.Awaiting.__init__,
    )
    monkeypatch.setattr(A, "choose_type", lambda *a, **k: choices.append(real_choose(*a, **k)) or choices[-1])
    monkeypatch.setattr(P.Precompiler, "claim", lambda self, job: claims.append(job) or real_claim(self, job))
    monkeypatch.setattr(A, "final_fit", lambda engine, *a: engines.append(engine) or real_final(engine, *a))
    monkeypatch.setattr(
        P.Awaiting, "__init__", lambda self, engine, *a: engines.append(engine) or real_init(self, engine, *a)
    )
    OverparamGMM(random_state=0).fit(X)
    assert choices[0].compiling is None and not engines
    monkeypatch.setattr(F, "AUTO_ROWS", X.shape[0] // 2)
    claims.clear()
    est = OverparamGMM(random_state=0).fit(X)
    kind, compiling = choices[1].kind, choices[1].compiling
    assert kind == est.covariance_type_ and compiling is not None
    final = [j for j in claims if isinstance(j, tuple) and len(j) == 3]
    assert final[:2] == [(kind, None, "solve"), (kind, None, "summary")] and (kind, None, "merge") in final
    stand_in, real = ((e.problem, e.algorithm) for e in engines)
    assert jax.tree_util.tree_structure(stand_in) == jax.tree_util.tree_structure(real)
    avals = lambda t: [(np.shape(a), np.asarray(a).dtype) for a in jax.tree_util.tree_leaves(t)]  # noqa: E731
    assert avals(stand_in) == avals(real) and np.shape(real[0].data)[0] > X.shape[0] // 2
    monkeypatch.setattr(A, "final_programs", lambda *a: None)  # the same fit, every program compiled by the caller
    plain = OverparamGMM(random_state=0).fit(X)
    assert choices[2].compiling is None
    np.testing.assert_array_equal(plain.means_, est.means_)
    np.testing.assert_array_equal(plain.lower_bounds_, est.lower_bounds_)


def test_in_one_feature_auto_fits_spherical_and_tied_alone_and_chooses_as_with_every_type(monkeypatch):
    """At d = 1 "diag" and "full" are "spherical"'s model: "auto" no longer fits them
    (F.auto_types), in memory or on chunks. Fitting every type (the old candidates) scores
    them within 1e-3 of "spherical" and chooses the same model."""
    from overgmm.chunks import ArrayChunks

    rng = np.random.default_rng(0)
    X = np.concatenate([rng.normal(0, 1, 300), rng.normal(5, 0.5, 150), rng.normal(9, 2, 100)])[:, None]
    a = OverparamGMM(random_state=0).fit(X)
    assert list(a.validation_scores_) == ["spherical", "tied"]
    b = OverparamGMM(random_state=0).fit(ArrayChunks(X, chunk_rows=200))
    assert b.validation_scores_.keys() == a.validation_scores_.keys()
    assert b.covariance_type_ == a.covariance_type_
    monkeypatch.setattr(F, "auto_types", lambda d: F.AUTO_TYPES)
    every = OverparamGMM(random_state=0).fit(X)
    assert {"diag", "full"} <= every.validation_scores_.keys()
    for k in ("diag", "full"):
        assert every.validation_scores_[k] == pytest.approx(every.validation_scores_["spherical"], abs=1e-3)
    assert every.covariance_type_ == a.covariance_type_ and every.n_components_ == a.n_components_
    assert every.score(X) == pytest.approx(a.score(X), rel=1e-12)
