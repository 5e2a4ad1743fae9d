"""The documentation in docs/ is the project's own and cannot drift from the code.

Every tracked file points at docs/ pages that exist (with the cited heading), and nothing
points at a specification users do not have. The facts the docs repeat from the code or from
the project's data files are parsed out of the markdown and compared with their source: the
parameter table, the registry's dynamic parameters, the metric keys, the Table A1 attributes,
the profiles of params.yaml and the published reference numbers.
"""

from __future__ import annotations

import re
import subprocess
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import xarray as xr
import yaml

from tests.paths import REPO_ROOT

DOCS = REPO_ROOT / "docs"
PAGES = ("README.md", "model.md", "schemes.md", "data.md", "training.md", "metrics.md", "published.md",
         "gr4j.md", "adding-a-model.md")

# a name for the distilled specification the project grew from, which users do not have;
# built from parts so that this file does not mention it either
FORBIDDEN_NAME = "SPEC" + ".md"

DOC_REFERENCE = re.compile(r"(?<![\w/.-])docs/([\w-]+\.md)(?:#([\w-]+))?")
MARKDOWN_LINK = re.compile(r"\]\(([^)\s]+)\)")


# --------------------------------------------------------------------------- markdown helpers


def tracked_files() -> list[Path]:
    """Every file ``git ls-files`` lists (the test needs a git checkout)."""
    listing = subprocess.run(["git", "ls-files", "-z"], cwd=REPO_ROOT, capture_output=True, check=True).stdout
    return [REPO_ROOT / name for name in listing.decode().split("\0") if name]


def tracked_text_files() -> dict[Path, str]:
    """Tracked files that decode as UTF-8 text (PNG and other binaries are left out)."""
    texts = {}
    for path in tracked_files():
        if not path.is_file():
            continue
        try:
            texts[path] = path.read_text(encoding="utf-8")
        except UnicodeDecodeError:
            continue
    return texts


def heading_anchors(markdown: str) -> set[str]:
    """GitHub's anchors of a page's headings: lower case, punctuation dropped, spaces -> '-',
    repeated headings numbered -1, -2, ... (lines inside code fences are not headings)."""
    anchors: set[str] = set()
    seen: dict[str, int] = {}
    in_fence = False
    for line in markdown.splitlines():
        if line.lstrip().startswith("```"):
            in_fence = not in_fence
            continue
        match = re.match(r"#{1,6} +(.*?) *#* *$", line)
        if in_fence or not match:
            continue
        slug = re.sub(r"[^\w\- ]", "", match.group(1).lower()).replace(" ", "-")
        count = seen.get(slug, 0)
        seen[slug] = count + 1
        anchors.add(slug if count == 0 else f"{slug}-{count}")
    return anchors


def markdown_tables(markdown: str) -> list[list[dict[str, str]]]:
    """Every pipe table of a page as a list of rows ``{header: cell}`` (cells stripped)."""
    tables, lines = [], markdown.splitlines()
    i = 0
    while i < len(lines) - 1:
        if lines[i].startswith("|") and re.match(r"^\|( *:?-+:? *\|)+ *$", lines[i + 1]):
            header = _cells(lines[i])
            rows = []
            i += 2
            while i < len(lines) and lines[i].startswith("|"):
                rows.append(dict(zip(header, _cells(lines[i]))))
                i += 1
            tables.append(rows)
        else:
            i += 1
    return tables


def _cells(line: str) -> list[str]:
    # a cell may hold an escaped pipe (\|FLV\|)
    parts = re.split(r"(?<!\\)\|", line.strip().strip("|"))
    return [part.strip() for part in parts]


def code_names(cell: str) -> list[str]:
    """The ``code``-formatted names in a table cell, in order."""
    return re.findall(r"`([^`]+)`", cell)


def table_with(page: str, *columns: str) -> list[list[dict[str, str]]]:
    """The tables of ``docs/<page>`` whose header has all ``columns``."""
    text = (DOCS / page).read_text(encoding="utf-8")
    found = [t for t in markdown_tables(text) if t and set(columns) <= set(t[0])]
    assert found, f"docs/{page} has no table with columns {columns}"
    return found


# --------------------------------------------------------------------------- references


def test_no_tracked_file_mentions_the_specification_users_do_not_have():
    needle = FORBIDDEN_NAME.lower().encode()
    offenders = [str(p.relative_to(REPO_ROOT)) for p in tracked_files()
                 if p.is_file() and needle in p.read_bytes().lower()]
    assert offenders == [], f"these files mention {FORBIDDEN_NAME}; point at a docs/ page instead: {offenders}"


def test_the_docs_pages_exist_and_the_index_lists_each_of_them():
    assert sorted(p.name for p in DOCS.glob("*.md")) == sorted(PAGES)
    index = (DOCS / "README.md").read_text(encoding="utf-8")
    for page in PAGES[1:]:
        assert f"]({page})" in index, f"docs/README.md does not list {page}"


def test_every_docs_reference_in_the_repository_names_an_existing_page_and_heading():
    anchors = {page: heading_anchors((DOCS / page).read_text(encoding="utf-8")) for page in PAGES}
    references = 0
    broken = []
    for path, text in tracked_text_files().items():
        for match in DOC_REFERENCE.finditer(text):
            references += 1
            page, anchor = match.group(1), match.group(2)
            where = f"{path.relative_to(REPO_ROOT)}: {match.group(0)}"
            if page not in anchors:
                broken.append(f"{where} (no such page)")
            elif anchor is not None and anchor not in anchors[page]:
                broken.append(f"{where} (no such heading)")
    assert references > 30  # the code and tests point at the docs (a regex that matches nothing passes nothing)
    assert broken == [], "\n".join(broken)


def test_links_between_docs_pages_resolve_to_pages_and_headings():
    broken = []
    for page in PAGES:
        for target in MARKDOWN_LINK.findall((DOCS / page).read_text(encoding="utf-8")):
            if re.match(r"[a-z]+:", target):
                continue  # an external address
            file_part, _, anchor = target.partition("#")
            path = (DOCS / file_part).resolve() if file_part else DOCS / page
            if not path.is_file():
                broken.append(f"docs/{page}: {target} (no such file)")
            elif anchor and anchor not in heading_anchors(path.read_text(encoding="utf-8")):
                broken.append(f"docs/{page}: {target} (no such heading)")
    assert broken == [], "\n".join(broken)


def test_heading_anchors_follow_githubs_rule():
    text = ("# Time schemes\n## Explicit Euler and RK4\n```\n# not a heading\n```\n"
            "## Floors, and mass balance\n## Loss\n## Loss\n")
    assert heading_anchors(text) == {"time-schemes", "explicit-euler-and-rk4", "floors-and-mass-balance",
                                     "loss", "loss-1"}


# --------------------------------------------------------------------------- model.md


def test_parameter_table_is_exactly_the_codes_parameters_and_routing_parameters():
    from benchmark.models.parameters import HBV_PARAMETERS, ROUTING_PARAMETERS

    documented = [
        (code_names(row["name"])[0], row["meaning"], float(row["lo"]), float(row["hi"]), code_names(row["unit"])[0])
        for table in table_with("model.md", "name", "meaning", "lo", "hi", "unit") for row in table
    ]
    in_code = [(s.name, s.meaning, s.lo, s.hi, s.unit)
               for s in (*HBV_PARAMETERS.values(), *ROUTING_PARAMETERS.values())]
    assert documented == in_code


def test_registry_table_gives_each_models_parameters_and_dynamic_parameters():
    from benchmark.models.parameters import BASE_PARAMETERS
    from benchmark.models.registry import MODEL_SPECS

    from benchmark.models.hbv import HBV

    (table,) = table_with("model.md", "registry name", "learned parameters", "dynamic")
    rows = {code_names(row["registry name"])[0]: row for row in table}
    hbv_models = {name: spec for name, spec in MODEL_SPECS.items() if isinstance(spec.structure, HBV)}
    assert list(rows) == list(hbv_models)  # the HBV rows; docs/gr4j.md has GR4J's
    for name, spec in hbv_models.items():
        assert tuple(code_names(rows[name]["dynamic"])) == spec.dynamic_parameters, name
        extra = tuple(code_names(rows[name]["learned parameters"]))
        assert spec.parameter_names == BASE_PARAMETERS + extra, name
        assert ("yes" in rows[name]["capillary rise"]) == spec.capillary_rise, name


# --------------------------------------------------------------------------- metrics.md


@pytest.fixture(scope="module")
def scored_reference_basin(reference_dir: Path) -> tuple[dict[str, float], pd.DataFrame, dict]:
    """The authors' sequential run of basin 01022500 scored like any model's predictions:
    ``basin_metrics`` of its routed flow, and the per-basin table and summary of the evaluation."""
    from benchmark import evaluation, metrics

    forcing = pd.read_csv(reference_dir / "forcing_01022500.csv", index_col="date", parse_dates=True)
    run = pd.read_csv(reference_dir / "seq_hbv.csv", index_col="date", parse_dates=True)

    def series(values: pd.Series) -> tuple[tuple[str, str], np.ndarray]:
        return ("basin", "date"), values.to_numpy()[None, :]

    pred = xr.Dataset(
        {"qsim": series(run["Q_routed"]), "qobs": series(forcing["qobs"]), "Q2": series(run["Q2"]),
         "Q_unrouted": series(run["Q_unrouted"]), "ET": series(run["ET"])},
        coords={"basin": ["01022500"], "date": run.index.values},
    )
    dataset = xr.Dataset({"baseflow_index": (("basin",), [0.5])}, coords={"basin": ["01022500"]})
    per_basin, summary = evaluation.score_predictions(pred, dataset)
    return metrics.basin_metrics(run["Q_routed"].to_numpy(), forcing["qobs"].to_numpy()), per_basin, summary


def documented_metric_keys() -> list[str]:
    tables = table_with("metrics.md", "key", "definition", "unit") + table_with("metrics.md", "column", "definition")
    return [code_names(row.get("key", row.get("column", "")))[0] for table in tables for row in table]


def test_metrics_page_lists_every_key_of_basin_metrics_and_every_per_basin_column(scored_reference_basin):
    row, per_basin, _ = scored_reference_basin
    keys = documented_metric_keys()
    assert [k for k in row if k not in keys] == []
    assert sorted(keys) == sorted(per_basin.columns)  # nothing missing, nothing stale


def test_metrics_page_names_every_key_of_the_cross_basin_summary(scored_reference_basin):
    _, per_basin, summary = scored_reference_basin
    text = (DOCS / "metrics.md").read_text(encoding="utf-8")
    undocumented = []
    for key in summary:
        column, _, statistic = key.rpartition("_")
        if statistic in ("median", "mean") and column in per_basin.columns:
            continue
        if f"`{key}`" not in text:
            undocumented.append(key)
    assert undocumented == []


# --------------------------------------------------------------------------- data.md, training.md


def test_attribute_table_is_table_a1_in_its_order():
    from benchmark.data.camels import TABLE_A1

    (table,) = table_with("data.md", "attribute", "file", "unit")
    assert tuple(code_names(row["attribute"])[0] for row in table) == TABLE_A1


def test_profile_table_states_the_sizes_and_periods_of_params_yaml():
    profiles = yaml.safe_load((REPO_ROOT / "params.yaml").read_text())["profiles"]
    (table,) = table_with("training.md", "profile", "basins", "training", "test")
    rows = {code_names(row["profile"])[0]: row for row in table}
    assert sorted(rows) == sorted(profiles)
    for name, profile in profiles.items():
        row = rows[name]
        for period in ("train", "test", "validation"):
            column = "training" if period == "train" else period
            assert row[column] == f"{profile[period]['start']} .. {profile[period]['end']}", (name, period)
        for key in ("warmup_days", "epochs", "batch_basins", "window_days", "hidden_size", "nmul"):
            assert row[key] == str(profile[key]), (name, key)
        assert row["iterations_per_epoch"].split()[0] == str(profile["iterations_per_epoch"]).replace("None", "null")
        if profile["basins"] == "all":
            assert row["basins"].startswith("all"), name
        else:
            assert row["basins"].split(", ") == profile["basins"], name


# --------------------------------------------------------------------------- published.md


@pytest.mark.parametrize("heading, table", [("Table 1", "table1"), ("Table 2", "table2"), ("Table A2", "tableA2")])
def test_published_tables_repeat_the_numbers_of_baselines_published(heading: str, table: str):
    from baselines.published import load_published

    text = (DOCS / "published.md").read_text(encoding="utf-8")
    section = text.split(f"\n## {heading}\n", 1)[1].split("\n## ", 1)[0]
    (rows,) = markdown_tables(section)
    frame = load_published(table).set_index("model")  # type: ignore[arg-type]
    assert [code_names(row["model"])[0] for row in rows] == list(frame.index)
    numeric = [c for c in frame.columns if pd.api.types.is_float_dtype(frame[c])]
    assert set(numeric) <= set(rows[0]), f"docs/published.md {heading} lacks columns"
    for row in rows:
        model = code_names(row["model"])[0]
        for column, cell in row.items():
            if column == "model":
                continue
            expected = frame.at[model, column]
            if column in numeric:
                assert (cell == "" and np.isnan(expected)) or float(cell) == expected, (heading, model, column)
            else:
                assert cell == ("" if pd.isna(expected) else str(expected)), (heading, model, column)


def _resolves(reference: str) -> bool:
    """Whether a dotted ``benchmark.*`` name is an importable module or an attribute of one."""
    import importlib

    parts = reference.split(".")
    for end in range(len(parts), 0, -1):
        try:
            obj = importlib.import_module(".".join(parts[:end]))
        except ImportError:
            continue
        for attribute in parts[end:]:
            if not hasattr(obj, attribute):
                return False
            obj = getattr(obj, attribute)
        return True
    return False


def test_every_module_path_and_dotted_name_the_docs_cite_exists():
    """The docs name modules (``benchmark/models/hbv/fluxes.py``) and objects
    (``benchmark.models.hbv.STORAGES``): after a refactor they must still be there."""
    missing = []
    for page in sorted(DOCS.glob("*.md")):
        text = page.read_text(encoding="utf-8")
        for path in sorted(set(re.findall(r"\b((?:benchmark|baselines)/[A-Za-z0-9_/]+\.py)\b", text))):
            if not (REPO_ROOT / path).is_file():
                missing.append(f"{page.name}: {path}")
        for name in sorted(set(re.findall(r"\b(benchmark(?:\.[A-Za-z_][A-Za-z0-9_]*)+)", text))):
            if not _resolves(name):
                missing.append(f"{page.name}: {name}")
    assert missing == []
