"""Which benchmark repository a command works on: found from the working directory, as git and dvc do.

The *repository root* is the folder holding ``params.yaml`` (next to ``dvc.yaml``); every
relative path of ``params.yaml`` (data, artifacts, the MLflow and Optuna databases) resolves
against it. Nothing is derived from where the package is installed, so the same installed
``hbvbench`` serves any number of clones, DVC's temporary experiment workspaces
(``dvc exp run --temp``, ``dvc queue start``) and a non-editable ``pip install``.

Precedence, first match wins:

1. ``hbvbench --params FILE``: the folder of ``FILE`` (the command line scopes
   :data:`ROOT_ENV` to it while the command runs, so worker processes agree);
2. the environment variable :data:`ROOT_ENV` (``HBVBENCH_ROOT``): that folder;
3. the working directory or the nearest folder above it holding ``params.yaml``.

DVC's ``DVC_ROOT`` does not decide the root: in a queued or ``--temp`` experiment DVC sets it
to the *original* workspace, not the temporary copy the stage runs in (under
``<workspace>/.dvc/tmp/exps/``). It decides :func:`store_root` instead, where the stores that
outlive a run are kept (the MLflow and Optuna databases): the copy is deleted when the
experiment ends, so its runs are logged to the original workspace's stores.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator
from pathlib import Path

from benchmark.errors import ConfigError

PARAMS_NAME = "params.yaml"
"""The file that marks the repository root (and the one users edit)."""

ROOT_ENV = "HBVBENCH_ROOT"
"""Environment variable naming the repository root explicitly."""

DVC_ROOT_ENV = "DVC_ROOT"
"""Set by DVC for every stage command: the workspace the experiment was started from."""

DVC_EXPERIMENT_WORKSPACES = (".dvc", "tmp", "exps")
"""Where DVC makes the temporary workspaces of queued and ``--temp`` experiments."""


class RepositoryNotFound(ConfigError):
    """No repository root: not inside one, and none named by ``--params`` or ``HBVBENCH_ROOT``."""


def find_root(start: Path | str) -> Path | None:
    """The nearest folder from ``start`` upwards that holds ``params.yaml`` (None if there is none).

    Parameters
    ----------
    start
        A folder (or a file, whose folder is used) to search from.

    Returns
    -------
    pathlib.Path or None
        The absolute folder, symbolic links left as they are.
    """
    here = Path(start).absolute()
    if here.is_file():
        here = here.parent
    for folder in (here, *here.parents):
        if (folder / PARAMS_NAME).is_file():
            return folder
    return None


def _root_from_env() -> Path | None:
    value = os.environ.get(ROOT_ENV, "").strip()
    if not value:
        return None
    folder = Path(value).expanduser().absolute()
    if not folder.is_dir():
        raise RepositoryNotFound(f"{ROOT_ENV}={value} is not a folder; unset it or point it at the repository folder")
    return folder


def root() -> Path:
    """The repository root of this process (see the module docstring for the precedence).

    Returns
    -------
    pathlib.Path
        An absolute folder.

    Raises
    ------
    RepositoryNotFound
        When ``HBVBENCH_ROOT`` is not a folder, or (without it) neither the working directory
        nor any folder above it holds ``params.yaml``; the message says what to do.
    """
    found = _root_from_env() or find_root(Path.cwd())
    if found is None:
        raise RepositoryNotFound(
            f"not inside an hbvbench repository: no {PARAMS_NAME} in {Path.cwd()} or any folder above it; "
            f"run hbvbench from the repository folder (the one holding {PARAMS_NAME} and dvc.yaml), "
            f"pass --params FILE, or set {ROOT_ENV}"
        )
    return found


def root_or_none() -> Path | None:
    """:func:`root`, or None outside any repository (for metadata that is optional, e.g. the git commit)."""
    try:
        return root()
    except RepositoryNotFound:
        return None


def store_root() -> Path:
    """Folder of the stores that outlive a run (default MLflow and Optuna databases).

    :func:`root`, except inside a temporary DVC experiment workspace (a folder under
    ``$DVC_ROOT/.dvc/tmp/exps/``), which DVC deletes when the experiment ends: there it is
    ``$DVC_ROOT``, the workspace the experiment was queued from.
    """
    here = root()
    origin = os.environ.get(DVC_ROOT_ENV, "").strip()
    if origin:
        origin_path = Path(origin).absolute()
        workspaces = origin_path.joinpath(*DVC_EXPERIMENT_WORKSPACES)
        if workspaces in here.parents:
            return origin_path
    return here


def params_path() -> Path:
    """``params.yaml`` of :func:`root` (RepositoryNotFound naming ``HBVBENCH_ROOT`` when it has none)."""
    path = root() / PARAMS_NAME
    if not path.is_file():  # only a root named by the environment can lack it
        raise RepositoryNotFound(
            f"{ROOT_ENV}={os.environ.get(ROOT_ENV)} holds no {PARAMS_NAME}; "
            f"point it at the repository folder or pass --params FILE"
        )
    return path


def resolve(path: Path | str, base: Path | None = None) -> Path:
    """``path`` made absolute against ``base`` (default :func:`root`); absolute paths pass unchanged."""
    path = Path(path)
    if path.is_absolute():
        return path
    return (base if base is not None else root()) / path


@contextlib.contextmanager
def rooted_at(params_file: Path | str | None) -> Iterator[None]:
    """Make the folder of ``params_file`` the root for the body (no change when it is None).

    Sets :data:`ROOT_ENV` for the duration of the body, so that processes started inside
    it (tuning workers, perf variants) resolve paths the same way, and restores the previous
    value afterwards.
    """
    if params_file is None:
        yield
        return
    previous = os.environ.get(ROOT_ENV)
    os.environ[ROOT_ENV] = str(Path(params_file).expanduser().absolute().parent)
    try:
        yield
    finally:
        if previous is None:
            os.environ.pop(ROOT_ENV, None)
        else:
            os.environ[ROOT_ENV] = previous
