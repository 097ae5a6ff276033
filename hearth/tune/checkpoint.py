"""A run's checkpoint: one file, written to a temporary name in the same folder, flushed to
disk, then renamed over the previous one, so a crash or a full disk while saving leaves the
previous checkpoint intact. Knows nothing of what the state holds."""

from __future__ import annotations

import contextlib
import os
from pathlib import Path
from typing import Any

import torch

from hearth.errors import StoreError, UserInputError

__all__ = ["load_checkpoint", "save_checkpoint"]


def save_checkpoint(path: Path, state: dict[str, Any]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        with tmp.open("wb") as f:
            torch.save(state, f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except OSError as exc:
        with contextlib.suppress(OSError):
            tmp.unlink(missing_ok=True)
        raise StoreError(
            f"could not save the checkpoint to {path} ({exc.strerror or exc}); the previous "
            "checkpoint is intact; free disk space and resume"
        ) from exc


def load_checkpoint(path: Path) -> dict[str, Any]:
    if not path.is_file():
        raise UserInputError(f"--resume: no checkpoint at {path}; start the run without --resume")
    try:
        state: dict[str, Any] = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # torch raises several unpickling error types
        raise UserInputError(f"--resume: {path} is not a readable checkpoint ({exc})") from exc
    return state
