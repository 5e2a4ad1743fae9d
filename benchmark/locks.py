"""One writer per output folder: a lock held for as long as a command writes a folder.

``hbvbench train`` locks its model folder, ``evaluate`` its evaluation folder and ``tune`` its
study folder, so a second process started on the same folder stops at once with an error
that names the holder (process id, host, command, start time) instead of interleaving its
files with the first one's.

Mechanism: an exclusive ``flock`` on the folder itself (the folder is opened read-only; no
lock file is needed for the locking). The kernel releases it when the holder exits in any
way, SIGKILL included, so a lock can never outlive its process. Beside it, the holder keeps a
small record ``.hbvbench.lock`` (JSON: pid, host, command, start time) that serves only the
messages: a second process reads it to name the holder, and a process that acquires the lock
and still finds a record knows the previous holder died without cleaning up (killed, power
loss) and says that it takes over. On a normal exit the record is removed, so nothing is
left in the folder.

``flock`` works on local file systems; on a network file system that does not implement it
two hosts are not kept apart.
"""

from __future__ import annotations

import datetime as dt
import fcntl
import json
import os
import socket
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any, TextIO

from benchmark import atomic
from benchmark.errors import HbvbenchError

RECORD_NAME = ".hbvbench.lock"


class LockError(HbvbenchError):
    """The output folder is being written by another live process."""


def _read_record(folder: Path) -> dict[str, Any] | None:
    try:
        record = json.loads((folder / RECORD_NAME).read_text())
    except (OSError, ValueError):
        return None
    return record if isinstance(record, dict) else None


def describe_holder(record: dict[str, Any] | None) -> str:
    """``process 123 on host h ('hbvbench train --model dhbv', since 2024-01-01T10:00:00)``."""
    if not record:
        return "another process (it has not recorded itself yet)"
    return (f"process {record.get('pid')} on host {record.get('host')} "
            f"({record.get('command')!r}, since {record.get('started')})")


def process_alive(pid: Any) -> bool:
    """Whether a process with this id exists on this host (a pid of another user counts)."""
    if not isinstance(pid, int) or pid <= 0:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


@contextmanager
def hold(folder: Path | str, command: str, *, log: TextIO | None = None) -> Iterator[Path]:
    """Hold the lock of ``folder`` (created if missing) for the body.

    Parameters
    ----------
    folder
        The output folder (a model, evaluation or study folder).
    command
        What holds it, for other processes' messages (e.g. ``"hbvbench train --model dhbv"``).
    log
        Where the take-over of a dead holder's lock is reported (default stderr).

    Yields
    ------
    pathlib.Path
        ``folder``.

    Raises
    ------
    LockError
        Another live process holds the folder; the message names it and what to do.
    """
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    fd = os.open(folder, os.O_RDONLY | os.O_DIRECTORY)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = _read_record(folder)
            pid = (holder or {}).get("pid")
            hint = f"wait for it to finish or stop it (kill {pid})" if isinstance(pid, int) else "wait for it to finish"
            raise LockError(f"{folder} is in use by {describe_holder(holder)}; {hint}, then run the command again") from None
        previous = _read_record(folder)
        if previous is not None:
            same_host = previous.get("host") == socket.gethostname()
            state = "no longer running" if same_host and not process_alive(previous.get("pid")) else "gone"
            print(f"{command}: taking over the lock of {folder} left by {describe_holder(previous)}, "
                  f"which is {state} (killed or crashed)", file=log or sys.stderr)
        record = {"pid": os.getpid(), "host": socket.gethostname(), "command": command,
                  "started": dt.datetime.now().isoformat(timespec="seconds")}
        atomic.write_json(folder / RECORD_NAME, record)
        try:
            yield folder
        finally:
            (folder / RECORD_NAME).unlink(missing_ok=True)
    finally:
        os.close(fd)  # closing the descriptor releases the flock
