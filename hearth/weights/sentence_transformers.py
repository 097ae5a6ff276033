"""Embedding and reranking model folders: a sentence-transformers folder (`modules.json`
naming a Transformer, a Pooling module whose `config.json` says the pooling mode, and
optionally a Normalize module; `sentence_bert_config.json` or, since sentence-transformers 6,
the tokenizer's `model_max_length` gives the max sequence length;
`config_sentence_transformers.json` may name a default prompt) or a cross-encoder (a `*ForSequenceClassification` config.json). Reads JSON only: the
tensors come through `hf.SafetensorsTensors`, the network is `model/layers/encoder.py`.

Whether a folder is a generation, embedding or rerank model is the store's one rule
(`hearth.store.hf_folder.model_kind`)."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from hearth.errors import CorruptModelError, UnsupportedModelError
from hearth.store.hf_folder import model_kind
from hearth.weights.encoder_config import (
    ENCODER_MODEL_TYPES,
    EncoderConfig,
    PoolingConfig,
    encoder_config_from_hf,
)

KINDS = ("generation", "embedding", "rerank")
__all__ = ["KINDS", "EmbeddingModelSpec", "model_kind", "read_embedding_folder"]
_POOLING_KEYS = {
    "pooling_mode_cls_token": "cls",
    "pooling_mode_mean_tokens": "mean",
    "pooling_mode_max_tokens": "max",
    "pooling_mode_mean_sqrt_len_tokens": "mean_sqrt_len",
    "pooling_mode_lasttoken": "lasttoken",
}
# sentence-transformers 6 writes one `pooling_mode` name; these differ from hearth's
_POOLING_NAMES = {"mean_sqrt_len_tokens": "mean_sqrt_len"}


@dataclass(frozen=True)
class EmbeddingModelSpec:
    """What hearth needs to run an embedding or rerank folder."""

    kind: str  # "embedding" | "rerank"
    model_type: str
    # the BERT-family network; None for a decoder-based embedder (Qwen3-Embedding style),
    # which runs on the generic decoder
    encoder: EncoderConfig | None
    pooling: PoolingConfig
    max_seq_length: int  # inputs longer than this are refused (or cut when asked)
    dimensions: int  # the length of one embedding
    tensor_prefix: str  # the encoder's prefix in a classification checkpoint ("bert.")
    # a reranker's score: "sigmoid" of the one logit (sentence-transformers' CrossEncoder
    # default for one label) or the raw logit ("identity")
    activation: str = "sigmoid"
    # prepended to every text, as SentenceTransformer.encode does with the folder's
    # `default_prompt_name` (instruction-tuned embedders); "" when the folder names none
    default_prompt: str = ""


def _json(path: Path) -> Any:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise CorruptModelError(f"cannot read {path}: {exc}; re-download the model") from exc


def _modules(folder: Path) -> list[dict[str, Any]]:
    path = folder / "modules.json"
    if not path.is_file():
        return []
    modules = _json(path)
    if not isinstance(modules, list) or not all(isinstance(m, dict) for m in modules):
        raise CorruptModelError(f"{path} is not a list of modules; re-download the model")
    return modules


def _module_kind(module: dict[str, Any]) -> str:
    """The module's class name: sentence-transformers 2-5 write
    `sentence_transformers.models.Pooling`, 6 writes
    `sentence_transformers.sentence_transformer.modules.pooling.Pooling`."""
    return str(module.get("type", "")).rpartition(".")[2]


def _pooling_mode(folder: Path, config: dict[str, Any]) -> str:
    if "pooling_mode" in config:  # sentence-transformers >= 6
        value = config["pooling_mode"]
        modes = [value] if isinstance(value, str) else list(value)
        modes = [_POOLING_NAMES.get(str(m), str(m)) for m in modes]
    else:
        modes = [m for key, m in _POOLING_KEYS.items() if config.get(key)]
    if len(modes) != 1 or modes[0] not in _POOLING_KEYS.values():
        raise UnsupportedModelError(
            f"{folder.name}: pooling {modes or 'none'}; hearth runs exactly one of "
            f"{sorted(_POOLING_KEYS.values())}"
        )
    if config.get("include_prompt") is False:
        raise UnsupportedModelError(
            f"{folder.name}: its Pooling leaves the prompt's tokens out (include_prompt: "
            "false), which hearth does not run"
        )
    return modes[0]


def _pooling(folder: Path, modules: list[dict[str, Any]], default: str) -> PoolingConfig:
    mode = default
    normalize = False
    for module in modules:
        kind = _module_kind(module)
        if kind == "Pooling":
            mode = _pooling_mode(folder, _json(folder / str(module.get("path", "")) / "config.json"))
        elif kind == "Normalize":
            normalize = True
        elif kind != "Transformer":
            raise UnsupportedModelError(
                f"{folder.name}: the sentence-transformers module {kind!r} is not supported "
                "(hearth runs Transformer, Pooling and Normalize)"
            )
    return PoolingConfig(mode, normalize)


def _default_prompt(folder: Path) -> str:
    path = folder / "config_sentence_transformers.json"
    if not path.is_file():
        return ""
    config = _json(path)
    name = config.get("default_prompt_name")
    if not name:
        return ""
    prompts = config.get("prompts") or {}
    if not isinstance(prompts, dict) or not isinstance(prompts.get(name), str):
        raise CorruptModelError(
            f"{path}: default_prompt_name {name!r} is not one of its prompts; re-download the model"
        )
    return str(prompts[name])


def _max_seq_length(folder: Path, limit: int) -> int:
    path = folder / "sentence_bert_config.json"
    if path.is_file():
        value = _json(path).get("max_seq_length")
        if isinstance(value, int) and value > 0:
            return min(value, limit)
    tok = folder / "tokenizer_config.json"
    if tok.is_file():
        value = _json(tok).get("model_max_length")
        if isinstance(value, int) and 0 < value < limit:
            return value
    return limit


def read_embedding_folder(folder: Path) -> EmbeddingModelSpec:
    """The spec of an embedding or rerank folder; raises UnsupportedModelError for a
    generation model or a layout hearth does not run."""
    kind = model_kind(folder)
    if kind == "generation":
        raise UnsupportedModelError(
            f"{folder} is a generation model, not an embedding or rerank model"
        )
    config = _json(folder / "config.json")
    mt = str(config.get("model_type", ""))
    modules = _modules(folder)
    encoder: EncoderConfig | None = None
    if mt in ENCODER_MODEL_TYPES:
        encoder = encoder_config_from_hf(config)
        limit = encoder.max_tokens
        dimensions = encoder.hidden_size
        default_pooling = "cls" if kind == "rerank" else "mean"
    elif kind == "embedding":
        # a decoder used as an embedder: causal attention, the last token sees everything
        limit = int(config.get("max_position_embeddings", 2048))
        dimensions = int(config["hidden_size"])
        default_pooling = "lasttoken"
    else:
        raise UnsupportedModelError(
            f"{folder.name}: rerankers of model_type {mt!r} are not supported "
            f"(hearth runs {sorted(ENCODER_MODEL_TYPES)} cross-encoders)"
        )
    if encoder is not None and kind == "rerank" and encoder.num_labels != 1:
        raise UnsupportedModelError(
            f"{folder.name}: a reranker has one output label, this one has {encoder.num_labels}"
        )
    st = config.get("sentence_transformers") or {}
    act = str(st.get("activation_fn", "torch.nn.modules.activation.Sigmoid"))
    return EmbeddingModelSpec(
        kind=kind,
        model_type=mt,
        encoder=encoder,
        pooling=_pooling(folder, modules, default_pooling),
        max_seq_length=_max_seq_length(folder, limit),
        dimensions=dimensions,
        tensor_prefix=f"{ENCODER_MODEL_TYPES.get(mt, mt)}.",
        activation="sigmoid" if act.endswith("Sigmoid") else "identity",
        default_prompt=_default_prompt(folder) if kind == "embedding" else "",
    )
