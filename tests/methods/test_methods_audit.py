"""Parameter audit: its counts equal those of really built models; it exposes the paper's inconsistencies."""

from __future__ import annotations

import csv

import pytest
import torch

from solo.methods import apply_method
from solo.methods.audit import audit_rows, main, method_config
from solo.models.backbone import build_random_model, random_config
from solo.paper import parse_printed_count, tables_csv
from solo.paths import shared_data_dir
from tests.methods.methods_helpers import make_gpt2


@pytest.fixture(scope="module")
def rows():
    return audit_rows()


def measured_entries(method) -> int:
    """Count live trainable entries of a built model: masks summed, everything else by numel."""
    adapter = getattr(method, "adapter", None)
    total = 0
    for p in method.trainable_parameters():
        if adapter is not None and adapter.masked and p is adapter.encoder:
            total += int(adapter.encoder_mask.sum())
        elif adapter is not None and adapter.masked and p is adapter.decoder:
            total += int(adapter.decoder_mask.sum())
        else:
            total += p.numel()
    return total


def test_every_table_row_is_audited(rows):
    with open(tables_csv(), newline="") as fh:
        assert len(rows) == sum(1 for _ in csv.DictReader(fh))
    assert {r.table for r in rows} == {1, 2, 3, 4, 5, 6}


def test_counts_equal_a_really_built_gpt2_small(rows):
    # Real tensors of GPT-2 S shapes without paying for random init: allocate, then attach.
    config = random_config(shared_data_dir() / "gpt2-configs" / "gpt2.json")
    picked = [r for r in rows if r.model == "gpt2" and (r.table in (4, 5, 6) or r.method == "lora" or (r.table == 2 and r.rank == 128))]
    assert len(picked) >= 8
    with open(tables_csv(), newline="") as fh:
        source = [row for row in csv.DictReader(fh)]
    model = build_random_model(config, device="meta").to_empty(device="cpu")
    for audit_row, table_row in zip(rows, source, strict=True):
        if audit_row not in picked:
            continue
        method = apply_method(model, method_config(table_row))
        assert measured_entries(method) == audit_row.measured, audit_row
        method.detach()


def test_counts_equal_a_tiny_model_built_both_ways():
    row = {"method": "solo", "rank": "8", "sparsity": "0.6", "span": "1", "variant": "", "model": "gpt2"}
    cfg = method_config(row)
    real = apply_method(make_gpt2(), cfg)
    with torch.device("meta"):
        meta_model = make_gpt2()
    assert apply_method(meta_model, cfg).num_trainable() == measured_entries(real)


def test_shows_the_documented_inconsistencies(rows):
    lora_small = next(r for r in rows if r.model == "gpt2" and r.method == "lora")
    assert lora_small.measured == 147_456 and lora_small.alt == 294_912 and lora_small.closer == "alt"
    lora_medium = next(r for r in rows if r.model == "gpt2-medium" and r.method == "lora")
    assert lora_medium.measured == 393_216
    table2_sparse = [r for r in rows if r.table == 2 and r.method == "solo" and r.sparsity == 0.6]
    assert table2_sparse and all(r.closer == "alt" for r in table2_sparse)  # 60 % kept
    table3_r128 = next(r for r in rows if r.table == 3 and r.rank == 128 and r.sparsity == 0.7)
    assert table3_r128.closer == "text" and abs(table3_r128.ratio - 1) < 0.05  # 30 % kept
    dense = next(r for r in rows if r.table == 2 and r.rank == 128 and r.sparsity == 0.0)
    assert dense.measured == 201_093


def test_parse_printed_count():
    assert parse_printed_count("354.92M") == pytest.approx(354_920_000)
    assert parse_printed_count("78k") == 78_000 and parse_printed_count("0.011M") == pytest.approx(11_000)


def test_cli_prints_table_and_refuses_to_overwrite_csv(rows, tmp_path, capsys, monkeypatch):
    import solo.methods.audit as audit

    monkeypatch.setattr(audit, "audit_rows", lambda: rows)  # computed once by the fixture
    out = tmp_path / "audit.csv"
    main(["--csv", str(out)])
    printed = capsys.readouterr().out
    assert "294,912" in printed and "alt reading matches better" in printed
    assert out.read_text().count("\n") == 1 + len(rows)
    with pytest.raises(SystemExit) as exc:
        main(["--csv", str(out)])
    assert exc.value.code == 2
