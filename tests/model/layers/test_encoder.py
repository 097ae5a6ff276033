"""The BERT-family encoder against transformers: tiny random BERT, RoBERTa (position offset)
and cross-encoders (BERT and RoBERTa sequence-classification heads), saved with
save_pretrained and loaded by hearth; a padded transformers batch vs hearth's packed one."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
import torch

from hearth.model.layers.encoder import Encoder
from hearth.weights.encoder_config import encoder_config_from_hf
from hearth.weights.hf import SafetensorsTensors

COMMON: dict[str, Any] = dict(
    vocab_size=120,
    hidden_size=64,
    num_hidden_layers=2,
    num_attention_heads=4,
    intermediate_size=96,
    max_position_embeddings=80,
    type_vocab_size=2,
)
LENS = [7, 1, 19, 12, 19]


def _randomize(model: torch.nn.Module) -> None:
    gen = torch.Generator().manual_seed(0)
    with torch.no_grad():
        for name, p in model.named_parameters():
            if "LayerNorm.weight" in name:
                p.copy_(1 + 0.2 * torch.randn(p.shape, generator=gen))
            else:
                p.copy_(0.2 * torch.randn(p.shape, generator=gen))


def _save(model: torch.nn.Module, path: Path) -> Path:
    _randomize(model)
    model.save_pretrained(path)  # type: ignore[operator]
    return path


def _load(path: Path) -> Encoder:
    config = encoder_config_from_hf(json.loads((path / "config.json").read_text()))
    prefix = {"bert": "bert.", "roberta": "roberta."}[config.classifier]
    net = Encoder(config)
    net.load_hf(SafetensorsTensors(path), prefix)
    return net.eval()


def _batch(vocab: int, low: int) -> tuple[list[list[int]], list[list[int]]]:
    gen = torch.Generator().manual_seed(1)
    ids = [torch.randint(low, vocab, (n,), generator=gen).tolist() for n in LENS]
    types = [[0] * (n // 2) + [1] * (n - n // 2) for n in LENS]
    return ids, types


def _reference(model: Any, ids: list[list[int]], types: list[list[int]], pad: int) -> Any:
    """transformers' padded batch with an attention mask."""
    longest = max(LENS)
    input_ids = torch.full((len(ids), longest), pad)
    type_ids = torch.zeros((len(ids), longest), dtype=torch.int64)
    mask = torch.zeros((len(ids), longest), dtype=torch.int64)
    for i, (one, t) in enumerate(zip(ids, types, strict=True)):
        input_ids[i, : len(one)] = torch.tensor(one)
        type_ids[i, : len(one)] = torch.tensor(t)
        mask[i, : len(one)] = 1
    with torch.no_grad():
        return model(input_ids=input_ids, token_type_ids=type_ids, attention_mask=mask)


def _packed(net: Encoder, ids: list[list[int]], types: list[list[int]]) -> torch.Tensor:
    flat = torch.tensor([t for one in ids for t in one])
    flat_types = torch.tensor([t for one in types for t in one])
    with torch.no_grad():
        return net(flat, flat_types, LENS)


@pytest.mark.parametrize("family", ["bert", "roberta"])
def test_hidden_states_match_transformers(family: str, tmp_path: Path) -> None:
    import transformers

    if family == "bert":
        config: Any = transformers.BertConfig(**COMMON, hidden_act="gelu")
        model = transformers.BertModel(config, add_pooling_layer=False)
        pad = 0
    else:  # positions start at pad_token_id + 1 (= 2): the table has 2 more rows
        config = transformers.RobertaConfig(**COMMON, pad_token_id=1, hidden_act="gelu_new")
        model = transformers.RobertaModel(config, add_pooling_layer=False)
        pad = 1
    path = _save(model.eval(), tmp_path / family)
    net = _load(path)
    assert net.config.position_offset == (2 if family == "roberta" else 0)
    ids, types = _batch(COMMON["vocab_size"], 2)
    ref = _reference(model, ids, types, pad).last_hidden_state
    got = _packed(net, ids, types)
    for i, part in enumerate(got.split(LENS)):
        torch.testing.assert_close(part, ref[i, : LENS[i]], atol=2e-5, rtol=1e-4)


@pytest.mark.parametrize("family", ["bert", "roberta"])
def test_cross_encoder_logit_matches_transformers(family: str, tmp_path: Path) -> None:
    import transformers

    if family == "bert":
        config: Any = transformers.BertConfig(**COMMON, num_labels=1)
        model: Any = transformers.BertForSequenceClassification(config)
        pad = 0
    else:
        config = transformers.RobertaConfig(**COMMON, pad_token_id=1, num_labels=1)
        model = transformers.RobertaForSequenceClassification(config)
        pad = 1
    path = _save(model.eval(), tmp_path / family)
    net = _load(path)
    assert net.config.num_labels == 1
    ids, types = _batch(COMMON["vocab_size"], 2)
    ref = _reference(model, ids, types, pad).logits  # (S, 1)
    got = net.classify(_packed(net, ids, types), LENS)
    torch.testing.assert_close(got, ref, atol=2e-5, rtol=1e-4)


def test_bfloat16_projections_keep_a_float32_stream(tmp_path: Path) -> None:
    # one weight set, two projection dtypes: bfloat16 products with the residual stream,
    # norms and outputs in float32, close to the float32 road; switching back is exact
    import transformers

    model = transformers.BertModel(transformers.BertConfig(**COMMON), add_pooling_layer=False)
    net = _load(_save(model.eval(), tmp_path / "bert"))
    ids, types = _batch(COMMON["vocab_size"], 2)
    exact = _packed(net, ids, types)
    net.set_projection_dtype(torch.bfloat16)
    assert net.projection_dtype == torch.bfloat16
    assert net.embeddings.word_embeddings.weight.dtype == torch.float32
    low = _packed(net, ids, types)
    assert low.dtype == torch.float32
    cosine = torch.nn.functional.cosine_similarity(low, exact)
    assert cosine.min() > 0.999 and not torch.equal(low, exact)
    net.set_projection_dtype(torch.float32)
    torch.testing.assert_close(_packed(net, ids, types), exact, atol=0, rtol=0)


def test_one_sequence_and_equal_lengths_take_the_unmasked_road(tmp_path: Path) -> None:
    import transformers

    model = transformers.BertModel(transformers.BertConfig(**COMMON), add_pooling_layer=False)
    net = _load(_save(model.eval(), tmp_path / "bert"))
    ids = torch.randint(0, 100, (2 * 9,))
    types = torch.zeros_like(ids)
    with torch.no_grad():
        both = net(ids, types, [9, 9])
        first = net(ids[:9], types[:9], [9])
    torch.testing.assert_close(both[:9], first, atol=1e-5, rtol=1e-5)


def test_missing_tensor_is_named(tmp_path: Path) -> None:
    import transformers

    model = transformers.BertModel(transformers.BertConfig(**COMMON), add_pooling_layer=False)
    path = _save(model.eval(), tmp_path / "bert")
    config = encoder_config_from_hf(json.loads((path / "config.json").read_text()))
    tensors = dict(SafetensorsTensors(path))
    del tensors["encoder.layer.1.output.dense.weight"]
    with pytest.raises(KeyError, match=r"encoder\.layer\.1\.output\.dense\.weight"):
        Encoder(config).load_hf(tensors)
