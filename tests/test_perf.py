"""``hbvbench perf``: the cost table's columns, its aten-operation count and the improved rows."""

from __future__ import annotations

import json

import torch

from benchmark.cli import main as cli_main
from benchmark.perf import count_aten_ops, variants


def test_the_aten_count_is_the_number_of_dispatched_operations():
    x, y = torch.ones(8), torch.full((8,), 2.0)
    one = count_aten_ops(lambda: torch.add(x, y))
    assert one >= 1
    assert count_aten_ops(lambda: [torch.add(x, y) for _ in range(10)]) == 10 * one


def test_every_registry_model_is_a_row():
    from benchmark.models.registry import MODEL_NAMES

    assert set(MODEL_NAMES) <= {v.model for v in variants()}
    assert {"dhbv_cr", "dhbv_adj_cr", "gr4j", "gr4j_adj"} <= {v.key for v in variants()}


def test_perf_reports_step_time_memory_and_aten_ops_per_day_of_the_improved_pair(tmp_path):
    out = tmp_path / "perf"
    assert cli_main(["perf", "--basins", "2", "--days", "40", "--nmul", "2", "--repeats", "1", "--threads", "1",
                     "--variants", "dhbv_cr", "dhbv_adj_cr", "--out", str(out)]) == 0
    document = json.loads((out / "perf.json").read_text())
    rows = {row["key"]: row for row in document["results"]}
    assert set(rows) == {"dhbv_cr", "dhbv_adj_cr"}
    for row in rows.values():
        assert row["step_s"] > 0.0 and row["peak_memory_MB"] >= 0.0
        # a day of HBV is tens of operations at least, forward and backward
        assert 20.0 < row["aten_ops_per_day"] < 1e5
    table = (out / "perf.md").read_text()
    assert "aten ops per simulated day" in table
    ratio = rows["dhbv_adj_cr"]["step_s"] / rows["dhbv_cr"]["step_s"]
    assert f"δHBV.adj improved / δHBV improved step time: {ratio:.2f}." in table
    assert f"| {rows['dhbv_adj_cr']['aten_ops_per_day']:.0f} |" in table
