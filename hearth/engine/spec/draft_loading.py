"""Which drafter a model runs with, and the draft model loaded for `--speculative draft`:
the mode asked for, the `--draft MODEL` given and the DRAFT line of the model's Modelfile
(Ollama's) decide; the draft model (a store name or a path, as any model argument) is
loaded on the target's quantization and backend, and refused when its vocabulary is not
the target's. Knows nothing of HTTP or the CLI."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch

from hearth.config import Settings
from hearth.errors import UserInputError


@dataclass(frozen=True)
class LoadedDraft:
    """A draft model ready for model_drafter.draft_model_drafter."""

    name: str
    config: Any  # its ModelConfig
    decoder: Any
    tokenizer: Any
    dtype: torch.dtype


def resolve_speculation(
    mode: str, draft_model: str | None, stored_draft: str | None
) -> tuple[str, str | None]:
    """(mode, draft model) a model runs with. An explicit draft model (--draft) drafts
    under "auto" or "draft"; the Modelfile's DRAFT is used under "auto" and "draft" (an
    explicit "ngram", "self" or "off" wins over it)."""
    if draft_model is not None and mode not in ("auto", "draft"):
        raise UserInputError(
            f"--draft {draft_model} drafts with --speculative draft (or auto), not "
            f"--speculative {mode}; drop one of them"
        )
    draft = draft_model or stored_draft
    if mode == "auto" and draft is not None:
        return "draft", draft
    if mode == "draft" and draft is None:
        raise UserInputError(
            "--speculative draft needs a draft model: give --draft MODEL (a store name or a "
            "path to a model with the same tokenizer), or a DRAFT line in the model's Modelfile"
        )
    return mode, draft if mode == "draft" else None


def load_draft(
    draft: str,
    target_name: str,
    target_tokenizer: Any,
    quant: str,
    dtype: torch.dtype,
    settings: Settings,
) -> LoadedDraft:
    """Load `draft` for the target `target_name`; UserInputError (naming both) when its
    vocabulary differs from the target's."""
    from hearth.engine.llm import resolve_model
    from hearth.engine.spec.model_drafter import check_same_vocabulary
    from hearth.model.backend import BackendConfig
    from hearth.model.quant_load import load_decoder
    from hearth.tokenizer.loading import load_tokenizer

    path, _ = resolve_model(draft, settings)
    if path.is_dir():
        from hearth.store.hf_folder import model_kind

        if model_kind(path) != "generation":
            raise UserInputError(f"the draft model {draft} is not a text generation model")
    tokenizer = load_tokenizer(path)
    check_same_vocabulary(target_name, target_tokenizer, draft, tokenizer)
    built = load_decoder(path, quant, dtype, BackendConfig.of(settings))
    return LoadedDraft(draft, built.weights.config, built.decoder, tokenizer, built.dtype)
