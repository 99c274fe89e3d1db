"""The one config schema: every shipped config loads and validates, deep merging,
skipped tables, deprecated keys, the builders, and the errors."""

import warnings

import numpy as np
import pytest

import overgmm as og
from overgmm import config, experiments, studies

CONFIGS = sorted(p.stem for p in config.CONFIG_DIR.glob("*.toml"))


def test_the_config_folder_ships_every_experiment():
    assert set(CONFIGS) == set(experiments.registry())
    assert config.CONFIG_DIR.parent.name == "overgmm"  # inside the package: found from any install


@pytest.mark.parametrize("name", CONFIGS)
def test_every_config_file_loads_and_validates(name):
    raw = config.read_toml(config.config_path(name))
    assert {"name", "paper", "description"} <= set(raw["experiment"])
    exp = experiments.get(name)
    with warnings.catch_warnings():
        warnings.simplefilter("error", DeprecationWarning)  # shipped files use the current terms
        for quick in (False, True):
            cfg = exp.resolve(quick=quick)
            assert cfg["experiment"] == name and cfg["quick"] is quick
            assert "skip" not in str(cfg)  # skipped tables are gone
            if "base" in cfg:  # a study as well: validates and builds one run per group
                study = studies.validate_study({k: cfg[k] for k in ("study", "base", "axes", "settings")}, name)
                studies.check_study_runs(study)
            for spec in cfg.get("methods", {}).values():  # every method is a valid algorithm table
                config.check_keys({"name": spec["name"]}, {"name": str}, name)
                assert spec["name"] in config.ALGORITHMS


def test_deep_merge_and_skip():
    base = {"a": 1, "m": {"x": {"steps": 5, "stride": 1}, "y": {"steps": 3}}, "axes": {"teacher.d": [2, 5]}}
    over = {"m": {"x": {"steps": 2}, "y": {"skip": True}}, "axes": {"teacher.d": [2]}}
    merged = config.drop_skipped(config.deep_merge(base, over))
    assert merged == {"a": 1, "m": {"x": {"steps": 2, "stride": 1}}, "axes": {"teacher.d": [2]}}
    assert base["m"]["x"]["steps"] == 5  # the base is not touched


def test_renamed_keys_warn_old_to_new():
    with pytest.warns(DeprecationWarning, match="'eta' is deprecated; use 'step_size'"):
        assert config.renamed({"eta": 0.5}, "algorithm") == {"step_size": 0.5}
    with pytest.raises(config.ConfigError, match="both 'n_steps'"):
        config.renamed({"n_steps": 1, "steps": 2}, "base")
    problem = og.Problem.population(og.Mixture([[0.0]]), backend=og.Quadrature())
    with pytest.warns(DeprecationWarning, match="'algorithm' is deprecated; use 'name'"):
        alg = config.algorithm(problem, {"algorithm": "gradient_em", "step_size": 0.5})
    assert alg.method.step_size == 0.5


def test_errors_name_the_key_the_valid_keys_and_the_type():
    with pytest.raises(config.ConfigError, match="unknown key 'dd'; valid keys: d, m, means"):
        config.check_keys({"dd": 1}, config.TEACHER_KEYS, "teacher")
    with pytest.raises(config.ConfigError, match=r"teacher.d: expected int, got str 'x'"):
        config.check_keys({"d": "x"}, config.TEACHER_KEYS, "teacher")
    with pytest.raises(ValueError, match="unknown backend option"):
        config.backend({"kind": "quadrature", "node": 3}, 2)
    with pytest.raises(ValueError, match="unknown algorithm 'polyac'"):
        config.algorithm(None, {"name": "polyac"})
    with pytest.raises(config.ConfigError, match="no config 'W9'.*W1"):
        config.config_path("W9")


TINY_RUN = {  # a resolved data-based run: 4 EM steps on 50 points, recorded every 2
    "steps": 4,
    "stride": 2,
    "teacher": {"d": 1, "m": 1, "means": [[0.0]]},
    "student": {"n": 2, "init": "normal"},
    "data": {"n_samples": 50},
    "algorithm": {"name": "em"},
}


def test_builders():
    t = config.teacher({"d": 2, "m": 3, "scale": 2.0, "seed": 1, "weights": [0.2, 0.3, 0.5]})
    assert t.means.shape == (3, 2)
    np.testing.assert_allclose(t.weights, [0.2, 0.3, 0.5])
    s = config.student({"n": 6, "init": "perturbed", "noise": 0.1, "weights": "split"}, t, seed=0)
    np.testing.assert_allclose(np.asarray(s.weights), [0.1, 0.15, 0.25] * 2)
    by_dim = {"kind": "auto", "nodes": 11, "by_dim": {"2": {"nodes": 81}}, "samples": 100}
    assert config.backend(by_dim, 2).nodes == 81 and config.backend(by_dim, 5).nodes == 11
    assert isinstance(config.backend(by_dim, 10), og.MonteCarlo)
    hist = config.run_seeds(TINY_RUN, [0, 1, 2])
    assert hist["loss"].shape == (3, 3)  # seeds x records (step 0, 2, 4)


def test_a_seeds_samples_are_nested_across_sizes_and_run_seeds_records_the_state():
    """X4's common random numbers rest on this: a seed's sample of N points is the first N
    points of its sample of any larger size (JAX's counter-based draws), in any dimension."""
    for spec in ({"d": 1, "m": 1, "means": [[0.0]]}, {"d": 3, "m": 2, "means": [[0, 0, 0], [4, 4, 4]]}):
        t = config.teacher(spec)
        small, large = (config.sample({"n_samples": k}, t, 7) for k in (100, 5000))
        np.testing.assert_array_equal(small, large[:100])
    hist = config.run_seeds(TINY_RUN, [3, 4], record=("means", "weights"))
    assert hist["means"].shape == (2, 3, 2, 1) and hist["weights"].shape == (2, 3, 2)
    start = config.student(TINY_RUN["student"], config.teacher(TINY_RUN["teacher"]), 4)
    np.testing.assert_array_equal(hist["means"][1, 0], np.asarray(start.means))
