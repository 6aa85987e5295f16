"""planning.schemes is the one registry of update schemes: deploy's
--scheme values and the update-scheme benchmark's methods name its
entries, and a scheme refuses inputs it lacks."""

import pathlib

import pytest

from benchmarks import update_schemes_methods as methods
from planning import schemes
from tools import deploy_steps

MODEL = (
    pathlib.Path(__file__).resolve().parents[1] / "examples" / "ds_cnn_fsdd.tflite"
).read_bytes()
SETTINGS = deploy_steps.plan_settings(0.02)


def test_deploy_and_the_benchmark_name_registry_schemes():
    assert set(deploy_steps.SCHEMES) <= set(schemes.SCHEMES)
    assert set(deploy_steps.SEARCHED_SCHEMES) == {
        name for name in deploy_steps.SCHEMES if schemes.SCHEMES[name].needs
    }
    assert set(methods.INT8_METHODS) <= set(schemes.SCHEMES)


def test_sparse_is_the_fixed_plan_and_sparse_search_needs_a_table():
    plan = schemes.build("sparse", MODEL, schemes.Inputs(SETTINGS)).plan
    assert plan.to_bytes() == deploy_steps.make_plan(MODEL, "sparse", 0.02).to_bytes()
    with pytest.raises(ValueError, match="sparse-search scheme needs budget, contributions"):
        schemes.build("sparse-search", MODEL, schemes.Inputs(SETTINGS))


def test_an_unknown_scheme_names_the_schemes():
    with pytest.raises(KeyError, match="pick one of classifier, classifier-bias, bias"):
        schemes.build("Sparse", MODEL, schemes.Inputs(SETTINGS))
