"""Checks of a database store (MLflow tracking, Optuna storage) before any work uses it.

A store that is corrupt, locked, unreachable or named with a scheme nothing understands
used to surface as a traceback from deep inside SQLAlchemy or MLflow, or as minutes of
silent HTTP retries. :func:`check_sqlite` and :func:`check_http` turn each case into one
:class:`StoreError` naming the URI and what to do:

* a SQLite file that is not an SQLite database (corrupt, truncated, another kind of file);
* a SQLite file locked by another process: retried with a bounded backoff
  (:data:`LOCK_RETRY_DELAYS_S`, about 15 s in all), then an error;
* an ``http(s)://`` tracking server that does not answer its ``/health`` endpoint within
  :data:`HTTP_TIMEOUT_S`.
"""

from __future__ import annotations

import sqlite3
import time
import urllib.error
import urllib.request
from pathlib import Path

from benchmark.errors import HbvbenchError

SQLITE_HEADER = b"SQLite format 3\x00"
#: Waits between the attempts to read a locked SQLite store (seconds; bounded on purpose).
LOCK_RETRY_DELAYS_S: tuple[float, ...] = (0.5, 1.0, 2.0, 4.0, 8.0)
HTTP_TIMEOUT_S = 10.0


class StoreError(HbvbenchError):
    """A tracking or tuning store cannot be used; the message names the URI and the fix."""


def _is_locked(exc: sqlite3.Error) -> bool:
    return "locked" in str(exc).lower() or "busy" in str(exc).lower()


def check_sqlite(path: Path, uri: str, what: str, fix: str) -> None:
    """Raise StoreError unless ``path`` is missing (it will be created) or a readable SQLite file.

    Parameters
    ----------
    path
        The database file of ``uri``.
    uri
        The store's URI, named in the message.
    what
        ``"MLflow tracking store"`` or ``"Optuna storage"``.
    fix
        How to point the command at another store (e.g. ``"set MLFLOW_TRACKING_URI"``).
    """
    if not path.exists():
        return
    try:
        with path.open("rb") as handle:
            header = handle.read(len(SQLITE_HEADER))
    except OSError as exc:
        raise StoreError(f"{what} {uri}: cannot read {path} ({exc.strerror}); {fix}") from None
    if path.stat().st_size and header != SQLITE_HEADER:
        raise StoreError(
            f"{what} {uri}: {path} is not an SQLite database (corrupt, truncated or another kind of file); "
            f"move it aside to start a new store, or {fix}"
        )
    waited = 0.0
    for delay in (*LOCK_RETRY_DELAYS_S, None):
        try:
            connection = sqlite3.connect(f"file:{path}?mode=ro", uri=True, timeout=0)
            try:
                connection.execute("SELECT count(*) FROM sqlite_master").fetchone()
            finally:
                connection.close()
            return
        except sqlite3.DatabaseError as exc:
            if not _is_locked(exc):
                raise StoreError(f"{what} {uri}: {path} cannot be read as an SQLite database ({exc}); "
                                 f"move it aside to start a new store, or {fix}") from None
            if delay is None:
                raise StoreError(
                    f"{what} {uri} is locked by another process (still locked after {waited:.1f} s of retries); "
                    f"wait for that process to finish, or {fix}"
                ) from None
            time.sleep(delay)
            waited += delay


def check_http(uri: str, what: str, fix: str) -> None:
    """Raise StoreError unless the server at ``uri`` answers ``GET /health`` (within :data:`HTTP_TIMEOUT_S`)."""
    url = uri.rstrip("/") + "/health"
    try:
        with urllib.request.urlopen(url, timeout=HTTP_TIMEOUT_S) as response:
            if response.status == 200:
                return
            problem = f"HTTP {response.status}"
    except urllib.error.HTTPError as exc:
        problem = f"HTTP {exc.code} {exc.reason}"
    except (urllib.error.URLError, OSError) as exc:
        problem = str(getattr(exc, "reason", exc))
    raise StoreError(f"{what} {uri} is not reachable ({problem}); start the server, or {fix}")
