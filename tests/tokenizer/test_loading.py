"""load_tokenizer: GGUF files and Hugging Face folders (tokenizer.json, tokenizer_config.json,
chat_template.jinja, generation_config.json), and the errors for paths that are neither."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from hearth.errors import UnsupportedModelError, UserInputError
from hearth.tokenizer import Tokenizer, load_tokenizer


@pytest.fixture(scope="module")
def smollm2_hf_folder(hf_smollm2_tokenizer, tmp_path_factory: pytest.TempPathFactory) -> Path:  # type: ignore[no-untyped-def]
    folder = tmp_path_factory.mktemp("smollm2-hf")
    hf_smollm2_tokenizer.save_pretrained(str(folder))
    return folder


def test_gguf_files_load(smollm2_tokenizer: Tokenizer, gemma3_tokenizer: Tokenizer) -> None:
    assert smollm2_tokenizer.has_chat_template and "<|im_start|>" in (
        smollm2_tokenizer.chat_template or ""
    )
    assert smollm2_tokenizer.backend.get_vocab_size() == 49152
    assert not gemma3_tokenizer.has_chat_template
    assert "byte_fallback" in repr(gemma3_tokenizer)


def test_hf_folder_matches_transformers(
    smollm2_hf_folder: Path, hf_smollm2_tokenizer, corpus
) -> None:  # type: ignore[no-untyped-def]
    assert (smollm2_hf_folder / "chat_template.jinja").is_file()
    tok = load_tokenizer(smollm2_hf_folder)
    assert tok.vocab_type == "byte_level"
    assert (
        tok.bos_id == hf_smollm2_tokenizer.bos_token_id
        and tok.eos_id == hf_smollm2_tokenizer.eos_token_id
    )
    assert tok.chat_template == hf_smollm2_tokenizer.chat_template
    for text in corpus:
        ids = tok.encode(text)
        assert ids == hf_smollm2_tokenizer.encode(text), text
        assert tok.decode(ids) == hf_smollm2_tokenizer.decode(ids, skip_special_tokens=True)
    messages = [{"role": "user", "content": "Hi"}, {"role": "assistant", "content": "Hello!"}]
    assert tok.apply_chat_template(messages) == hf_smollm2_tokenizer.apply_chat_template(
        messages, add_generation_prompt=True, tokenize=False
    )


def test_hf_folder_config_flags_and_generation_eos(smollm2_hf_folder: Path, tmp_path: Path) -> None:
    folder = tmp_path / "model"
    shutil.copytree(smollm2_hf_folder, folder)
    (folder / "chat_template.jinja").unlink()
    config = json.loads((folder / "tokenizer_config.json").read_text())
    # an older folder: the template inside tokenizer_config.json, BOS asked for by flag only
    config["chat_template"] = [
        {"name": "default", "template": "{{ bos_token }}{{ messages[0].content }}"}
    ]
    config["add_bos_token"] = True
    config["bos_token"] = {"content": "<|im_start|>", "special": True}
    (folder / "tokenizer_config.json").write_text(json.dumps(config))
    (folder / "generation_config.json").write_text(json.dumps({"eos_token_id": [2, 0, 5]}))
    tok = load_tokenizer(folder)
    assert tok.encode("Hi")[0] == tok.bos_id == 1
    assert tok.encode("Hi", add_special_tokens=False)[0] != 1
    assert tok.eos_ids >= {0, 2, 5}
    assert tok.apply_chat_template([{"role": "user", "content": "Hi"}]) == "<|im_start|>Hi"


def test_bad_paths(tmp_path: Path) -> None:
    with pytest.raises(UserInputError, match="no model at"):
        load_tokenizer(tmp_path / "missing.gguf")
    not_gguf = tmp_path / "weights.bin"
    not_gguf.write_bytes(b"PK\x03\x04 not a gguf")
    with pytest.raises(UserInputError, match="not a GGUF file"):
        load_tokenizer(not_gguf)
    (tmp_path / "config.json").write_text("{}")
    with pytest.raises(UnsupportedModelError, match=r"no tokenizer\.json"):
        load_tokenizer(tmp_path)
