"""The published reference rows hold exactly the numbers of Song et al. (2024) (docs/published.md)."""

from __future__ import annotations

import math

import pandas as pd
import pytest

from baselines.published import LABEL, SHORT_CITATION, load_published, published_long, published_value
from benchmark.errors import DataError

# the paper's Table 1: NSE / KGE / |FLV| / |FHV| / low-flow RMSE / peak-flow RMSE
PAPER_TABLE1 = {
    "lstm_nh": (0.73, 0.77, 40.59, 13.46, 0.055, 2.56),
    "sacsma": (0.66, 0.73, 59.40, 17.55, 0.081, 3.19),
    "dhbv": (0.73, 0.73, 56.53, 15.29, 0.074, 2.56),
    "dhbv_adj": (0.72, 0.75, 43.29, 13.25, 0.048, 2.47),
    "dhbv_cr": (0.73, 0.75, 35.69, 15.45, 0.049, 2.72),
    "dhbv_adj_cr": (0.73, 0.76, 37.63, 14.36, 0.047, 2.59),
}
# Table 2: BFI r / ET NSE
PAPER_TABLE2 = {"dhbv": (0.76, 0.59), "dhbv_adj": (0.83, 0.61), "dhbv_cr": (0.80, 0.54), "dhbv_adj_cr": (0.86, 0.60)}
# Table A2: seconds per batch / MB per batch (MB checked for the sequential and adjoint rows only)
PAPER_TABLEA2 = {
    "dhbv": (1.8, 2266),
    "dhbv_adj": (19.5, 2788),
    "dhbv_euler1d": (1.6, None),
    "dhbv_euler4h": (6.3, None),
    "dhbv_euler1h": (18.1, None),
    "dhbv_rk4": (30.9, None),
}


def test_table1_matches_spec_section_7() -> None:
    table = load_published("table1").set_index("model")
    assert sorted(table.index) == sorted(PAPER_TABLE1)
    for model, (nse, kge, abs_flv, abs_fhv, low, peak) in PAPER_TABLE1.items():
        row = table.loc[model]
        assert (row.NSE, row.KGE, row.absFLV, row.absFHV, row.lowRMSE, row.peakRMSE) == pytest.approx(
            (nse, kge, abs_flv, abs_fhv, low, peak), abs=1e-9
        ), model


def test_table1_keeps_the_signed_flv_fhv_of_the_paper() -> None:
    table = load_published("table1").set_index("model")
    assert table.loc["lstm_nh", "FLV"] == pytest.approx(29.70)
    assert table.loc["lstm_nh", "FHV"] == pytest.approx(-4.19)
    assert table.loc["dhbv_cr", "FHV"] == pytest.approx(-10.61)
    # the absolute-value median can never be below the absolute signed median
    assert (table["absFLV"] >= table["FLV"].abs()).all()


def test_table2_matches_spec_and_leaves_lstm_sacsma_empty() -> None:
    table = load_published("table2").set_index("model")
    for model, (bfi_r, et_nse) in PAPER_TABLE2.items():
        assert (table.loc[model, "BFI_r"], table.loc[model, "ET_NSE"]) == pytest.approx((bfi_r, et_nse))
    assert table.loc[["lstm_nh", "sacsma"], ["BFI_r", "ET_NSE"]].isna().all().all()


def test_table_a2_matches_spec() -> None:
    table = load_published("tableA2").set_index("model")
    for model, (seconds, megabytes) in PAPER_TABLEA2.items():
        assert table.loc[model, "time_per_batch_s"] == pytest.approx(seconds), model
        if megabytes is not None:
            assert table.loc[model, "memory_MB"] == megabytes
    assert table.loc["dhbv_rk4", "time_per_batch_text"] == "309s"
    assert math.isnan(table.loc["dhbv_euler1d", "NSE"])  # diverged: no metrics in the paper
    assert table.loc["dhbv_adj", "KGE"] == pytest.approx(0.75)


@pytest.mark.parametrize("table", ["table1", "table2", "tableA2"])
def test_every_row_is_labelled_and_cited(table: str) -> None:
    frame = load_published(table)
    assert (frame["label"] == LABEL).all() and LABEL == "published, 671 basins"
    assert (frame["source"] == SHORT_CITATION).all()
    assert "10.5194/hess-28-3051-2024" in SHORT_CITATION


def test_long_format_is_tidy_and_drops_the_papers_dashes() -> None:
    long = published_long("table2")
    assert list(long.columns) == ["model", "paper_name", "metric", "value", "table", "label", "source"]
    assert set(long["model"]) == set(PAPER_TABLE2)  # LSTM / SAC-SMA have "-" in Table 2
    assert not long.duplicated(["model", "metric"]).any()
    assert pd.api.types.is_float_dtype(long["value"])
    assert published_value("table1", "lstm_nh", "NSE") == 0.73


def test_unknown_table_model_or_missing_value_raise_clear_errors(tmp_path) -> None:
    with pytest.raises(DataError, match="unknown published table"):
        load_published("table9")  # type: ignore[arg-type]
    with pytest.raises(DataError, match="is missing"):
        load_published("table1", directory=tmp_path)
    with pytest.raises(DataError, match="not in published table1"):
        published_value("table1", "nonexistent", "NSE")
    with pytest.raises(DataError, match="reports no ET_NSE for sacsma"):
        published_value("table2", "sacsma", "ET_NSE")
