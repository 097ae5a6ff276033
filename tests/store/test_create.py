"""`Store.create`: a Modelfile model shares its base's blobs, keeps every layer, and
`modelfile_text` writes a Modelfile that recreates it."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from hearth.errors import UserInputError
from hearth.store import Store
from hearth.store.create import modelfile_text
from hearth.store.modelfile import parse


def _adapter(folder: Path) -> Path:
    folder.mkdir()
    (folder / "adapter_config.json").write_text(json.dumps({"r": 4, "lora_alpha": 8}))
    (folder / "adapter_model.safetensors").write_bytes(b"not really tensors")
    return folder


MODELFILE = '''FROM base
ADAPTER ./lora
TEMPLATE """{{ range .Messages }}[{{ .Role }}] {{ .Content }}
{{ end }}[assistant]"""
SYSTEM Be brief.
PARAMETER temperature 0.1
PARAMETER stop "[user]"
PARAMETER stop END
MESSAGE user What is 2+2?
MESSAGE assistant 4
LICENSE "my terms"
'''


def test_create_shares_the_base_blobs_and_round_trips(
    store: Store, tiny_hf: Path, tmp_path: Path
) -> None:
    store.import_path(tiny_hf, "base")
    blobs_before = set(store.blobs.digests())
    _adapter(tmp_path / "lora")
    record = store.create("mine", parse(MODELFILE), tmp_path)
    added = set(store.blobs.digests()) - blobs_before
    base_files = {f.digest for f in store.manifest("base").files}
    mine_files = {f.path: f.digest for f in store.manifest("mine").files}
    # the base's blobs are named, not copied; only the adapter's two files are new
    assert base_files <= set(mine_files.values())
    assert {
        mine_files["adapter/adapter_config.json"],
        mine_files["adapter/adapter_model.safetensors"],
    } == added
    assert record.digest != store.get("base").digest
    # the effective chat template: system first, the few-shot pair, then the conversation
    from hearth.tokenizer.chat_template import ChatTemplate

    assert record.chat_template is not None
    text = ChatTemplate(record.chat_template).render(
        [{"role": "user", "content": "hi"}], add_generation_prompt=True
    )
    assert text == (
        "[system] Be brief.\n[user] What is 2+2?\n[assistant] 4\n[user] hi\n[assistant]"
    )
    layers = store.layers("mine")
    assert layers["parameters"] == {"temperature": 0.1, "stop": ["[user]", "END"]}
    assert layers["licenses"] == ["my terms"]

    # show --modelfile recreates it: same layers, same digest
    shown = modelfile_text("mine", store.manifest("mine"))
    again = store.create("again", parse(shown), tmp_path)
    assert again.digest == record.digest
    assert parse(shown) == parse(MODELFILE)


def test_create_on_a_created_model_inherits_its_layers(store: Store, tiny_hf: Path) -> None:
    store.import_path(tiny_hf, "base")
    store.create("a", parse("FROM base\nSYSTEM one\nPARAMETER top_k 5"), Path("."))
    store.create("b", parse("FROM a\nPARAMETER temperature 0.5"), Path("."))
    layers = store.layers("b")
    assert layers["system"] == "one"
    assert layers["parameters"] == {"top_k": 5, "temperature": 0.5}
    # removing the parent keeps the child's blobs (they are named by both)
    store.remove(["base", "a"])
    assert store.verify("b").ok


def test_create_from_a_path_and_bad_inputs(store: Store, tiny_hf: Path, tmp_path: Path) -> None:
    record = store.create("frompath", parse(f"FROM {tiny_hf}\nSYSTEM hi"), tmp_path)
    assert record.architecture == "llama"
    assert store.layers("frompath")["from"] == str(tiny_hf)
    with pytest.raises(UserInputError, match="does not exist"):
        store.create("x", parse("FROM ./missing.gguf"), tmp_path)
    (tmp_path / "half").mkdir()
    with pytest.raises(UserInputError, match=r"adapter_model\.safetensors missing"):
        (tmp_path / "half" / "adapter_config.json").write_text("{}")
        store.create("x", parse("FROM frompath\nADAPTER ./half"), tmp_path)
    with pytest.raises(UserInputError, match="cannot be translated"):
        store.create("x", parse('FROM frompath\nTEMPLATE "{{ .Tools }}"'), tmp_path)
    # a GGUF model as ADAPTER: refused at create, not at the first run
    _gguf(tmp_path / "model.gguf", adapter=False)
    with pytest.raises(UserInputError, match=r"a GGUF model, not a LoRA adapter.*FROM"):
        store.create("x", parse("FROM frompath\nADAPTER ./model.gguf"), tmp_path)
    assert "x:latest" not in {r.name for r in store.list()}
    _gguf(tmp_path / "lora.gguf", adapter=True)
    store.create("x", parse("FROM frompath\nADAPTER ./lora.gguf"), tmp_path)
    assert store.locate("x").adapter is not None


def _gguf(path: Path, adapter: bool) -> None:
    import gguf
    import numpy as np

    writer = gguf.GGUFWriter(str(path), "llama")
    if adapter:
        writer.add_type(gguf.GGUFType.ADAPTER)
        writer.add_string(gguf.Keys.Adapter.TYPE, "lora")
    writer.add_tensor("blk.0.attn_v.weight.lora_a", np.ones((4, 8), np.float32))
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()
