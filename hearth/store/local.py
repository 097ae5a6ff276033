"""What a local path holds: a GGUF file or a Hugging Face folder, checked and described
(format, facts, the files to store under their relative paths) before anything is copied.
Knows nothing of blobs, manifests or names."""

from __future__ import annotations

from pathlib import Path

from hearth.errors import UnsupportedModelError
from hearth.store.facts import ModelFacts
from hearth.store.gguf_file import gguf_facts, is_gguf
from hearth.store.hf_folder import hf_facts, is_hf_folder, model_files

EXPECTED = (
    "expected a GGUF file (starting with the bytes 'GGUF') or a Hugging Face folder "
    "with config.json and *.safetensors"
)


def inspect_local(path: Path) -> tuple[str, ModelFacts, list[tuple[str, Path]]]:
    """(format, facts, [(relative path, file)]) of a local model, or a clear error."""
    if path.is_file() and is_gguf(path):
        return "gguf", gguf_facts(path), [("model.gguf", path)]
    if is_hf_folder(path):
        facts = hf_facts(path)
        return "hf", facts, [(p.relative_to(path).as_posix(), p) for p in model_files(path)]
    raise UnsupportedModelError(f"{path} is not a model: {EXPECTED}")
