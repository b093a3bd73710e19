"""Which experiment config reproduces each printed row of the paper's Tables 1-6.

The printed numbers come from `tables.csv` beside the shared data (see the paper README); this
module only pairs each of its rows, in file order, with a config under configs/experiment/.
Rows that repeat another table's experiment (Table 1 is drawn from Tables 2-3, Table 5's and
Table 6's reference rows are Table 2 rows) use alias configs that include the original, so both
rows read the same run dirs and nothing is trained twice.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass, field
from pathlib import Path

from solo.errors import SoloError
from solo.paper import read_tables_csv
from solo.paths import REPO_ROOT

EXPERIMENT_DIR = REPO_ROOT / "configs" / "experiment"
METRICS: tuple[str, ...] = ("BLEU", "NIST", "METEOR", "ROUGE_L", "CIDEr")
# The paper prints these in percent; the official scorer (and scores.json) gives fractions.
PERCENT_METRICS = frozenset({"BLEU", "METEOR", "ROUGE_L"})

# Per table, the experiment config of each tables.csv row, in the csv's order.
TABLE_CONFIGS: dict[int, tuple[str, ...]] = {
    1: (
        "table1/full_ft_gpt2-medium",
        "table1/lora_gpt2-medium",
        "table1/solo_gpt2-medium",
        "table1/lora_gpt2",
        "table1/solo_gpt2",
    ),
    2: (
        "table2/lora_r8",
        "table2/solo_r512_s0",
        "table2/solo_r128_s0",
        "table2/solo_r64_s0",
        "table2/solo_r32_s0",
        "table2/solo_r8_s0",
        "table2/solo_r512_s0.6",
        "table2/solo_r128_s0.6",
        "table2/solo_r64_s0.6",
        "table2/solo_r32_s0.6",
        "table2/solo_r8_s0.6",
    ),
    3: (
        "table3/full_ft",
        "table3/lora_r4",
        "table3/solo_r512_s0",
        "table3/solo_r128_s0",
        "table3/solo_r64_s0",
        "table3/solo_r32_s0",
        "table3/solo_r8_s0",
        "table3/solo_r512_s0.7",
        "table3/solo_r128_s0.7",
        "table3/solo_r64_s0.6",
        "table3/solo_r32_s0.6",
        "table3/solo_r8_s0.7",
    ),
    4: (
        "table4/solo_r128_s0.6_span3",
        "table4/solo_r64_s0.6_span3",
        "table4/solo_r128_s0.6_span5",
        "table4/solo_r64_s0.6_span5",
    ),
    5: (
        "table5/solo_r512_s0_trainable",
        "table5/solo_r512_frozen_encdec",
        "table5/solo_r1024_frozen_encdec",
    ),
    6: (
        "table6/solo_r128_s0.6_homotopy",
        "table6/solo_r128_s0.6_plain_vector",
    ),
}

TABLE_TITLES: dict[int, str] = {
    1: "Table 1: GPT-2 M and S, full fine-tuning vs LoRA vs Solo Connection",
    2: "Table 2: GPT-2 S, Solo Connection rank x sparsity",
    3: "Table 3: GPT-2 M, Solo Connection rank x sparsity",
    4: "Table 4: span (consecutive blocks sharing one connection)",
    5: "Table 5: frozen random encoder/decoder",
    6: "Table 6: homotopy layer vs plain vector",
}


@dataclass(frozen=True)
class PaperRow:
    """One printed row: its identity, the printed numbers, and the config that reproduces it."""

    table: int
    experiment: str  # config name under configs/experiment/, e.g. "table2/solo_r128_s0.6"
    model: str
    method: str
    rank: str
    sparsity: str
    span: str
    variant: str
    params_printed: str
    metrics: dict[str, float]  # as printed: BLEU/METEOR/ROUGE_L in percent, NIST/CIDEr raw
    note: str
    printed: dict[str, str] = field(default_factory=dict)  # metrics' text in tables.csv ("45.70")

    @property
    def cited(self) -> bool:
        """Printed by the paper from another paper (full fine-tuning): never re-run here."""
        return self.method == "full_ft"

    @property
    def label(self) -> str:
        parts = [self.model, self.method]
        if self.rank:
            parts.append(f"r={self.rank}")
        if self.sparsity:
            parts.append(f"s={self.sparsity}")
        if self.span and self.span != "1":
            parts.append(f"span={self.span}")
        if self.variant:
            parts.append(self.variant)
        return " ".join(parts)


def experiment_config_path(experiment: str) -> Path:
    return EXPERIMENT_DIR / f"{experiment}.yaml"


def load_paper_rows(path: Path | None = None) -> list[PaperRow]:
    """Every row of tables.csv paired with its experiment config, in file order."""
    path, records = read_tables_csv(path)
    seen: dict[int, int] = {}
    rows: list[PaperRow] = []
    for line, rec in enumerate(records, start=2):
        try:
            table = int(rec["table"])
            metrics = {m: float(rec[m]) for m in METRICS}
        except (KeyError, ValueError) as err:
            raise SoloError(f"{path}:{line}: unreadable row ({err}); expected the columns of the paper's tables.csv") from None
        index = seen.get(table, 0)
        seen[table] = index + 1
        configs = TABLE_CONFIGS.get(table, ())
        if index >= len(configs):
            raise SoloError(
                f"{path}:{line}: table {table} has more rows than solo/experiments/tables.py "
                f"TABLE_CONFIGS[{table}] lists; add the experiment config of this row there"
            )
        rows.append(
            PaperRow(
                table=table, experiment=configs[index], model=rec["model"], method=rec["method"],
                rank=rec["rank"], sparsity=rec["sparsity"], span=rec["span"], variant=rec["variant"],
                params_printed=rec["params_printed"], metrics=metrics, note=rec["note"],
                printed={m: rec[m].strip() for m in METRICS},
            )
        )
    for table, configs in TABLE_CONFIGS.items():
        if seen.get(table, 0) != len(configs):
            raise SoloError(
                f"{path}: table {table} has {seen.get(table, 0)} rows but TABLE_CONFIGS[{table}] "
                f"lists {len(configs)} configs; make them agree"
            )
    return rows


def table_rows(table: int, path: Path | None = None) -> list[PaperRow]:
    if table not in TABLE_CONFIGS:
        raise SoloError(f"table {table} does not exist; choose one of {sorted(TABLE_CONFIGS)}")
    return [row for row in load_paper_rows(path) if row.table == table]


@functools.cache  # the config files do not change while a process runs
def experiment_id_of(experiment: str) -> str:
    """The `experiment_id` of an experiment config as Hydra composes it (an alias config gets the
    id of the config it includes)."""
    from solo.train.compose import compose_train_config

    path = experiment_config_path(experiment)
    if not path.exists():
        raise SoloError(f"{path} not found; TABLE_CONFIGS in solo/experiments/tables.py names a missing experiment config")
    experiment_id = compose_train_config([f"experiment={experiment}"]).get("experiment_id")
    if experiment_id is None:
        raise SoloError(f"{path} sets no experiment_id and includes no experiment config that does")
    return str(experiment_id)
