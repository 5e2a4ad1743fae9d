"""The leaderboard report: tables from the metric files, figures, offline HTML in a real browser.

Inputs are produced by the project's real code paths, never invented: the ``ci`` profile's
four basins are read from the embedded CAMELS files (``prepare.build_dataset``), simulated by
``benchmark.models.simulate`` (sequential with and without capillary rise, implicit, explicit
Euler 1 d; the implicit improved model is left out to keep the test short) at the mid-range
parameters of the reference runs (tests/reference/README.md), and scored by
``benchmark.evaluation``; SAC-SMA is the real CAMELS file of basin 01031500. The
adjoint-minus-sequential numbers are checked on the authors' own reference series.

The browser test needs Debian's ``chromium`` (``.ci/run`` installs it); without it the test
fails unless ``HBVBENCH_ALLOW_NO_BROWSER=1`` (then it is skipped). The screenshot is saved to
``$HBVBENCH_TEST_ARTIFACTS`` (default ``reports/screenshots/``).
"""

from __future__ import annotations

import html.parser
import json
import os
import re
import shutil
import subprocess
import tempfile
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
import xarray as xr
import yaml

from benchmark import evaluation
from benchmark.cli import main as cli_main
from benchmark.errors import DataError
from benchmark.report import styles
from benchmark.report.inputs import ModelResult, collect_from_files
from tests.report_fixtures import artifact_dir, require_chromium

CI_BASINS = ["01022500", "01031500", "01047000", "02053200"]
TEST_START, TEST_END, WARMUP_START = "1995-10-01", "2000-09-30", "1994-10-01"
SIMULATED = ("dhbv", "dhbv_cr", "dhbv_adj", "dhbv_euler1d")
ROUTING = (1.45, 3.25)  # the reference runs' routing (tests/reference/README.md)


# --------------------------------------------------------------------------- inputs


def _camels_dataset(camels_dir: Path) -> xr.Dataset:
    from benchmark.data import camels, prepare

    attrs = camels.read_attributes(camels_dir)
    raw = [prepare.read_basin(camels_dir, b, "daymet", float(attrs.loc[b, "area_gages2"]), None) for b in CI_BASINS]
    ds, _ = prepare.build_dataset(raw, attrs, product="daymet", source_dir=str(camels_dir), with_modis=False)
    return ds.assign_coords(basin=[str(b) for b in ds["basin"].values])


def _simulated_predictions(ds: xr.Dataset, model: str) -> xr.Dataset:
    from benchmark.models.parameters import HBV_PARAMETERS
    from benchmark.models.registry import get_model_spec
    from benchmark.models.simulate import simulate

    spec = get_model_spec(model)
    period = ds.sel(date=slice(WARMUP_START, TEST_END))
    forcing = torch.tensor(np.stack([period[v].values.T for v in ("prcp", "tmean", "pet")], -1), dtype=torch.float32)
    params = {p: torch.full((len(CI_BASINS),), HBV_PARAMETERS[p].mid) for p in spec.parameter_names}
    with torch.no_grad():
        out = simulate(forcing, params, routing=ROUTING, **spec.simulate_options())
    keep = pd.DatetimeIndex(period["date"].values) >= pd.Timestamp(TEST_START)
    dates = period["date"].values[keep]
    series = {"qsim": out["Q"], "Q_unrouted": out["Q_unrouted"], "Q2": out["Q2"], "ET": out["ET"]}
    data = {k: (("basin", "date"), v.numpy()[keep].T) for k, v in series.items()}
    data["qobs"] = (("basin", "date"), period["qobs"].values[:, keep])
    for name in ("BETA", "FC", "K2", "LP"):
        data[f"param_{name}"] = (("basin",), params[name].numpy())
    return xr.Dataset(data, coords={"basin": CI_BASINS, "date": dates}, attrs={"model": model, "profile": "ci"})


def _sacsma_predictions(ds: xr.Dataset, camels_dir: Path) -> xr.Dataset:
    from benchmark.data.sacsma import read_sacsma_output, sacsma_paths

    path = sacsma_paths(camels_dir, "01031500")[0]
    sac = read_sacsma_output(path).loc[TEST_START:TEST_END]
    obs = ds["qobs"].sel(basin="01031500", date=sac.index)
    return xr.Dataset({"qsim": (("basin", "date"), sac["MOD_RUN"].to_numpy()[None, :]),
                       "qobs": (("basin", "date"), obs.values[None, :])},
                      coords={"basin": ["01031500"], "date": sac.index.values}, attrs={"model": "sacsma"})


def _write_model(folder: Path, pred: xr.Dataset, ds: xr.Dataset) -> None:
    per_basin, summary = evaluation.score_predictions(pred, ds)
    folder.mkdir(parents=True, exist_ok=True)
    pred.to_netcdf(folder / "predictions.nc")
    evaluation.write_metrics(folder, per_basin, summary)


def _commit_folder(folder: Path) -> str:
    """Make ``folder`` a git repository with one commit of its params.yaml; the commit id."""
    git = ["git", "-C", str(folder), "-c", "user.name=test", "-c", "user.email=test@example.org"]
    for args in (["init", "-q"], ["add", "params.yaml"], ["commit", "-q", "-m", "params"]):
        subprocess.run([*git, *args], check=True, capture_output=True)
    return subprocess.run([*git, "rev-parse", "HEAD"], check=True, capture_output=True, text=True).stdout.strip()


@pytest.fixture(scope="module")
def ci_case(tmp_path_factory: pytest.TempPathFactory, camels_dir: Path, repo_root: Path) -> dict[str, Path]:
    """Evaluated ci-basin models and the SAC-SMA baseline, and the report rendered from them."""
    root = tmp_path_factory.mktemp("report")
    ds = _camels_dataset(camels_dir)
    for model in SIMULATED:
        _write_model(root / "eval" / model, _simulated_predictions(ds, model), ds)
    _write_model(root / "baselines" / "sacsma", _sacsma_predictions(ds, camels_dir), ds)
    params = yaml.safe_load((repo_root / "params.yaml").read_text())
    params["profile"] = "ci"
    (root / "params.yaml").write_text(yaml.safe_dump(params))
    _commit_folder(root)  # --params makes this folder the repository the report describes
    # the real `hbvbench perf` on a tiny batch: the cost columns of the Table A2 layout
    assert cli_main(["perf", "--basins", "2", "--days", "60", "--nmul", "1", "--repeats", "1", "--threads", "1",
                     "--variants", "sequential", "adjoint", "--out", str(root / "perf")]) == 0
    out = root / "out"
    code = cli_main(["--params", str(root / "params.yaml"), "report", "--eval-dir", str(root / "eval"),
                     "--baselines-dir", str(root / "baselines"), "--models-dir", str(root / "models"),
                     "--perf-dir", str(root / "perf"), "--out", str(out)])
    assert code == 0
    return {"root": root, "out": out, "md": out / "leaderboard.md", "html": out / "leaderboard.html"}


# --------------------------------------------------------------------------- HTML helpers


class _Rows(html.parser.HTMLParser):
    """Table rows of an HTML page as lists of cell texts, with the <tbody> class they sit in;
    ``by_table`` holds the same rows per table section id (``table-streamflow``...)."""

    def __init__(self) -> None:
        super().__init__()
        self.rows: list[tuple[str, list[str], list[bool]]] = []
        self.by_table: dict[str, list[tuple[str, list[str], list[bool]]]] = {}
        self.images: list[str] = []
        self._body, self._cells, self._bold, self._in_cell, self._section = "", [], [], False, ""

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        a = dict(attrs)
        if tag == "section":
            self._section = a.get("id") or ""
        elif tag == "tbody":
            self._body = a.get("class") or ""
        elif tag == "tr":
            self._cells, self._bold = [], []
        elif tag in ("td", "th"):
            self._in_cell = True
            self._cells.append("")
            self._bold.append(a.get("class") == "best")
        elif tag == "img":
            self.images.append(a.get("src") or "")

    def handle_endtag(self, tag: str) -> None:
        if tag in ("td", "th"):
            self._in_cell = False
        elif tag == "tr":
            self.rows.append((self._body, self._cells, self._bold))
            self.by_table.setdefault(self._section, []).append(self.rows[-1])

    def handle_data(self, data: str) -> None:
        if self._in_cell:
            self._cells[-1] += data


def _html_rows(path: Path) -> _Rows:
    parser = _Rows()
    parser.feed(path.read_text(encoding="utf-8"))
    return parser


def _md_row(md: str, label: str) -> list[str]:
    lines = [line for line in md.splitlines() if line.startswith(f"| {label} |") or line.startswith(f"| **{label}** |")]
    assert lines, f"no markdown row for {label}"
    return [c.strip().strip("*") for c in lines[0].strip("|").split("|")]


# --------------------------------------------------------------------------- tables


def test_a_table_cell_is_the_median_of_the_per_basin_file_in_markdown_and_html(ci_case):
    per_basin = pd.read_csv(ci_case["root"] / "eval" / "dhbv" / "per_basin_metrics.csv", dtype={"basin": str},
                            na_values=["n/a"])
    expected_nse = f"{np.nanmedian(per_basin['NSE'].to_numpy(float)):.3f} ["
    expected_flv = f"{np.nanmedian(per_basin['absFLV']):.2f} ({np.nanmedian(per_basin['FLV']):.2f}) ["
    # the DVC metrics file agrees with the per-basin file
    summary = json.loads((ci_case["root"] / "eval" / "dhbv" / "metrics.json").read_text())
    assert f"{summary['NSE_median']:.3f} [" == expected_nse

    md_cells = _md_row(ci_case["md"].read_text(encoding="utf-8"), styles.label("dhbv"))
    assert md_cells[1:3] == ["4", "1"]  # basins, seeds
    assert md_cells[3].startswith(expected_nse) and md_cells[5].startswith(expected_flv)
    html_rows = [r for r in _html_rows(ci_case["html"]).rows if r[0] == "ours" and r[1][0] == styles.label("dhbv")]
    assert html_rows[0][1][3] == md_cells[3] and html_rows[0][1][5] == md_cells[5]


def test_with_four_basins_no_difference_is_significant_so_nothing_is_marked_best(ci_case):
    """The smallest two-sided exact Wilcoxon p on 4 basins is 2/16 = 0.125: no model may be bold,
    however different its median (the old rule bolded the highest median)."""
    tables = _html_rows(ci_case["html"]).by_table
    for key in ("table-streamflow", "table-signatures", "table-cost"):
        rows = [r for r in tables[key] if r[0] in ("ours", "published")]
        assert rows and not any(any(bold) for _, _, bold in rows), key
    ours = [r for r in tables["table-streamflow"] if r[0] == "ours" and len(r[1]) > 1 and r[1][1] == "4"]
    nse = [float(r[1][3].split(" ")[0]) for r in ours]
    assert len(set(nse)) > 1  # the medians differ; only the test decides
    assert "A column without bold has no significant winner" in ci_case["md"].read_text(encoding="utf-8")


def test_published_rows_are_labelled_and_not_mixed_into_our_medians(ci_case):
    md = ci_case["md"].read_text(encoding="utf-8")
    assert "*published, 671 basins (Song et al. 2024), Table 1*" in md
    assert _md_row(md, "δHBV.adj (published)")[3:9] == ["0.72", "0.75", "43.29 (37.61)", "13.25 (-4.33)", "0.048", "2.47"]
    # our δHBV row is computed from our files only: 4 basins, not 671
    assert _md_row(md, "δHBV")[1] == "4"


def test_sacsma_row_says_how_many_basins_it_covers(ci_case):
    md = ci_case["md"].read_text(encoding="utf-8")
    row = _md_row(md, "SAC-SMA")
    assert row[1] == "1 of 4 basins"
    sac = pd.read_csv(ci_case["root"] / "baselines" / "sacsma" / "per_basin_metrics.csv", dtype={"basin": str})
    assert row[3] == f"{sac.set_index('basin').loc['01031500', 'NSE']:.3f} [no CI: 1 basin]"
    assert "not comparable, not marked best" in md


def test_signature_table_reports_na_without_modis_and_bfi_r_from_metrics_json(ci_case):
    summary = json.loads((ci_case["root"] / "eval" / "dhbv_cr" / "metrics.json").read_text())
    row = _md_row(ci_case["md"].read_text(encoding="utf-8").split("### Hydrological signatures")[1], "δHBV improved")
    assert row[3].startswith(f"{summary['BFI_r']:.3f} [")  # recomputed from the per-basin BFI columns
    assert row[4] == "n/a" and row[5] == "0 of 4"


def test_cost_table_takes_step_time_and_memory_from_hbvbench_perf(ci_case):
    perf = json.loads((ci_case["root"] / "perf" / "perf.json").read_text())
    by_key = {r["key"]: r for r in perf["results"]}
    cost = ci_case["md"].read_text(encoding="utf-8").split("### Computational cost")[1]
    sequential = _md_row(cost, "δHBV")
    assert sequential[3] == f"{by_key['sequential']['peak_memory_MB']:.0f}"
    assert sequential[4] == f"{by_key['sequential']['step_s']:.3f}"
    assert _md_row(cost, "δHBV.adj")[4] == f"{by_key['adjoint']['step_s']:.3f}"
    assert f"step-time ratio {perf['ratio']:.2f}" in cost
    # a scheme that was measured but not trained has no medians; a trained one has them
    assert _md_row(cost, "δHBV Euler 1 d")[3:5] == ["n/a", "n/a"]


def _without_embedded_images(text: str) -> str:
    """The report text without its base64 images (random letters that could spell anything)."""
    return re.sub(r"data:image/png;base64,[A-Za-z0-9+/=]+", "data:image/png;base64,...", text)


def test_the_report_contains_no_absolute_path_of_the_build_machine(ci_case, repo_root):
    """The committed report is read on other machines: the folders it was built from (the
    repository, the temporary input folders, the home and temp folders) never appear in it."""
    machine_paths = {str(repo_root), str(ci_case["root"]), str(Path.home()), tempfile.gettempdir()} - {"/", ""}
    for report in (ci_case["md"], ci_case["html"]):
        text = _without_embedded_images(report.read_text(encoding="utf-8"))
        found = sorted(p for p in machine_paths if p in text)
        assert found == [], f"{report.name} names build-machine folders {found}"
    # the cost note still says which perf file the numbers come from
    assert "`hbvbench perf` (perf/perf.json)" in ci_case["md"].read_text(encoding="utf-8")


def test_perf_file_inside_the_repository_is_named_relative_to_it(repo_root):
    from benchmark.report.inputs import read_perf
    from benchmark.report.tables import perf_note

    perf = read_perf(repo_root / "reports" / "perf", repo_root)
    assert perf, "the repository's reports/perf/perf.json is missing"
    assert "`hbvbench perf` (reports/perf/perf.json)" in perf_note(perf)
    assert str(repo_root) not in perf_note(perf)


def test_provenance_names_the_commit_of_the_reported_repository_profile_and_date(ci_case, repo_root):
    md = ci_case["md"].read_text(encoding="utf-8")
    head = subprocess.run(["git", "rev-parse", "HEAD"], cwd=ci_case["root"], capture_output=True,
                          text=True).stdout.strip()
    package_head = subprocess.run(["git", "rev-parse", "HEAD"], cwd=repo_root, capture_output=True,
                                  text=True).stdout.strip()
    assert head != package_head  # the folder of --params, not the checkout the package came from
    assert f"- **git commit**: `{head}" in md
    assert "- **profile**: `ci`" in md and "- **date (UTC)**:" in md and "- **DVC data hash**:" in md


def test_markdown_images_sit_beside_it_and_html_embeds_them(ci_case):
    md = ci_case["md"].read_text(encoding="utf-8")
    names = sorted(p.name for p in (ci_case["out"] / "figures").glob("*.png"))
    # no training log in this case: that figure is absent, and the report says so
    assert names == ["adjoint_minus_sequential.png", "ecdf_nse_kge.png", "hydrographs.png", "parameters.png"]
    assert "Figure 'training curves' not drawn" in md
    for name in names:
        assert f"](figures/{name})" in md
    images = _html_rows(ci_case["html"]).images
    assert len(images) == len(names) and all(src.startswith("data:image/png;base64,") for src in images)
    text = ci_case["html"].read_text(encoding="utf-8")
    assert "<script" not in text and "http://" not in text and "https://" not in text


# --------------------------------------------------------------------------- figures / inputs


def test_adjoint_minus_sequential_uses_the_per_basin_metrics(reference_dir: Path):
    """Authors' reference series of basin 01022500: implicit (tight) minus sequential NSE,
    against the authors' metric values (metrics_reference.csv scores from 1981-10-01, after a
    warm-up year; see tests/test_metrics.py)."""
    from benchmark.report.figures import metric_differences

    def read(file: str, column: str) -> pd.Series:
        return pd.read_csv(reference_dir / file, index_col="date").loc["1981-10-01":, column]

    forcing = read("forcing_01022500.csv", "qobs").to_frame()
    seq = read("seq_hbv.csv", "Q_routed")
    imp = read("imp_hbv.csv", "Q_routed_tight")
    results = {}
    for name, sim in (("dhbv", seq), ("dhbv_adj", imp)):
        from benchmark import metrics

        row = metrics.basin_metrics(sim.to_numpy(), forcing["qobs"].to_numpy())
        results[name] = ModelResult.single(name, pd.DataFrame([row], index=pd.Index(["01022500"], name="basin")))
    reference = pd.read_csv(reference_dir / "metrics_reference.csv", index_col="series")
    expected = reference.loc["imp_hbv:Q_routed_tight", "NSE"] - reference.loc["seq_hbv:Q_routed", "NSE"]
    diff = metric_differences(results["dhbv_adj"], results["dhbv"], "NSE")
    assert list(diff.index) == ["01022500"]
    assert diff.iloc[0] == pytest.approx(expected, abs=2e-6)


def test_every_known_model_has_its_own_fixed_colour():
    colours = [styles.colour(name) for name in styles.LABELS]
    assert len(set(colours)) == len(colours)
    assert styles.colour("some_new_model") == styles.colour("some_new_model")


def test_no_evaluated_model_is_a_clear_error(tmp_path, capsys):
    code = cli_main(["report", "--eval-dir", str(tmp_path / "eval"), "--baselines-dir", str(tmp_path / "b"),
                     "--out", str(tmp_path / "out")])
    assert code == 2
    err = capsys.readouterr().err
    assert "no evaluated model found" in err and str(tmp_path / "eval") in err
    assert not (tmp_path / "out" / "leaderboard.html").exists()


def test_a_model_evaluated_on_another_profile_is_left_out_and_said_so(ci_case, tmp_path):
    for model in ("dhbv", "dhbv_cr"):
        shutil.copytree(ci_case["root"] / "eval" / model, tmp_path / "eval" / model)
    stale = tmp_path / "eval" / "dhbv_cr" / "predictions.nc"
    with xr.open_dataset(stale) as ds:
        ds = ds.load()
    ds.attrs["profile"] = "default"
    ds.to_netcdf(stale)
    inputs = collect_from_files(root=tmp_path, eval_dir=tmp_path / "eval", baselines_dir=tmp_path / "none",
                                params_path=ci_case["root"] / "params.yaml", lookup_run_ids=False)
    assert [m.name for m in inputs.models] == ["dhbv"]
    assert any("dhbv_cr left out: evaluated on profile 'default', the active profile is 'ci'" in n for n in inputs.notes)
    assert not any(str(tmp_path) in n for n in inputs.notes)  # named relative to the root, not absolute


def test_half_written_model_folder_names_the_missing_file(tmp_path):
    (tmp_path / "eval" / "dhbv").mkdir(parents=True)
    (tmp_path / "eval" / "dhbv" / "metrics.json").write_text("{}")
    with pytest.raises(DataError, match=r"dhbv is incomplete: per_basin_metrics.csv is missing"):
        collect_from_files(root=tmp_path, eval_dir=tmp_path / "eval", lookup_run_ids=False)


# --------------------------------------------------------------------------- browser


def test_leaderboard_html_loads_offline_in_headless_chromium(ci_case, repo_root, tmp_path):
    from benchmark.report.browser import inspect_page

    require_chromium()
    page = inspect_page(ci_case["html"])
    shot = tmp_path / "leaderboard.png"
    shot.write_bytes(page.screenshot)
    shutil.copy(shot, artifact_dir(repo_root) / "leaderboard.png")

    assert page.title == "hbvbench leaderboard"
    assert page.console_errors == []
    assert [u for u in page.requests if u != page.url and not u.startswith("data:")] == []
    assert page.failed_requests == []
    n_png = len(list((ci_case["out"] / "figures").glob("*.png")))
    assert len(page.images) == n_png >= 3
    assert all(img["complete"] and img["naturalWidth"] > 0 for img in page.images), page.images
    assert page.screenshot.startswith(b"\x89PNG") and len(page.screenshot) > 10_000


# --------------------------------------------------------------------------- MLflow source


def test_report_from_mlflow_reads_the_runs_artifacts(ci_case, mlflow_tracking_uri, tmp_path):
    """Runs logged by the trainer's own evaluation logger are read back: same cells, run ids shown."""
    from benchmark.config import load_params
    from benchmark.models.registry import get_model_spec
    from benchmark.training.tracking_glue import log_evaluation

    raw = yaml.safe_load((ci_case["root"] / "params.yaml").read_text())
    raw["train"]["experiment"] = "report-from-mlflow"
    (tmp_path / "params.yaml").write_text(yaml.safe_dump(raw))
    params = load_params(tmp_path / "params.yaml")
    run_ids = {}
    for model in ("dhbv", "dhbv_cr"):
        folder = ci_case["root"] / "eval" / model
        per_basin = pd.read_csv(folder / "per_basin_metrics.csv", dtype={"basin": str}, na_values=["n/a"]).set_index("basin")
        summary = json.loads((folder / "metrics.json").read_text())
        with xr.open_dataset(folder / "predictions.nc") as pred:
            run_ids[model] = log_evaluation(params, get_model_spec(model), 111111, None, folder, pred=pred.load(),
                                            per_basin=per_basin, summary=summary, figures={}, extra_metrics={})
    out = tmp_path / "out"
    assert cli_main(["--params", str(tmp_path / "params.yaml"), "report", "--source", "mlflow",
                     "--perf-dir", str(tmp_path / "perf"), "--out", str(out)]) == 0
    md = (out / "leaderboard.md").read_text(encoding="utf-8")
    expected = _md_row(ci_case["md"].read_text(encoding="utf-8"), "δHBV improved")
    assert _md_row(md, "δHBV improved")[:9] == expected[:9]
    for model, run_id in run_ids.items():
        assert f"{model}: {run_id}" in md
    assert {"ecdf_nse_kge.png", "hydrographs.png"} <= {p.name for p in (out / "figures").glob("*.png")}


def test_the_browser_check_catches_an_external_request_and_a_broken_image(ci_case, tmp_path):
    """Negative control: the same page with one external image must fail the checks above."""
    from benchmark.report.browser import inspect_page

    require_chromium()
    broken = tmp_path / "broken.html"
    text = ci_case["html"].read_text(encoding="utf-8")
    broken.write_text(text.replace("</body>", '<img src="http://127.0.0.1:9/x.png" alt="external"></body>'),
                      encoding="utf-8")
    page = inspect_page(broken)
    assert any("127.0.0.1:9" in e for e in page.console_errors), page.console_errors
    assert [img for img in page.images if img["naturalWidth"] == 0]
