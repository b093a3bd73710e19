"""The decoding/scoring recipe: the paper-table defaults, recorded per run dir, and every choice
that changes numbers in the run hash (switching a rule never reuses a run dir). The tables'
header: tests/experiments/test_experiments_recipe.py."""

from __future__ import annotations

import json

import pytest

from solo.decode.recipe import RECIPE_FILE, read_recipe, recipe_line, recorded_mteval, run_recipe
from solo.errors import SoloError
from solo.train.compose import compose_train_config
from solo.train.rundir import run_dir_for

BASE = ["experiment=table1/lora_gpt2", "profile=tiny"]
PAPER_RECIPE = {
    "decode": {"style": "lora", "num_beams": 10, "length_penalty": 0.8, "no_repeat_ngram_size": 4,
               "max_new_tokens": 64, "stop_tokens": ["<eos>", "\n\n"]},
    "score": {"mteval": "python"},
    "train": {"batch_order": "random",
              "backbone_dropout": {"resid_pdrop": 0.0, "embd_pdrop": 0.0, "attn_pdrop": 0.0}},
}


@pytest.fixture(scope="module")
def base_cfg():
    return compose_train_config(["experiment=table1/lora_gpt2"])


def test_paper_tables_use_microsoft_loras_recipe(base_cfg):
    recipe = run_recipe(base_cfg)
    for part, expected in PAPER_RECIPE.items():
        assert {k: recipe[part][k] for k in expected} == expected
    line = recipe_line(recipe)
    for piece in ("decode lora rule", "beam 10", "length penalty 0.8", "no-repeat 4-gram",
                  "<= 64 new tokens", "stops eos + '\\n\\n'", "mteval python", "batch order random",
                  "backbone dropout off"):
        assert piece in line


@pytest.mark.parametrize("switch", [
    "decode.style=hf", "decode.length_penalty=0.9", "decode.extra_stop_tokens=[]",
    "decode.no_repeat_ngram_size=3", "score.mteval=perl", "data.batch_order=bucketed",
    "model.overrides.attn_pdrop=0.1",
])
def test_switching_a_rule_never_reuses_a_run_dir(switch):
    base, switched = compose_train_config(BASE), compose_train_config([*BASE, switch])
    assert run_dir_for(switched) != run_dir_for(base)
    assert run_recipe(switched) != run_recipe(base)


def test_speed_only_settings_keep_the_run_dir():
    assert run_dir_for(compose_train_config([*BASE, "decode.batch_size=3"])) == run_dir_for(
        compose_train_config(BASE))


def test_recorded_recipe_is_read_back_and_a_missing_one_is_an_error(tmp_path, base_cfg):
    (tmp_path / RECIPE_FILE).write_text(json.dumps(run_recipe(base_cfg)))
    assert read_recipe(tmp_path) == json.loads(json.dumps(run_recipe(base_cfg)))
    assert recorded_mteval(tmp_path) == "python"
    with pytest.raises(SoloError, match="recipe.json is missing"):
        recorded_mteval(tmp_path / "elsewhere")
    (tmp_path / RECIPE_FILE).write_text('{"score": {"mteval": "python"')  # a write cut short
    with pytest.raises(SoloError, match=r"recipe.json:1: damaged recipe file .*out of the run root"):
        recorded_mteval(tmp_path)
