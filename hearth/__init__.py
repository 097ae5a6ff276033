"""hearth: open-weight language models on your own hardware, offline.

The public Python API is re-exported here lazily, so `import hearth` (and the CLI's
start-up) does not import torch until a model is actually used."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

__version__ = "0.1.0"

__all__ = ["LLM", "EngineConfig", "SamplingParams", "__version__"]

if TYPE_CHECKING:
    from hearth.engine.engine_config import EngineConfig
    from hearth.engine.llm import LLM
    from hearth.engine.sampling_params import SamplingParams

_LAZY = {
    "LLM": "hearth.engine.llm",
    "EngineConfig": "hearth.engine.engine_config",
    "SamplingParams": "hearth.engine.sampling_params",
}


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'hearth' has no attribute {name!r}")
    import importlib

    return getattr(importlib.import_module(module), name)
