"""`hearth export`: a tuned model's adapter in the formats other runtimes load. `peft`:
adapter_config.json + adapter_model.safetensors, loadable by `PeftModel.from_pretrained` on
the transformers model of the same base (the files are the stored adapter's; the base is
named by store name and sha256). Knows nothing of the terminal."""

from __future__ import annotations

import shutil
from pathlib import Path

from hearth.config import Settings, load_settings
from hearth.errors import UnsupportedModelError, UserInputError
from hearth.store import Store
from hearth.store.adapters import locate_adapter_model
from hearth.tune.adapter_files import ADAPTER_CONFIG, ADAPTER_WEIGHTS

__all__ = ["FORMATS", "export"]

FORMATS = ("peft",)


def export(name: str, fmt: str, output: Path, settings: Settings | None = None) -> list[Path]:
    if fmt not in FORMATS:
        raise UnsupportedModelError(
            f"--format {fmt}: hearth exports {', '.join(FORMATS)} so far (gguf-lora, gguf and "
            "merged safetensors are not available yet)"
        )
    where = locate_adapter_model(Store(settings or load_settings()), name)
    if output.exists() and (not output.is_dir() or any(output.iterdir())):
        raise UserInputError(f"--output {output} exists and is not an empty folder; give a new one")
    output.mkdir(parents=True, exist_ok=True)
    written = []
    for file in (ADAPTER_CONFIG, ADAPTER_WEIGHTS):
        target = output / file
        shutil.copyfile(where.adapter_dir / file, target)  # the blob, through its link
        written.append(target)
    return written
