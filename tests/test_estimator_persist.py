"""``OverparamGMM.save`` / ``OverparamGMM.load``: a strict-JSON, versioned model file
that gives back the same scores and labels, bit for bit."""

import json

import numpy as np
import pytest

from overgmm import OverparamGMM
from overgmm.estimator import _persist


def blobs(n=300, d=3, seed=0):
    rng = np.random.default_rng(seed)
    return np.vstack([rng.normal(size=(n // 2, d)), rng.normal(size=(n - n // 2, d)) * 0.5 + 4])


def strict(text: str):
    def refuse(token):
        raise AssertionError(f"not strict JSON: {token}")

    return json.loads(text, parse_constant=refuse)


@pytest.mark.parametrize("kind", ["auto", "full", "diag", "spherical", "fixed"])
def test_round_trip_is_bit_for_bit(tmp_path, kind):
    X = blobs()
    est = OverparamGMM(covariance_type=kind, random_state=3, max_iter=50).fit(X)
    est.save(tmp_path / "m.json")
    obj = strict((tmp_path / "m.json").read_text())
    assert obj["format"] == _persist.FORMAT and obj["version"] == _persist.VERSION
    assert obj["covariance_type"] == est.covariance_type_ and obj["n_parameters"] == est._n_parameters()
    back = OverparamGMM.load(tmp_path / "m.json")
    Y = np.vstack([X[:20], np.random.default_rng(1).normal(size=(30, 3)) * 4])
    np.testing.assert_array_equal(back.score_samples(Y), est.score_samples(Y))
    np.testing.assert_array_equal(back.predict_proba(Y), est.predict_proba(Y))
    np.testing.assert_array_equal(back.predict(Y), est.predict(Y))
    assert back.bic(X) == est.bic(X) and back.aic(X) == est.aic(X)
    assert back.get_params() == est.get_params()
    for attr in ("weights_", "means_", "covariances_", "precisions_cholesky_", "lower_bounds_"):
        np.testing.assert_array_equal(getattr(back, attr), getattr(est, attr))
    assert back.validation_scores_ == est.validation_scores_
    assert (back.n_components_, back.n_iter_, back.converged_) == (est.n_components_, est.n_iter_, est.converged_)
    np.testing.assert_array_equal(back.sample(7)[0], est.sample(7)[0])
    back.partial_fit(X)  # a loaded model keeps learning
    assert np.isfinite(back.lower_bound_)


def test_a_model_fitted_by_partial_fit_round_trips(tmp_path):
    """save() raised AttributeError: partial_fit left no validation_scores_."""
    X = blobs()
    est = OverparamGMM(covariance_type="full", n_components=5, random_state=0).partial_fit(X).partial_fit(X)
    assert est.validation_scores_ == {}
    est.save(tmp_path / "m.json")
    back = OverparamGMM.load(tmp_path / "m.json")
    np.testing.assert_array_equal(back.score_samples(X), est.score_samples(X))


def test_feature_names_travel(tmp_path):
    pd = pytest.importorskip("pandas")
    df = pd.DataFrame(blobs(d=2), columns=["u", "v"])
    est = OverparamGMM(covariance_type="diag", random_state=0, max_iter=30).fit(df)
    est.save(tmp_path / "m.json")
    back = OverparamGMM.load(tmp_path / "m.json")
    assert list(back.feature_names_in_) == ["u", "v"]
    np.testing.assert_array_equal(back.score_samples(df), est.score_samples(df))


def test_bad_files_are_named(tmp_path):
    est = OverparamGMM(covariance_type="diag", random_state=0, max_iter=20).fit(blobs())
    est.save(tmp_path / "m.json")
    obj = json.loads((tmp_path / "m.json").read_text())
    obj["version"] = 99
    (tmp_path / "v.json").write_text(json.dumps(obj))
    with pytest.raises(ValueError, match=r"v\.json: model file version 99 is not one this overgmm reads"):
        OverparamGMM.load(tmp_path / "v.json")
    (tmp_path / "x.json").write_text("{not json")
    with pytest.raises(ValueError, match=r"x\.json: not an overgmm model file \(not JSON"):
        OverparamGMM.load(tmp_path / "x.json")
    (tmp_path / "o.json").write_text('{"a": 1}')
    with pytest.raises(ValueError, match=r"o\.json: not an overgmm model file"):
        OverparamGMM.load(tmp_path / "o.json")
    del obj["state"]
    obj["version"] = _persist.VERSION
    (tmp_path / "d.json").write_text(json.dumps(obj))
    with pytest.raises(ValueError, match=r"d\.json: damaged model file"):
        OverparamGMM.load(tmp_path / "d.json")
    with pytest.raises(FileNotFoundError, match="nope.json: no such file"):
        OverparamGMM.load(tmp_path / "nope.json")


def test_edited_or_non_finite_files_are_damage_not_a_silent_model(tmp_path):
    """A file whose readable means disagree with the state it scores with (edited in one
    place) loaded with means_ saying one model and predictions from another; a NaN under
    'state' loaded and scored NaN; a folder gave the operating system's message."""
    est = OverparamGMM(covariance_type="diag", random_state=0, max_iter=20).fit(blobs())
    est.save(tmp_path / "m.json")
    text = (tmp_path / "m.json").read_text()
    for key, edit in [
        ("means", lambda o: o["means"][0].__setitem__(0, o["means"][0][0] + 1.0)),
        ("weights", lambda o: o["weights"].__setitem__(0, o["weights"][0] * 0.5)),
        ("covariances", lambda o: o["covariances"][0].__setitem__(1, o["covariances"][0][1] * 2.0)),
    ]:
        obj = json.loads(text)
        edit(obj)
        (tmp_path / "e.json").write_text(json.dumps(obj))
        expected = rf"e\.json: damaged model file \(its '{key}' disagree with the fitted state"
        with pytest.raises(ValueError, match=expected):
            OverparamGMM.load(tmp_path / "e.json")
    obj = json.loads(text)
    obj["state"]["shift"][0] = float("nan")  # json.dumps writes NaN
    (tmp_path / "n.json").write_text(json.dumps(obj))
    with pytest.raises(ValueError, match=r"n\.json: damaged model file \(NaN is not a number a model file holds\)"):
        OverparamGMM.load(tmp_path / "n.json")
    with pytest.raises(IsADirectoryError, match="a folder, not a model file"):
        OverparamGMM.load(tmp_path)


def test_unfitted_or_non_finite_models_are_not_written(tmp_path):
    from sklearn.exceptions import NotFittedError

    with pytest.raises(NotFittedError):
        OverparamGMM().save(tmp_path / "m.json")
    est = OverparamGMM(covariance_type="diag", random_state=0, max_iter=20).fit(blobs())
    est.means_ = est.means_.copy()
    est.means_[0, 0] = np.nan
    with pytest.raises(ValueError, match="means holds non-finite values"):
        est.save(tmp_path / "m.json")
    assert not (tmp_path / "m.json").exists()
