"""``hbvbench data fetch`` against an HTTP server on 127.0.0.1 started by the test.

The server serves a zip built here from the embedded CAMELS files (official layout) and
supports ``Range`` requests; URLs and sha256 digests are passed in, nothing goes to the
network.
"""

from __future__ import annotations

import hashlib
import io
import stat
import threading
import zipfile
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from benchmark import cli
from benchmark.data import camels, fetch
from benchmark.data.fetch import Archive
from benchmark.data.prepare import prepare
from benchmark.config import load_params
from benchmark.errors import DataError

GAUGE = "01022500"
PREFIX = "basin_dataset_public_v1p2"


@dataclass
class Served:
    """What the test server holds and what it saw."""

    files: dict[str, bytes] = field(default_factory=dict)
    requests: list[tuple[str, str | None]] = field(default_factory=list)  # (path, Range header)
    cut_next: dict[str, int] = field(default_factory=dict)  # path -> bytes to send before dropping


def _handler(served: Served) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        def log_message(self, *args) -> None:  # keep test output quiet
            pass

        def do_GET(self) -> None:
            served.requests.append((self.path, self.headers.get("Range")))
            body = served.files.get(self.path)
            if body is None:
                self.send_error(404)
                return
            start = 0
            if (header := self.headers.get("Range")) and header.startswith("bytes="):
                start = int(header[len("bytes="):].split("-")[0])
                if start >= len(body):
                    self.send_error(416)
                    return
                self.send_response(206)
                self.send_header("Content-Range", f"bytes {start}-{len(body) - 1}/{len(body)}")
            else:
                self.send_response(200)
            payload = body[start:]
            self.send_header("Content-Length", str(len(payload)))
            self.end_headers()
            if self.path in served.cut_next:  # simulate a dropped connection mid-transfer
                self.wfile.write(payload[: served.cut_next.pop(self.path)])
                self.wfile.flush()
                self.close_connection = True
                return
            self.wfile.write(payload)

    return Handler


@pytest.fixture
def server() -> Iterator[tuple[str, Served]]:
    served = Served()
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), _handler(served))
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{httpd.server_address[1]}", served
    finally:
        httpd.shutdown()
        httpd.server_close()
        thread.join(timeout=5)


def build_zip(entries: dict[str, bytes], links: tuple[str, ...] = ()) -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as archive:
        for name, data in entries.items():
            archive.writestr(zipfile.ZipInfo(name), data)
        for name in links:
            info = zipfile.ZipInfo(name)
            info.external_attr = (stat.S_IFLNK | 0o777) << 16
            archive.writestr(info, "/etc/passwd")
    return buffer.getvalue()


def camels_zip(camels_dir: Path) -> bytes:
    """The embedded files of one basin, laid out as in the official time-series archive."""
    entries = {}
    for path in (camels.forcing_path(camels_dir, GAUGE), camels.streamflow_path(camels_dir, GAUGE)):
        entries[f"{PREFIX}/{path.relative_to(camels_dir).as_posix()}"] = path.read_bytes()
    return build_zip(entries)


def sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def archives_for(url: str, served: Served, camels_dir: Path) -> list[Archive]:
    """Time-series zip plus the seven attribute files, as the official archives are organised."""
    data = camels_zip(camels_dir)
    served.files["/ts.zip"] = data
    archives = [Archive("ts.zip", f"{url}/ts.zip", sha(data))]
    for group in camels.ATTRIBUTE_GROUPS:
        body = camels.attribute_path(camels_dir, group).read_bytes()
        served.files[f"/camels_{group}.txt"] = body
        archives.append(Archive(f"camels_{group}.txt", f"{url}/camels_{group}.txt", sha(body), kind="file",
                                target=camels.ATTRIBUTE_DIR))
    return archives


def test_fetch_downloads_verifies_and_extracts_a_usable_raw_folder(server, camels_dir: Path, tmp_path: Path) -> None:
    url, served = server
    raw = fetch.fetch(tmp_path / "dest", archives_for(url, served, camels_dir), log=io.StringIO())
    assert raw == tmp_path / "dest" / PREFIX
    extracted = camels.forcing_path(raw, GAUGE)
    assert extracted.read_bytes() == camels.forcing_path(camels_dir, GAUGE).read_bytes()
    assert (raw / camels.ATTRIBUTE_DIR / "camels_topo.txt").read_bytes() == \
        camels.attribute_path(camels_dir, "topo").read_bytes()
    # the fetched folder is a valid raw_dir for the prepare stage
    params = tmp_path / "params.yaml"
    params.write_text(
        f"profile: t\ndata: {{raw_dir: '{raw}', processed_dir: '{tmp_path / 'out'}'}}\n"
        "profiles: {t: {basins: all, train: {start: '1990-10-01', end: '1995-09-30'}, "
        "test: {start: '1995-10-01', end: '2000-09-30'}}}\n"
    )
    assert (prepare(load_params(params)) / "camels.nc").is_file()
    # a second run downloads nothing
    n_requests = len(served.requests)
    fetch.fetch(tmp_path / "dest", archives_for(url, served, camels_dir), log=io.StringIO())
    assert len(served.requests) == n_requests


def test_interrupted_download_resumes_with_a_range_request(server, camels_dir: Path, tmp_path: Path) -> None:
    url, served = server
    archives = archives_for(url, served, camels_dir)[:1]
    size = len(served.files["/ts.zip"])
    served.cut_next["/ts.zip"] = size // 3
    with pytest.raises(DataError, match=r"download of .*/ts\.zip failed.*run the command again to resume"):
        fetch.fetch(tmp_path / "dest", archives, log=io.StringIO())
    part = tmp_path / "dest" / "downloads" / "ts.zip.part"
    assert part.stat().st_size == size // 3
    log = io.StringIO()
    fetch.fetch(tmp_path / "dest", archives, log=log)
    assert served.requests[-1] == ("/ts.zip", f"bytes={size // 3}-")
    assert "resuming at byte" in log.getvalue() and "sha256 verified" in log.getvalue()
    assert (tmp_path / "dest" / "downloads" / "ts.zip").read_bytes() == served.files["/ts.zip"]
    assert not part.exists()


def test_corrupt_archive_fails_the_sha256_check(server, camels_dir: Path, tmp_path: Path) -> None:
    url, served = server
    good = camels_zip(camels_dir)
    corrupt = bytearray(good)
    corrupt[len(corrupt) // 2] ^= 0xFF
    served.files["/ts.zip"] = bytes(corrupt)
    archive = Archive("ts.zip", f"{url}/ts.zip", sha(good))
    with pytest.raises(DataError, match=rf"ts\.zip from .*: sha256 {sha(bytes(corrupt))} does not match the expected {sha(good)}"):
        fetch.fetch(tmp_path / "dest", [archive], log=io.StringIO())
    assert not (tmp_path / "dest" / "downloads" / "ts.zip").exists()  # deleted: the next run starts afresh
    assert not (tmp_path / "dest" / PREFIX).exists()


def test_a_bad_re_download_leaves_the_good_earlier_files_untouched(server, camels_dir: Path, tmp_path: Path) -> None:
    url, served = server
    archives = archives_for(url, served, camels_dir)
    raw = fetch.fetch(tmp_path / "dest", archives, log=io.StringIO())
    extracted = camels.forcing_path(raw, GAUGE).read_bytes()
    attribute = (raw / camels.ATTRIBUTE_DIR / "camels_topo.txt").read_bytes()
    (tmp_path / "dest" / "downloads" / "camels_topo.txt").unlink()  # the user clears a download ...
    served.files["/camels_topo.txt"] = b"<html>maintenance page</html>"  # ... and the server sends junk
    with pytest.raises(DataError, match=r"camels_topo\.txt from .*does not match the expected .*nothing else was touched"):
        fetch.fetch(tmp_path / "dest", archives, log=io.StringIO())
    assert camels.forcing_path(raw, GAUGE).read_bytes() == extracted
    assert (raw / camels.ATTRIBUTE_DIR / "camels_topo.txt").read_bytes() == attribute
    assert sorted(p.name for p in (tmp_path / "dest" / "downloads").iterdir() if "topo" in p.name) == []


def test_an_earlier_file_that_fails_its_digest_is_moved_aside_not_deleted(server, camels_dir: Path, tmp_path: Path) -> None:
    url, served = server
    archives = archives_for(url, served, camels_dir)[:1]
    downloads = tmp_path / "dest" / "downloads"
    downloads.mkdir(parents=True)
    (downloads / "ts.zip").write_bytes(b"an older file under the same name")
    with pytest.raises(DataError, match=r"ts\.zip: sha256 .* moved aside to .*ts\.zip\.rejected \(not deleted\)"):
        fetch.fetch(tmp_path / "dest", archives, log=io.StringIO())
    assert (downloads / "ts.zip.rejected").read_bytes() == b"an older file under the same name"
    raw = fetch.fetch(tmp_path / "dest", archives, log=io.StringIO())  # the next run downloads it afresh
    assert camels.forcing_path(raw, GAUGE).read_bytes() == camels.forcing_path(camels_dir, GAUGE).read_bytes()


def test_an_unwritable_destination_is_named_before_any_download(server, tmp_path: Path) -> None:
    url, served = server
    (tmp_path / "a-file").write_text("not a folder\n")
    with pytest.raises(DataError, match=r"cannot write to the destination .*a-file/dest/downloads"):
        fetch.fetch(tmp_path / "a-file" / "dest", [Archive("ts.zip", f"{url}/ts.zip", None)], log=io.StringIO())
    assert served.requests == []


@pytest.mark.parametrize("evil", ["../evil.txt", f"{PREFIX}/../../evil.txt", "/tmp/evil.txt"])
def test_zip_slip_member_is_refused_before_anything_is_extracted(server, tmp_path: Path, evil: str) -> None:
    url, served = server
    data = build_zip({f"{PREFIX}/basin_mean_forcing/ok.txt": b"ok", evil: b"pwned"})
    served.files["/ts.zip"] = data
    with pytest.raises(DataError, match=r"refusing unsafe member path"):
        fetch.fetch(tmp_path / "dest", [Archive("ts.zip", f"{url}/ts.zip", sha(data))], log=io.StringIO())
    assert not (tmp_path / "evil.txt").exists() and not Path("/tmp/evil.txt").exists()
    assert not (tmp_path / "dest" / PREFIX).exists()


def test_symlink_member_is_refused(server, tmp_path: Path) -> None:
    url, served = server
    data = build_zip({f"{PREFIX}/basin_mean_forcing/ok.txt": b"ok"}, links=(f"{PREFIX}/link",))
    served.files["/ts.zip"] = data
    with pytest.raises(DataError, match=r"refusing symbolic link member"):
        fetch.fetch(tmp_path / "dest", [Archive("ts.zip", f"{url}/ts.zip", sha(data))], log=io.StringIO())


def test_without_a_pinned_digest_the_first_download_is_recorded_and_enforced(server, camels_dir: Path, tmp_path: Path) -> None:
    url, served = server
    data = camels_zip(camels_dir)
    served.files["/ts.zip"] = data
    archive = Archive("ts.zip", f"{url}/ts.zip", None)
    fetch.fetch(tmp_path / "dest", [archive], log=io.StringIO())
    assert (tmp_path / "dest" / "SHA256SUMS").read_text() == f"{sha(data)}  ts.zip\n"
    (tmp_path / "dest" / "downloads" / "ts.zip").unlink()
    served.files["/ts.zip"] = data + b"changed upstream"
    with pytest.raises(DataError, match="does not match the expected"):
        fetch.fetch(tmp_path / "dest", [archive], log=io.StringIO())


def test_cli_fetch_prints_what_to_set_in_params(server, camels_dir: Path, tmp_path: Path,
                                                monkeypatch: pytest.MonkeyPatch, capsys) -> None:
    url, served = server
    monkeypatch.setattr(fetch, "CAMELS_US_ARCHIVES", tuple(archives_for(url, served, camels_dir)))
    assert cli.main(["data", "fetch", "--dest", str(tmp_path / "dest")]) == 0
    out = capsys.readouterr().out
    assert f"raw_dir: {(tmp_path / 'dest' / PREFIX).resolve()}" in out


def test_cli_fetch_error_exits_non_zero(server, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys) -> None:
    url, _ = server
    monkeypatch.setattr(fetch, "CAMELS_US_ARCHIVES", (Archive("ts.zip", f"{url}/missing.zip", None),))
    assert cli.main(["data", "fetch", "--dest", str(tmp_path / "dest")]) == 2
    assert "HTTP 404" in capsys.readouterr().err
