"""The one atomic writer: every file and folder hbvbench outputs goes through this module.

Every writer takes the target path first, then what to write. A reader (a user, DVC, a second process) sees either the previous complete file or the new
complete file, never a half-written one: the content is written to a temporary name in the
target's own folder (same file system), flushed to disk, then renamed over the target in
one ``os.replace``. On any failure, KeyboardInterrupt included, the temporary file is
removed and the target is left as it was.

Permissions: ``tempfile`` creates private files (mode 0600) and folders (0700); the
outputs here get the permissions of any normal new file instead (``0666`` / ``0777`` minus
the process umask), so a metrics file or leaderboard is as readable as the user expects.

Writers: :func:`write_text`, :func:`write_bytes`, :func:`write_json`, :func:`write_yaml`,
:func:`torch_save`, :func:`write_netcdf`, :func:`save_figure`, :func:`copy_file`; for
anything else :func:`atomic_path` yields the temporary path to write. Whole folders:
:func:`replace_dir` (build a new folder beside the old one, then swap them) and
:func:`swap_in` (put a finished file or folder in place of another).
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

__all__ = [
    "atomic_path", "copy_file", "new_dir_mode", "new_file_mode", "replace_dir", "save_figure", "swap_in", "symlink",
    "torch_save", "write_bytes", "write_json", "write_netcdf", "write_text", "write_yaml",
]


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def new_file_mode() -> int:
    """Mode of a normal new file: ``0o666`` minus the umask."""
    return 0o666 & ~_umask()


def new_dir_mode() -> int:
    """Mode of a normal new folder: ``0o777`` minus the umask."""
    return 0o777 & ~_umask()


def _fsync_path(path: Path) -> None:
    """Flush a file (or folder entry table) to disk; best effort where the OS refuses."""
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


@contextmanager
def atomic_path(path: Path | str) -> Iterator[Path]:
    """Yield a temporary path beside ``path``; on success it replaces ``path`` atomically.

    The temporary file exists (empty, normal permissions) when the body starts; the body
    writes it by any means (a library taking a path). On an exception it is deleted and
    ``path`` is untouched. The parent folder is created if missing.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, name = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    os.close(fd)
    tmp = Path(name)
    try:
        os.chmod(tmp, new_file_mode())
        yield tmp
        _fsync_path(tmp)
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    _fsync_path(path.parent)


def write_bytes(path: Path | str, data: bytes) -> Path:
    """Write ``data`` to ``path`` atomically; returns ``path``."""
    with atomic_path(path) as tmp:
        tmp.write_bytes(data)
    return Path(path)


def write_text(path: Path | str, text: str, *, encoding: str = "utf-8") -> Path:
    """Write ``text`` to ``path`` atomically (no newline translation); returns ``path``."""
    return write_bytes(path, text.encode(encoding))


def write_json(path: Path | str, value: Any, *, indent: int | None = 2) -> Path:
    """Write ``value`` as JSON (NaN/inf refused: they are not JSON) plus a final newline."""
    return write_text(path, json.dumps(value, indent=indent, allow_nan=False) + "\n")


def write_yaml(path: Path | str, value: Any) -> Path:
    """Write ``value`` as YAML (``yaml.safe_dump``, keys in insertion order)."""
    import yaml

    return write_text(path, yaml.safe_dump(value, sort_keys=False))


def torch_save(path: Path | str, obj: Any) -> Path:
    """``torch.save(obj)`` to ``path`` atomically."""
    import torch

    with atomic_path(path) as tmp:
        torch.save(obj, tmp)
    return Path(path)


def write_netcdf(path: Path | str, ds: Any, **kwargs: Any) -> Path:
    """``xarray.Dataset.to_netcdf`` to ``path`` atomically (``kwargs`` passed on)."""
    with atomic_path(path) as tmp:
        ds.to_netcdf(tmp, **kwargs)
    return Path(path)


def save_figure(path: Path | str, fig: Any, **kwargs: Any) -> Path:
    """``matplotlib`` ``fig.savefig`` to ``path`` atomically (format from the target's suffix)."""
    path = Path(path)
    kwargs.setdefault("format", path.suffix.lstrip(".") or "png")
    with atomic_path(path) as tmp:
        fig.savefig(tmp, **kwargs)
    return path


def copy_file(source: Path | str, path: Path | str) -> Path:
    """Copy ``source``'s bytes to ``path`` atomically (a failed copy leaves ``path`` as it was)."""
    with atomic_path(path) as tmp:
        shutil.copyfile(source, tmp)
    return Path(path)


def symlink(target: str, link: Path | str) -> Path:
    """Create or re-point the symbolic link ``link`` -> ``target`` atomically."""
    link = Path(link)
    link.parent.mkdir(parents=True, exist_ok=True)
    tmp = link.with_name(f".{link.name}.{os.getpid()}.tmp")
    tmp.unlink(missing_ok=True)
    try:
        tmp.symlink_to(target)
        os.replace(tmp, link)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    return link


def swap_in(new: Path | str, target: Path | str) -> Path:
    """Put the file or folder ``new`` in place of ``target`` (same file system).

    An old ``target`` is renamed aside first and deleted once ``new`` is in place; if the
    second rename fails the old one is put back.
    """
    new, target = Path(new), Path(target)
    old: Path | None = None
    try:
        if target.exists() or target.is_symlink():
            old = Path(tempfile.mkdtemp(dir=target.parent, prefix=f".{target.name}.old.")) / target.name
            os.replace(target, old)
        os.replace(new, target)
    except BaseException:
        if old is not None and (old.exists() or old.is_symlink()) and not target.exists():
            os.replace(old, target)
        raise
    finally:
        if old is not None:
            shutil.rmtree(old.parent, ignore_errors=True)
    _fsync_path(target.parent)
    return target


def replace_dir(target: Path | str, build: Callable[[Path], None]) -> Path:
    """Build a new folder with ``build(folder)`` beside ``target``, then swap it in.

    The new folder is made under a temporary name in ``target``'s parent (normal
    permissions); when ``build`` returns it replaces ``target`` (:func:`swap_in`). A failure
    in ``build`` removes the new folder and leaves ``target`` untouched.
    """
    target = Path(target)
    target.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(dir=target.parent, prefix=f".{target.name}.new."))
    try:
        os.chmod(staging, new_dir_mode())
        build(staging)
        swap_in(staging, target)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return target
