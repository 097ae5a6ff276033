"""An HF safetensors folder of a Llama-architecture model (llama, mistral) written as a float32
GGUF file the way llama.cpp's convert_hf_to_gguf.py writes it: `llama.*` hyper-parameters,
tensor names through the `gguf` package's name map, the Q/K rows permuted for llama.cpp's
RoPE, the embedding kept as the output when the model ties them, the BPE tokenizer
(tokenizer.json) and chat template when present, and `general.license` from the model card.
`hearth quantize` then quantizes this file. Knows nothing of the store."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import gguf
import numpy as np

from hearth.errors import UnsupportedModelError

ARCHITECTURES = ("llama", "mistral")


def _permute(w: np.ndarray, heads: int) -> np.ndarray:
    # llama.cpp's RoPE pairs neighbouring rows; HF's pairs each half of a head with the other
    return (
        w.reshape(heads, 2, w.shape[0] // heads // 2, *w.shape[1:]).swapaxes(1, 2).reshape(w.shape)
    )


def _tensors(folder: Path) -> dict[str, np.ndarray]:
    from safetensors.torch import load_file  # bf16 checkpoints need torch to read

    out: dict[str, np.ndarray] = {}
    for shard in sorted(folder.glob("*.safetensors")):
        for name, tensor in load_file(str(shard)).items():
            out[name] = tensor.float().numpy()
    if not out:
        raise UnsupportedModelError(f"{folder} has no *.safetensors files")
    return out


def _card_license(folder: Path) -> str | None:
    card = folder / "README.md"
    if not card.is_file():
        return None
    match = re.search(r"^license:\s*(\S+)", card.read_text(errors="replace"), re.MULTILINE)
    return match.group(1) if match else None


def convert_hf_folder(folder: Path, dst: Path) -> None:
    """Write `dst` (float32 GGUF) from the HF folder; UnsupportedModelError for other
    architectures (name the supported ones)."""
    config: dict[str, Any] = json.loads((folder / "config.json").read_text())
    model_type = config.get("model_type")
    if model_type not in ARCHITECTURES:
        raise UnsupportedModelError(
            f"hearth quantize converts HF folders of {', '.join(ARCHITECTURES)} models; "
            f"{folder.name} is {model_type!r} (quantize its GGUF file instead)"
        )
    layers = int(config["num_hidden_layers"])
    heads = int(config["num_attention_heads"])
    kv_heads = int(config.get("num_key_value_heads") or heads)
    hidden = int(config["hidden_size"])
    writer = gguf.GGUFWriter(dst, "llama")
    writer.add_name(folder.name)
    writer.add_context_length(int(config.get("max_position_embeddings", 2048)))
    writer.add_embedding_length(hidden)
    writer.add_block_count(layers)
    writer.add_feed_forward_length(int(config["intermediate_size"]))
    writer.add_head_count(heads)
    writer.add_head_count_kv(kv_heads)
    writer.add_rope_dimension_count(int(config.get("head_dim") or hidden // heads))
    writer.add_rope_freq_base(float(config.get("rope_theta", 10000.0)))
    writer.add_layer_norm_rms_eps(float(config.get("rms_norm_eps", 1e-5)))
    writer.add_vocab_size(int(config["vocab_size"]))
    writer.add_file_type(int(gguf.LlamaFileType.ALL_F32))
    license_id = _card_license(folder)
    if license_id:
        writer.add_license(license_id)
    _add_tokenizer(writer, folder, config)
    names = gguf.get_tensor_name_map(gguf.MODEL_ARCH.LLAMA, layers)
    tensors = _tensors(folder)
    tied = bool(config.get("tie_word_embeddings", False)) or "lm_head.weight" not in tensors
    for name, value in tensors.items():
        if name == "lm_head.weight" and tied:
            continue
        if name.endswith("rotary_emb.inv_freq"):
            continue
        target = names.get_name(name, try_suffixes=(".weight", ".bias"))
        if target is None:
            raise UnsupportedModelError(f"{folder.name}: no GGUF name for tensor {name}")
        if name.endswith("q_proj.weight"):
            value = _permute(value, heads)
        elif name.endswith("k_proj.weight"):
            value = _permute(value, kv_heads)
        writer.add_tensor(target, np.ascontiguousarray(value, dtype=np.float32))
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()


def _add_tokenizer(writer: gguf.GGUFWriter, folder: Path, config: dict[str, Any]) -> None:
    """The BPE vocabulary of tokenizer.json (skipped when the folder has none)."""
    path = folder / "tokenizer.json"
    if not path.is_file():
        return
    data = json.loads(path.read_text())
    model = data.get("model", {})
    if model.get("type") != "BPE":
        raise UnsupportedModelError(
            f"{folder.name}: tokenizer.json holds a {model.get('type')} model; hearth quantize "
            "converts BPE tokenizers"
        )
    vocab: dict[str, int] = dict(model["vocab"])
    special = set()
    for added in data.get("added_tokens", []):
        vocab[added["content"]] = added["id"]
        if added.get("special"):
            special.add(added["id"])
    size = max(int(config["vocab_size"]), max(vocab.values()) + 1)
    tokens = [f"[PAD{i}]" for i in range(size)]
    types = [int(gguf.TokenType.UNUSED)] * size
    for text, i in vocab.items():
        tokens[i] = text
        types[i] = int(gguf.TokenType.CONTROL if i in special else gguf.TokenType.NORMAL)
    writer.add_tokenizer_model("gpt2")
    writer.add_tokenizer_pre("default")
    writer.add_token_list(tokens)
    writer.add_token_types(types)
    merges = [m if isinstance(m, str) else " ".join(m) for m in model.get("merges", [])]
    writer.add_token_merges(merges)
    special_vocab = gguf.SpecialVocab(folder, load_merges=False)
    special_vocab.add_to_gguf(writer)
