"""``hbvbench data fetch``: download the full CAMELS-US data set (671 basins).

Sources (the one place they are listed; NCAR GDEX, dataset doi:10.5065/D6MW2F4D,
landing page https://gdex.ucar.edu/dataset/camels/file.html):

- ``basin_timeseries_v1p2_metForcing_obsFlow.zip`` (about 3.4 GB): basin-mean Daymet,
  Maurer and NLDAS forcing and USGS streamflow in the official layout, under
  ``basin_dataset_public_v1p2/``.
- ``camels_{clim,geol,hydro,name,soil,topo,vege}.txt``: the attributes (Addor et al. 2017),
  placed into ``<raw_dir>/camels_attributes_v2.0/``.

Checksums: no sha256 is published for these files and none could be computed when this
module was written (no network on the development machine), so :data:`CAMELS_US_ARCHIVES`
pins none. The first complete download of a file records its sha256 in
``<dest>/SHA256SUMS`` and every later run (resumes, re-downloads) is verified against it;
a pinned ``sha256`` in :class:`Archive` always wins. Downloads resume with HTTP ``Range``
requests from ``<dest>/downloads/<name>.part``. Zip members are checked before anything
is extracted: absolute paths, ``..`` components and symbolic links are refused.

Nothing good is ever replaced by something unverified: a download stays ``<name>.part``
until its sha256 matches and only then takes the final name (a mismatching download is
deleted, never an earlier file); a file already in ``downloads/`` that fails its recorded
digest is moved aside to ``<name>.rejected``, not deleted; archives are extracted into a
temporary folder that replaces the previous extraction only when complete; the attribute
files and ``SHA256SUMS`` are written through :mod:`benchmark.atomic`. A destination that
cannot be written is a clear error before any download starts.
"""

from __future__ import annotations

import hashlib
import http.client
import os
import shutil
import stat
import sys
import tempfile
import urllib.error
import urllib.request
import zipfile
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import Iterable, Literal, TextIO

from benchmark import atomic
from benchmark.data.camels import ATTRIBUTE_DIR, ATTRIBUTE_GROUPS
from benchmark.errors import DataError

GDEX_BASE = "https://gdex.ucar.edu/dataset/camels/file/"
CHUNK_BYTES = 1 << 20
CHECKSUM_FILE = "SHA256SUMS"


@dataclass(frozen=True)
class Archive:
    """One downloadable file.

    Attributes
    ----------
    name
        File name under ``<dest>/downloads/``.
    url
        Where to get it.
    sha256
        Expected hex digest, or None (then the first download's digest is recorded).
    kind
        ``"zip"``: extracted into ``<dest>``; ``"file"``: copied into ``<raw_dir>/<target>``.
    target
        Sub-folder of the raw folder for ``kind == "file"``.
    """

    name: str
    url: str
    sha256: str | None = None
    kind: Literal["zip", "file"] = "zip"
    target: str = ""


CAMELS_US_ARCHIVES: tuple[Archive, ...] = (
    Archive("basin_timeseries_v1p2_metForcing_obsFlow.zip", GDEX_BASE + "basin_timeseries_v1p2_metForcing_obsFlow.zip"),
    *(
        Archive(f"camels_{group}.txt", f"{GDEX_BASE}camels_{group}.txt", kind="file", target=ATTRIBUTE_DIR)
        for group in ATTRIBUTE_GROUPS
    ),
)


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        while block := handle.read(CHUNK_BYTES):
            digest.update(block)
    return digest.hexdigest()


def _recorded_checksums(dest: Path) -> dict[str, str]:
    path = dest / CHECKSUM_FILE
    if not path.is_file():
        return {}
    pairs = (line.split(maxsplit=1) for line in path.read_text().splitlines() if line.strip())
    return {name.strip(): digest for digest, name in pairs}


def _record_checksum(dest: Path, name: str, digest: str) -> None:
    recorded = _recorded_checksums(dest)
    recorded[name] = digest
    atomic.write_text(dest / CHECKSUM_FILE, "".join(f"{d}  {n}\n" for n, d in sorted(recorded.items())))


def _copy(source, out) -> int:
    received = 0
    while block := source.read(CHUNK_BYTES):
        out.write(block)
        received += len(block)
    return received


def download(url: str, target: Path, *, timeout: float = 60.0, log: TextIO = sys.stderr) -> Path:
    """Download ``url`` into ``target.part``, resuming it with an HTTP Range request.

    Returns
    -------
    pathlib.Path
        The complete ``.part`` file (the caller verifies it before it takes ``target``'s name).

    Raises
    ------
    DataError
        Network or HTTP failure (the partial file is kept, so re-running resumes).
    """
    part = target.with_name(target.name + ".part")
    offset = part.stat().st_size if part.exists() else 0
    request = urllib.request.Request(url, headers={"Range": f"bytes={offset}-"} if offset else {})
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:
            resumed = offset > 0 and response.status == 206
            if offset and not resumed:
                print(f"{url}: server ignored the Range request, downloading from the start", file=log)
            if resumed:
                print(f"{url}: resuming at byte {offset}", file=log)
            expected_bytes = response.headers.get("Content-Length")
            with part.open("ab" if resumed else "wb") as out:
                received = _copy(response, out)
            if expected_bytes is not None and received < int(expected_bytes):
                raise DataError(
                    f"download of {url} failed: connection closed after {received} of {expected_bytes} bytes; "
                    "run the command again to resume"
                )
    except urllib.error.HTTPError as exc:
        if exc.code == 416 and offset:  # nothing left to send: the part file is already complete
            return part
        raise DataError(f"download of {url} failed: HTTP {exc.code} {exc.reason}") from None
    except (urllib.error.URLError, http.client.HTTPException, OSError) as exc:
        raise DataError(f"download of {url} failed: {exc}; run the command again to resume") from None
    return part


def fetch_archive(archive: Archive, downloads: Path, expected: str | None, *, log: TextIO = sys.stderr) -> tuple[Path, str]:
    """Download one archive (unless already complete) and verify its sha256.

    A fresh download takes its final name only once verified; a mismatching one is deleted
    (it is only the new, bad bytes). An existing file that fails verification is moved aside
    to ``<name>.rejected`` (never deleted), so the next run downloads afresh.

    Raises
    ------
    DataError
        The digest differs from ``expected``.
    """
    target = downloads / archive.name
    if target.is_file():
        digest = _sha256(target)
        if expected is None or digest == expected.lower():
            return target, digest
        rejected = target.with_name(target.name + ".rejected")
        os.replace(target, rejected)
        raise DataError(
            f"{target}: sha256 {digest} does not match the expected {expected}; it was moved aside to {rejected} "
            "(not deleted): run the command again to download it afresh"
        )
    part = download(archive.url, target, log=log)
    digest = _sha256(part)
    if expected is not None and digest != expected.lower():
        part.unlink()
        raise DataError(
            f"{archive.name} from {archive.url}: sha256 {digest} does not match the expected {expected}; "
            "the download was corrupt or the file changed upstream; it has been deleted (nothing else was touched): "
            "run again to re-download"
        )
    os.replace(part, target)
    return target, digest


def check_zip_members(archive: zipfile.ZipFile, label: str) -> None:
    """Refuse members that would land outside the extraction folder (zip-slip) or are links."""
    for info in archive.infolist():
        name = info.filename
        parts = PurePosixPath(name.replace("\\", "/")).parts
        mode = info.external_attr >> 16
        if name.startswith(("/", "\\")) or (parts and ":" in parts[0]) or ".." in parts:
            raise DataError(f"{label}: refusing unsafe member path {name!r} (it would escape the destination)")
        if stat.S_ISLNK(mode):
            raise DataError(f"{label}: refusing symbolic link member {name!r}")


def safe_extract(zip_path: Path, dest: Path) -> None:
    """Extract ``zip_path`` into ``dest`` after checking every member (see check_zip_members).

    Members are extracted into a temporary folder inside ``dest``; only when that is
    complete does each top-level entry replace its previous version (:func:`benchmark.atomic.swap_in`).
    A marker ``.extracted-<name>`` is written last, so an interrupted extraction is redone.
    """
    marker = dest / f".extracted-{zip_path.name}"
    if marker.is_file():
        return
    staging = Path(tempfile.mkdtemp(dir=dest, prefix=f".extract-{zip_path.name}."))
    try:
        with zipfile.ZipFile(zip_path) as archive:
            check_zip_members(archive, str(zip_path))
            root = staging.resolve()
            for info in archive.infolist():
                if not (root / info.filename).resolve().is_relative_to(root):
                    raise DataError(f"{zip_path}: refusing member {info.filename!r} outside {dest}")
            archive.extractall(staging)
        for entry in sorted(staging.iterdir()):
            atomic.swap_in(entry, dest / entry.name)
    except zipfile.BadZipFile as exc:
        raise DataError(f"{zip_path} is not a valid zip archive ({exc}); delete it and run again") from None
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    atomic.write_text(marker, "ok\n")


def check_writable(folder: Path) -> None:
    """Create ``folder`` and a probe file in it; DataError naming it when that is not possible."""
    try:
        folder.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryFile(dir=folder):
            pass
    except OSError as exc:
        raise DataError(
            f"cannot write to the destination {folder} ({exc.strerror or exc}); pass a folder you can write to "
            "with --dest"
        ) from None


def find_raw_dir(dest: Path, max_depth: int = 3) -> Path:
    """The folder under ``dest`` that holds ``basin_mean_forcing/`` (the CAMELS raw folder)."""
    frontier = [dest]
    for _ in range(max_depth + 1):
        for folder in frontier:
            if (folder / "basin_mean_forcing").is_dir():
                return folder
        frontier = [child for folder in frontier for child in sorted(folder.iterdir()) if child.is_dir()]
    raise DataError(f"no basin_mean_forcing/ folder found under {dest} after extraction")


def fetch(
    dest: Path | str,
    archives: Iterable[Archive] = CAMELS_US_ARCHIVES,
    *,
    log: TextIO = sys.stderr,
) -> Path:
    """Download, verify and extract the CAMELS-US archives into ``dest``.

    Parameters
    ----------
    dest
        Destination folder (created); downloads go to ``dest/downloads``.
    archives
        What to fetch (default: the official archives of :data:`CAMELS_US_ARCHIVES`;
        tests pass local URLs and digests).
    log
        Where progress lines go.

    Returns
    -------
    pathlib.Path
        The raw folder to set as ``data.raw_dir`` in ``params.yaml``.

    Raises
    ------
    DataError
        Unwritable destination, download failure, checksum mismatch, corrupt or unsafe archive.
    """
    dest = Path(dest)
    downloads = dest / "downloads"
    check_writable(downloads)
    archives = tuple(archives)
    fetched: list[tuple[Archive, Path]] = []
    for archive in archives:
        recorded = _recorded_checksums(dest).get(archive.name)
        expected = archive.sha256 or recorded
        path, digest = fetch_archive(archive, downloads, expected, log=log)
        if expected is None:
            _record_checksum(dest, archive.name, digest)
            print(f"{archive.name}: no pinned sha256; recorded {digest} in {dest / CHECKSUM_FILE}", file=log)
        else:
            print(f"{archive.name}: sha256 verified", file=log)
        fetched.append((archive, path))
    for archive, path in fetched:
        if archive.kind == "zip":
            safe_extract(path, dest)
    raw_dir = find_raw_dir(dest)
    for archive, path in fetched:
        if archive.kind == "file":
            atomic.copy_file(path, raw_dir / archive.target / archive.name)
    return raw_dir


def params_hint(raw_dir: Path) -> str:
    """What to put in ``params.yaml`` to use the fetched data."""
    return (
        "To use this data set, set in params.yaml:\n"
        "data:\n"
        f"  raw_dir: {raw_dir.resolve()}\n"
        "and select a profile whose basins are \"all\" (e.g. `profile: paper`), then run `dvc repro`."
    )
