"""Where a training run starts: fresh, or from the last finished epoch of an interrupted run.

Every finished epoch writes its checkpoint twice: into the model folder (the output:
``<train.models_dir>/<model>/checkpoint.pt``) and into the run's work folder
(``<train.work_dir>/<model>/checkpoint.pt``), which is not a declared output of the DVC
``train`` stage. DVC deletes a stage's outputs before it runs the stage again, so after a
crash or a kill only the work folder survives a ``dvc repro``; that is what a rerun continues
from. The work folder is removed when training finishes, so a finished run is never
"resumed" by a later one (a rerun after a code or config change starts over).

Modes of :func:`plan_start`:

* ``auto`` (a plain ``hbvbench train``, what ``dvc repro`` runs): continue from the work
  folder's checkpoint when its setup (configuration and code fingerprint) equals this run's,
  and say so; start over, saying why, when it differs or cannot be read; start fresh when
  there is none.
* ``resume`` (``--resume``): continue from the work folder's checkpoint, else from the model
  folder's (e.g. to add epochs to a finished run); an error when there is neither or the
  setup differs.
* ``restart`` (``--restart``): start over and discard any work folder.

Continuing restores weights, optimizer, sampler and every random stream, so the final
weights and metrics equal those of an uninterrupted run with the same seed.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from benchmark.artifacts import CHECKPOINT_NAME
from benchmark.errors import ConfigError, HbvbenchError
from benchmark.training.checkpoint import load_checkpoint, setup_differences

StartMode = Literal["auto", "resume", "restart"]


@dataclass(frozen=True)
class StartPlan:
    """The outcome of :func:`plan_start`.

    Attributes
    ----------
    checkpoint
        The checkpoint to continue from (None: start fresh).
    message
        What to tell the user (None: a plain fresh start, nothing to say).
    discard_work
        Whether the work folder's state is stale and must be removed before training.
    """

    checkpoint: dict[str, Any] | None
    message: str | None
    discard_work: bool


def plan_start(mode: StartMode, work_dir: Path, out_dir: Path, setup: dict[str, Any], epochs: int) -> StartPlan:
    """Decide where training starts (see the module docstring); reads files, writes nothing.

    Parameters
    ----------
    mode
        ``auto``, ``resume`` or ``restart``.
    work_dir, out_dir
        The run's work folder and model folder.
    setup
        This run's setup (:func:`benchmark.training.trainer.setup_fingerprint`).
    epochs
        The planned number of epochs (for the message).

    Raises
    ------
    ConfigError
        ``resume`` without a checkpoint, or with one of another setup.
    """
    work_ckpt = work_dir / CHECKPOINT_NAME
    if mode == "restart":
        found = work_ckpt.is_file()
        return StartPlan(None, f"starting over (--restart){'; discarding ' + str(work_ckpt) if found else ''}", found)
    if mode == "resume":
        source = work_ckpt if work_ckpt.is_file() else out_dir / CHECKPOINT_NAME
        if not source.is_file():
            raise ConfigError(f"--resume: no checkpoint to continue from ({work_ckpt} or {out_dir / CHECKPOINT_NAME}); "
                              "train without --resume")
        ckpt = load_checkpoint(source)
        differs = setup_differences(ckpt.get("setup", {}), setup)
        if differs:
            raise ConfigError(f"--resume: checkpoint {source} was trained with a different setup ({'; '.join(differs)}); "
                              "use --restart to start over")
        return StartPlan(ckpt, f"resuming from epoch {ckpt['epoch']} of {epochs} ({source})", False)
    if not work_ckpt.is_file():
        return StartPlan(None, None, False)
    try:
        ckpt = load_checkpoint(work_ckpt)
    except HbvbenchError as exc:
        return StartPlan(None, f"starting over: the interrupted run's checkpoint cannot be used ({exc})", True)
    differs = setup_differences(ckpt.get("setup", {}), setup)
    if differs:
        return StartPlan(None, f"starting over: the interrupted run in {work_dir} had another setup "
                               f"({'; '.join(differs)})", True)
    return StartPlan(ckpt, f"continuing the interrupted run from epoch {ckpt['epoch']} of {epochs} ({work_ckpt}); "
                           "--restart starts over", False)
