"""The configs of embedding and reranking models: `EncoderConfig` (the BERT family's network:
BERT, RoBERTa / XLM-R, MiniLM, bge, e5) and `PoolingConfig` (how token states become one
vector), plus the one place that maps an HF `config.json` of that family to an
`EncoderConfig`. Knows nothing of tensors or files."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from hearth.errors import UnsupportedModelError

# model_type -> the prefix its *ForSequenceClassification checkpoints put before the encoder
ENCODER_MODEL_TYPES = {"bert": "bert", "roberta": "roberta", "xlm-roberta": "roberta"}
# RoBERTa-style models count positions from pad_token_id + 1 (fairseq's convention)
_OFFSET_POSITIONS = ("roberta", "xlm-roberta")
_ACTIVATIONS = {"gelu": "gelu", "gelu_new": "gelu_tanh", "gelu_pytorch_tanh": "gelu_tanh"}
POOLING_MODES = ("mean", "cls", "lasttoken", "max", "mean_sqrt_len")


@dataclass(frozen=True)
class EncoderConfig:
    """A post-norm bidirectional encoder with absolute learned positions and token types."""

    vocab_size: int
    hidden_size: int
    num_hidden_layers: int
    num_attention_heads: int
    intermediate_size: int
    max_position_embeddings: int
    type_vocab_size: int = 2
    layer_norm_eps: float = 1e-12
    hidden_act: str = "gelu"  # "gelu" (erf) or "gelu_tanh"
    # the position id of a sequence's first token (RoBERTa: pad_token_id + 1, else 0)
    position_offset: int = 0
    # a sequence-classification head with this many outputs on the first token; 0 = none
    num_labels: int = 0
    # "bert": pooler.dense + tanh, then classifier; "roberta": classifier.dense + tanh,
    # then classifier.out_proj
    classifier: str = "bert"

    def __post_init__(self) -> None:
        for name in ("vocab_size", "hidden_size", "num_hidden_layers", "num_attention_heads"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be >= 1, got {getattr(self, name)}")
        if self.hidden_size % self.num_attention_heads:
            raise ValueError(
                f"hidden_size ({self.hidden_size}) must be a multiple of num_attention_heads "
                f"({self.num_attention_heads})"
            )
        if self.hidden_act not in ("gelu", "gelu_tanh"):
            raise ValueError(f"hidden_act must be gelu or gelu_tanh, got {self.hidden_act!r}")
        if self.classifier not in ("bert", "roberta"):
            raise ValueError(f"classifier must be bert or roberta, got {self.classifier!r}")
        if not 0 <= self.position_offset < self.max_position_embeddings:
            raise ValueError(f"position_offset out of range: {self.position_offset}")

    @property
    def max_tokens(self) -> int:
        """The longest sequence the position table covers."""
        return self.max_position_embeddings - self.position_offset


@dataclass(frozen=True)
class PoolingConfig:
    """sentence-transformers' Pooling + Normalize modules."""

    mode: str = "mean"
    normalize: bool = False

    def __post_init__(self) -> None:
        if self.mode not in POOLING_MODES:
            raise ValueError(f"pooling mode must be one of {POOLING_MODES}, got {self.mode!r}")


def _fail(key: str, value: Any, why: str) -> UnsupportedModelError:
    return UnsupportedModelError(f"config.json {key}={value!r}: {why}")


def encoder_config_from_hf(d: Mapping[str, Any]) -> EncoderConfig:
    """The EncoderConfig of a BERT-family config.json (BertModel, RobertaModel,
    XLMRobertaModel and their *ForSequenceClassification)."""
    mt = str(d.get("model_type", ""))
    if mt not in ENCODER_MODEL_TYPES:
        raise _fail("model_type", mt, f"not an encoder hearth runs ({sorted(ENCODER_MODEL_TYPES)})")
    pet = d.get("position_embedding_type", "absolute")
    if pet != "absolute":
        raise _fail("position_embedding_type", pet, "only absolute positions are supported")
    if d.get("is_decoder") or d.get("add_cross_attention"):
        raise _fail("is_decoder", True, "only bidirectional encoders are supported")
    act = str(d.get("hidden_act", "gelu"))
    if act not in _ACTIVATIONS:
        raise _fail("hidden_act", act, f"supported: {sorted(_ACTIVATIONS)}")
    archs = [str(a) for a in d.get("architectures") or []]
    classifies = any(a.endswith("ForSequenceClassification") for a in archs)
    num_labels = 0
    if classifies:
        labels = d.get("id2label")
        num_labels = int(d.get("num_labels") or (len(labels) if isinstance(labels, dict) else 2))
    offset = int(d.get("pad_token_id", 1)) + 1 if mt in _OFFSET_POSITIONS else 0
    return EncoderConfig(
        vocab_size=int(d["vocab_size"]),
        hidden_size=int(d["hidden_size"]),
        num_hidden_layers=int(d["num_hidden_layers"]),
        num_attention_heads=int(d["num_attention_heads"]),
        intermediate_size=int(d["intermediate_size"]),
        max_position_embeddings=int(d["max_position_embeddings"]),
        type_vocab_size=int(d.get("type_vocab_size", 2)),
        layer_norm_eps=float(d.get("layer_norm_eps", 1e-12)),
        hidden_act=_ACTIVATIONS[act],
        position_offset=offset,
        num_labels=num_labels,
        classifier="bert" if mt == "bert" else "roberta",
    )
