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
        facts = gguf_facts(path)
        if facts.license_inputs.get("gguf_metadata", {}).get("general.type") == "adapter":
            # a LoRA runs beside its base: it is not a model of its own
            raise UnsupportedModelError(
                f"{path} is a LoRA adapter, not a model; run it on its base: a Modelfile with "
                f"FROM <base> and ADAPTER {path} (`hearth create`), `hearth run <base> --lora "
                f"{path}` or `hearth serve <base> --lora NAME={path}`"
            )
        return "gguf", facts, [("model.gguf", path)]
    if is_hf_folder(path):
        facts = hf_facts(path)
        return "hf", facts, [(p.relative_to(path).as_posix(), p) for p in model_files(path)]
    raise UnsupportedModelError(f"{path} is not a model: {EXPECTED}")
