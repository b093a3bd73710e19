"""Every printed row of the paper's Tables 1-6 has an experiment config that reproduces it."""

from __future__ import annotations

import csv

import pytest

from solo.experiments.tables import (
    TABLE_CONFIGS,
    experiment_config_path,
    experiment_id_of,
    load_paper_rows,
)
from solo.paper import tables_csv
from solo.train.compose import compose_train_config

ROWS = load_paper_rows()


def test_every_csv_row_has_a_config():
    with open(tables_csv(), newline="") as handle:
        printed = list(csv.DictReader(handle))
    assert len(ROWS) == len(printed) == sum(len(c) for c in TABLE_CONFIGS.values())
    assert [str(r.table) for r in ROWS] == [p["table"] for p in printed]
    for row in ROWS:
        assert experiment_config_path(row.experiment).exists(), row.experiment


@pytest.mark.parametrize("row", ROWS, ids=lambda r: f"t{r.table}-{r.experiment.split('/')[1]}")
def test_config_matches_the_printed_row(row):
    cfg = compose_train_config([f"experiment={row.experiment}"])
    assert cfg.model.name == row.model
    assert cfg.method.name == row.method
    # The id names the config that defines the experiment (itself, or the one an alias includes),
    # and names the run dirs.
    assert experiment_config_path(cfg.experiment_id).exists() and cfg.name == cfg.experiment_id
    if row.cited:
        assert cfg.cited, "full fine-tuning is cited from the LoRA paper, not re-run"
        return
    assert not cfg.cited
    if row.method == "lora":
        # tables.csv leaves the GPT-2 S LoRA rank blank; its 0.29M parameters mean r=8 on Q and V
        assert cfg.method.rank == (int(row.rank) if row.rank else 8)
        assert cfg.trainer.batch_size == 8 and cfg.trainer.weight_decay == 0.01
        return
    assert cfg.method.rank == int(row.rank)
    assert float(cfg.method.sparsity) == float(row.sparsity)
    assert cfg.method.span == int(row.span)
    assert cfg.trainer.batch_size == 4 and cfg.trainer.weight_decay == 0.1
    assert cfg.method.train_encdec == ("frozen" not in row.variant)
    assert cfg.method.homotopy == ("plain vector" not in row.variant)


def test_repeated_rows_share_one_experiment():
    # Table 1 repeats Table 2/3 rows; sharing the experiment id means sharing the run dirs.
    by_identity: dict[tuple, set[str]] = {}
    for row in ROWS:
        key = (row.model, row.method, row.rank, row.sparsity, row.span, row.variant.startswith(("trainable", "homotopy")) or row.variant == "")
        by_identity.setdefault(key, set()).add(experiment_id_of(row.experiment))
    assert all(len(ids) == 1 for ids in by_identity.values()), by_identity
    assert experiment_id_of("table1/solo_gpt2") == "table2/solo_r128_s0.6"


def test_tiny_profile_is_a_labelled_smoke_run():
    cfg = compose_train_config(["experiment=table3/solo_r512_s0.7", "profile=tiny"])
    assert cfg.model.name == "tiny" and cfg.smoke is True
    assert cfg.data.train_split == "valid" and cfg.trainer.max_steps <= 10
    assert cfg.method.rank == 512  # the row's own method survives the profile


@pytest.mark.parametrize("launcher", ["joblib", "slurm", "slurm_shared_gpu"])
def test_launcher_never_changes_the_run_dir(launcher):
    # run_table skips finished rows by run dir; a row run on Slurm must be found by a local rerun.
    from solo.train.rundir import run_dir_for

    base = ["experiment=table2/solo_r8_s0", "seed=2"]
    assert run_dir_for(compose_train_config([*base, f"launcher={launcher}"])) == run_dir_for(compose_train_config(base))


def _sbatch_script(tmp_path, overrides: list[str], jobs: int) -> str:
    """The sbatch script submitit would submit for a sweep of `jobs` jobs with these overrides:
    the Hydra launcher is launched for real, only the submission is intercepted (so no Slurm is
    needed: submitit's check for `srun` on PATH is answered as on a cluster)."""
    import submitit
    from hydra import compose, initialize_config_dir
    from hydra_plugins.hydra_submitit_launcher.submitit_launcher import SlurmLauncher
    from omegaconf import OmegaConf
    from submitit.slurm.slurm import SlurmExecutor, _make_sbatch_string

    from solo.train.compose import CONFIG_DIR

    with initialize_config_dir(config_dir=str(CONFIG_DIR), version_base="1.3"):
        cfg = compose("train", overrides=[*overrides, f"hydra.sweep.dir={tmp_path}"],
                      return_hydra_config=True)
    params = OmegaConf.to_container(cfg.hydra.launcher, resolve=True)
    assert params.pop("_target_").endswith("SlurmLauncher")
    launcher = SlurmLauncher(**params)
    launcher.setup(hydra_context=None, task_function=None, config=cfg)
    submitted = []

    def map_array(executor, function, *arguments):
        submitted.append(executor._executor.parameters)
        return []

    original, affinity = submitit.AutoExecutor.map_array, SlurmExecutor.__dict__["affinity"]
    submitit.AutoExecutor.map_array = map_array
    SlurmExecutor.affinity = classmethod(lambda cls: 1)
    try:
        launcher.launch([[f"seed={i}"] for i in range(jobs)], initial_job_idx=0)
    finally:
        submitit.AutoExecutor.map_array, SlurmExecutor.affinity = original, affinity
    (parameters,) = submitted
    return _make_sbatch_string(command="true", folder=str(tmp_path), map_count=jobs, **parameters)


def test_slurm_launcher_submits_partition_gpus_time_and_array_parallelism(tmp_path):
    script = _sbatch_script(tmp_path, ["launcher=slurm", "hydra.launcher.partition=gpu"], jobs=40)
    for line in ("--partition=gpu", "--gpus-per-node=1", "--time=240", "--array=0-39%32"):
        assert f"#SBATCH {line}\n" in script, line
    # Several jobs per GPU: a GPU shard per job instead of a whole GPU.
    shared = _sbatch_script(tmp_path, ["launcher=slurm_shared_gpu"], jobs=4)
    assert "#SBATCH --gres=shard:1\n" in shared and "--gpus-per-node" not in shared
