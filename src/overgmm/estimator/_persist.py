"""A fitted :class:`~overgmm.OverparamGMM` as a strict-JSON model file, and back.

The file (format :data:`FORMAT`, version :data:`VERSION`) holds the estimator's
parameters, every fitted attribute in the units of the data (readable as they are:
``weights``, ``means``, ``covariances`` in scikit-learn's shapes, ``covariance_type``,
``n_components``, ...) and, under ``state``, the mixture in the fit's standardized units
with its pruned components (log-weight ``null``), which is what :meth:`score_samples`
and :meth:`predict` compute with. Floats are written with Python's shortest round-trip
repr, so a loaded model gives bit-for-bit the same scores and labels. Other top-level
keys (the command line adds ``bic``, ``aic``, ``n_samples``, ...) are kept in the file
and ignored on load.
"""

from __future__ import annotations

import copy
import json
import math
import numbers
import os
import warnings
from pathlib import Path

import numpy as np

from overgmm.mixture import Mixture

FORMAT = "overgmm.OverparamGMM"
VERSION = 1


def _finite_list(a, name: str) -> list:
    arr = np.asarray(a, dtype=np.float64)
    if not np.all(np.isfinite(arr)):
        raise ValueError(f"the fitted model's {name} holds non-finite values; it cannot be saved")
    return arr.tolist()


def _nullable_list(a) -> list:
    """-inf (a pruned component's log-weight, a failed candidate's score) as null."""
    arr = np.asarray(a, dtype=np.float64)
    if np.any(np.isnan(arr) | (arr == np.inf)):
        raise ValueError("the fitted model holds NaN or +inf values; it cannot be saved")
    return [None if x == -np.inf else x for x in arr.ravel().tolist()]


def _params(est) -> dict:
    params = est.get_params()
    rs = params["random_state"]
    if rs is not None and not (isinstance(rs, numbers.Integral) and not isinstance(rs, bool)):
        warnings.warn(
            "random_state is not an int or None; the model file stores None in its place", UserWarning, stacklevel=3
        )
        params["random_state"] = None
    elif rs is not None:
        params["random_state"] = int(rs)
    return params


def to_dict(est) -> dict:
    """The fitted estimator as plain JSON types (strict: no NaN or infinity)."""
    from sklearn.utils.validation import check_is_fitted

    check_is_fitted(est)
    student = est._student
    names = getattr(est, "feature_names_in_", None)
    return {
        "format": FORMAT,
        "version": VERSION,
        "params": _params(est),
        "covariance_type": est.covariance_type_,
        "n_components": int(est.n_components_),
        "n_components_init": int(est.n_components_init_),
        "n_features_in": int(est.n_features_in_),
        "feature_names_in": None if names is None else [str(n) for n in names],
        "weights": _finite_list(est.weights_, "weights"),
        "means": _finite_list(est.means_, "means"),
        "covariances": _finite_list(est.covariances_, "covariances"),
        "precisions_cholesky": _finite_list(est.precisions_cholesky_, "precisions"),
        "converged": bool(est.converged_),
        "n_iter": int(est.n_iter_),
        "n_merges": int(est.n_merges_),
        "n_parameters": int(est._n_parameters()),
        "mean_log_likelihood": float(_finite_list([est.lower_bound_], "log-likelihood")[0]),
        "lower_bounds": _finite_list(est.lower_bounds_, "log-likelihoods"),
        "validation_scores": {k: _nullable_list([v])[0] for k, v in est.validation_scores_.items()},
        "weight_trajectory": _finite_list(est.weight_trajectory_, "weight trajectory"),
        "state": {
            "mixture_covariance_type": student.covariance_type,
            "means": _finite_list(student.means, "means"),
            "log_weights": _nullable_list(student.log_weights),
            "cov_params": None if student.cov_params is None else _finite_list(student.cov_params, "covariances"),
            "shift": _finite_list(est._shift, "shift"),
            "scale": _finite_list(est._scale, "scale"),
            "floor": _finite_list(est._floor, "floor"),
            "live": np.asarray(est._live).tolist(),
        },
    }


def dumps(obj: dict) -> str:
    """Strict JSON text (``allow_nan=False``: a NaN or infinity is an error, not output)."""
    return json.dumps(obj, indent=1, allow_nan=False)


def write_json(path: Path, obj: dict) -> None:
    """:func:`dumps` to ``path``, written to a temporary name beside it and renamed over it."""
    text = dumps(obj)
    tmp = path.with_name(f".{path.name}.tmp{os.getpid()}")
    try:
        tmp.write_text(text)
        os.replace(tmp, path)
    finally:
        if tmp.exists():
            tmp.unlink()


def _array(obj: dict, key: str, path) -> np.ndarray:
    value = obj.get(key)
    if value is None:
        raise ValueError(f"{path}: the model file lacks {key!r}")
    return np.asarray(value, dtype=np.float64)


def from_dict(cls, obj: dict, path="model"):
    """A fitted ``cls`` from :func:`to_dict`'s dictionary; errors name ``path``."""
    if not isinstance(obj, dict) or obj.get("format") != FORMAT:
        raise ValueError(f"{path}: not an overgmm model file (no 'format': {FORMAT!r})")
    version = obj.get("version")
    if version != VERSION:
        raise ValueError(
            f"{path}: model file version {version!r} is not one this overgmm reads (version {VERSION}); "
            "fit it again or use the overgmm that wrote it"
        )
    try:
        # a model saved before rounding_floor existed was fitted without it
        est = cls(**{"rounding_floor": False, **obj["params"]})
        st = obj["state"]
        log_w = np.asarray([-np.inf if x is None else x for x in st["log_weights"]], dtype=np.float64)
        cov_params = None if st["cov_params"] is None else np.asarray(st["cov_params"], dtype=np.float64)
        leaves = (_array(st, "means", path), log_w) + (() if cov_params is None else (cov_params,))
        est._student = Mixture.tree_unflatten(st["mixture_covariance_type"], leaves)
        est._shift, est._scale, est._floor = (_array(st, k, path) for k in ("shift", "scale", "floor"))
        est._log_scale = float(np.sum(np.log(est._scale)))
        est._live = np.asarray(st["live"], dtype=np.int64)
        est.covariance_type_ = obj["covariance_type"]
        for key in ("weights", "means", "covariances", "precisions_cholesky", "lower_bounds", "weight_trajectory"):
            setattr(est, key + "_", _array(obj, key, path))
        est.n_components_, est.n_components_init_ = int(obj["n_components"]), int(obj["n_components_init"])
        est.n_features_in_ = int(obj["n_features_in"])
        if obj.get("feature_names_in") is not None:
            est.feature_names_in_ = np.asarray(obj["feature_names_in"], dtype=object)
        est.converged_, est.n_iter_, est.n_merges_ = bool(obj["converged"]), int(obj["n_iter"]), int(obj["n_merges"])
        est.lower_bound_ = float(est.lower_bounds_[-1])
        est.validation_scores_ = {k: -math.inf if v is None else float(v) for k, v in obj["validation_scores"].items()}
    except (KeyError, TypeError) as err:
        raise ValueError(f"{path}: damaged model file ({type(err).__name__}: {err})") from None
    if est._student.means.shape != (log_w.shape[0], est.n_features_in_) or est.means_.shape[0] != est._live.size:
        raise ValueError(f"{path}: damaged model file (the mixture's shapes disagree)")
    _check_agrees(est, path)
    return est


def _check_agrees(est, path) -> None:
    """The file's readable attributes are the ones its ``state`` (which scores and predicts)
    gives through the fit's own :meth:`_set_fitted`: a file edited in one place but not the
    other would give attributes that say one model and predictions from another."""
    from overgmm.estimator._fit import _covariances

    ref = copy.copy(est)  # its attributes replaced by the ones the state gives
    ref._set_fitted(est._student, _covariances(est._student), est._shift, est._scale, est._floor)
    if not np.array_equal(ref._live, est._live):
        raise ValueError(f"{path}: damaged model file (its live components disagree with its log-weights)")
    for key in ("weights", "means", "covariances", "precisions_cholesky"):
        stored, value = getattr(est, key + "_"), getattr(ref, key + "_")
        if stored.shape != value.shape or not np.allclose(stored, value, rtol=1e-9, atol=1e-300):
            raise ValueError(
                f"{path}: damaged model file (its {key!r} disagree with the fitted state under 'state', which "
                "scores and predicts: was one of them edited?)"
            )


def read(path) -> dict:
    """The JSON object of a model file (its extra keys included); errors name the file."""
    path = Path(path)

    def strict(token: str):  # the file is written without NaN or infinity; one read back is damage
        raise ValueError(f"{path}: damaged model file ({token} is not a number a model file holds)")

    if path.is_dir():
        raise IsADirectoryError(f"{path}: a folder, not a model file")
    try:
        return json.loads(path.read_text(encoding="utf-8"), parse_constant=strict)
    except FileNotFoundError:
        raise FileNotFoundError(f"{path}: no such file") from None
    except (UnicodeDecodeError, json.JSONDecodeError) as err:
        raise ValueError(f"{path}: not an overgmm model file (not JSON: {err})") from None


def load(cls, path):
    """:func:`from_dict` of the JSON file at ``path``."""
    return from_dict(cls, read(path), path)
