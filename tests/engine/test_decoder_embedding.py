"""An embedding model built on a decoder (Qwen3-Embedding style: a sentence-transformers
folder whose Pooling module says last token, then Normalize): a tiny random Qwen3 made with
transformers, loaded by LLM, against transformers' last hidden state of the last token."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
import torch

from hearth.engine.llm import LLM
from hearth.errors import UserInputError


@pytest.fixture(scope="module")
def tiny_qwen3_embedding(all_minilm_folder: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    import transformers

    folder = tmp_path_factory.mktemp("qwen3-embedding")
    config = transformers.Qwen3Config(
        vocab_size=30522,
        hidden_size=64,
        intermediate_size=96,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=2,
        head_dim=16,
        max_position_embeddings=256,
        tie_word_embeddings=True,
    )
    torch.manual_seed(0)
    model = transformers.Qwen3Model(config).eval()
    with torch.no_grad():
        for p in model.parameters():
            p.add_(0.05 * torch.randn_like(p))
    model.save_pretrained(folder)
    shutil.copy(all_minilm_folder / "tokenizer.json", folder / "tokenizer.json")
    modules = [
        {"idx": 0, "name": "0", "path": "", "type": "sentence_transformers.models.Transformer"},
        {
            "idx": 1,
            "name": "1",
            "path": "1_Pooling",
            "type": "sentence_transformers.models.Pooling",
        },
        {
            "idx": 2,
            "name": "2",
            "path": "2_Normalize",
            "type": "sentence_transformers.models.Normalize",
        },
    ]
    (folder / "modules.json").write_text(json.dumps(modules))
    (folder / "1_Pooling").mkdir()
    pooling = {"word_embedding_dimension": 64, "pooling_mode_lasttoken": True}
    (folder / "1_Pooling" / "config.json").write_text(json.dumps(pooling))
    return folder


def test_last_token_pooling_equals_transformers(
    tiny_qwen3_embedding: Path, hearth_home: Path
) -> None:
    import transformers

    llm = LLM(tiny_qwen3_embedding, license_use=None, kv_cache_gb=0.01)
    assert llm.kind == "embedding" and llm.engine.embedding_pooling.mode == "lasttoken"
    texts = ["hello world", "the heron waited at the river bank for fish", "a"]
    got = torch.tensor(llm.embed(texts))
    ref_model = transformers.Qwen3Model.from_pretrained(tiny_qwen3_embedding).eval()
    for i, text in enumerate(texts):
        ids = list(llm.tokenizer.encode(text))
        with torch.no_grad():
            last = ref_model(input_ids=torch.tensor([ids])).last_hidden_state[0, -1]
        want = torch.nn.functional.normalize(last, dim=-1)
        torch.testing.assert_close(got[i], want, atol=1e-4, rtol=1e-4)
    with pytest.raises(UserInputError, match="does not generate text"):
        llm.generate("hi")
    assert len(llm.embed("hello", dimensions=16)[0]) == 16
