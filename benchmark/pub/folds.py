"""Folds of the PUB protocol: proposing them (stratified by HUC-02 region) and checking them
against the basins a profile runs on.

A proposal sorts the basins by (HUC-02 region, gauge id) and deals them out to the folds in
turn, continuing the count from one region to the next: every fold gets a share of every
region (as far as the region has basins) and the folds differ in size by at most one basin.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import yaml

from benchmark.config import Params, check_folds
from benchmark.data.camels import read_attributes
from benchmark.data.dataset import profile_basins
from benchmark.errors import ConfigError, DataError

REGION_ATTRIBUTE = "huc_02"
"""The CAMELS attribute (``camels_name.txt``) folds are stratified by."""


def huc_regions(raw_dir: Path | str, basins: Sequence[str]) -> dict[str, str]:
    """The HUC-02 region of each basin, from the CAMELS attributes in ``raw_dir``.

    Raises
    ------
    DataError
        A basin the attribute files do not list, or one without a region.
    """
    table = read_attributes(raw_dir)
    missing = [b for b in basins if b not in table.index]
    if missing:
        raise DataError(f"basins {missing} are not in the CAMELS attributes of {raw_dir}")
    regions = table.loc[list(basins), REGION_ATTRIBUTE]
    blank = [b for b, region in regions.items() if not region]
    if blank:
        raise DataError(f"basins {blank} have no {REGION_ATTRIBUTE} in the CAMELS attributes of {raw_dir}")
    return {str(b): str(region) for b, region in regions.items()}


def propose_folds(regions: dict[str, str], n_folds: int) -> list[list[str]]:
    """Deal the basins, sorted by (region, gauge id), to ``n_folds`` folds in turn.

    Parameters
    ----------
    regions
        Basin -> HUC-02 region.
    n_folds
        Number of folds, 2..number of basins.

    Returns
    -------
    list of list of str
        The folds, each sorted by gauge id.
    """
    if not 2 <= n_folds <= len(regions):
        raise ConfigError(f"--folds {n_folds}: needs 2..{len(regions)} folds for {len(regions)} basins")
    folds: list[list[str]] = [[] for _ in range(n_folds)]
    for position, basin in enumerate(sorted(regions, key=lambda b: (regions[b], b))):
        folds[position % n_folds].append(basin)
    return [sorted(fold) for fold in folds]


def folds_yaml(profile: str, folds: list[list[str]], regions: dict[str, str]) -> str:
    """The ``pub.folds.<profile>`` entry of params.yaml for ``folds``, one fold a line, with its regions."""
    lines = [f"{profile}:"]
    for fold in folds:
        ids = ", ".join(f'"{b}"' for b in fold)
        counts: dict[str, int] = {}
        for basin in fold:
            counts[regions[basin]] = counts.get(regions[basin], 0) + 1
        mix = ", ".join(f"HUC {region}: {n}" for region, n in sorted(counts.items()))
        lines.append(f"  - [{ids}]   # {mix}")
    text = "\n".join(lines) + "\n"
    yaml.safe_load(text)  # what is printed must be the YAML it claims to be
    return text


def profile_folds(params: Params, available: Sequence[str]) -> list[list[str]]:
    """The active profile's folds, checked against the basins the profile runs on.

    ``available`` are the prepared dataset's basins (a profile with ``basins: all`` runs on
    all of them). Reading params.yaml checks only the folds among themselves, so that
    editing a profile's basins does not stop the other commands; this is where they must
    hold out each of the profile's basins exactly once.

    Raises
    ------
    ConfigError
        No folds for the profile, or folds that do not partition its basins (naming the key
        and the basins).
    """
    folds = params.pub.folds_for(params.profile)
    try:
        check_folds(folds, profile_basins(params, available), f"pub.folds.{params.profile}")
    except ValueError as exc:
        raise ConfigError(f"{exc} (profile {params.profile!r}); edit pub.folds.{params.profile} or propose folds "
                          f"with `hbvbench pub folds`") from None
    return folds


def training_basins(folds: list[list[str]], fold: int) -> list[str]:
    """The basins of every fold but ``fold`` (1-based), sorted."""
    return sorted(b for number, members in enumerate(folds, start=1) if number != fold for b in members)


def held_out_basins(folds: list[list[str]], fold: int) -> list[str]:
    """The basins of ``fold`` (1-based), sorted; ConfigError for a fold that does not exist."""
    if not 1 <= fold <= len(folds):
        raise ConfigError(f"--fold {fold}: the profile has folds 1..{len(folds)}")
    return sorted(folds[fold - 1])
