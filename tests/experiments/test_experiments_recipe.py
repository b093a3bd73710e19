"""Results tables name the decoding/scoring recipe of the runs they show, in their header."""

from __future__ import annotations

import json

from solo.decode.recipe import RECIPE_FILE, recipe_line, run_recipe
from solo.experiments import aggregate as agg
from solo.train.compose import compose_train_config
from tests.experiments.experiment_rundirs import scores, write_run


def test_tables_show_each_runs_recipe_in_their_header(tmp_path):
    base_cfg = compose_train_config(["experiment=table1/lora_gpt2"])
    paper = write_run(tmp_path, "table2/solo_r128_s0.6", 1, scores(0.66))
    (paper / RECIPE_FILE).write_text(json.dumps(run_recipe(base_cfg)))
    write_run(tmp_path, "table6/solo_r128_s0.6_plain_vector", 1, {**scores(0.6), "mteval": "python"})
    results = agg.aggregate_table(6, tmp_path, smoke=False)
    md = agg.render_markdown(6, results, tmp_path, smoke=False)
    header = md.split("| # |")[0]
    assert f"- rows 1: {recipe_line(run_recipe(base_cfg))}" in header
    assert "- rows 2: not recorded (BLEU/NIST by mteval python)" in header
    rows = agg.render_csv(6, results, smoke=False).splitlines()
    assert "recipe" in rows[0].split(",") and "mteval python" in rows[1]
