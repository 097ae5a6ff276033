"""`hearth tune` end to end on a tiny llama with SmolLM2's tokenizer and chat template, in a
fresh store: one JSON line per step, the result stored as base + adapter (listed with its
base; `hearth run` runs it unmerged, with the merged model's text), exported as a PEFT
adapter whose logits on transformers equal hearth-with-adapter; bad input exits with one
line."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from cli_runner import run_hearth_raw as _run

from hearth.config import load_settings
from hearth.store import Store
from hearth.tokenizer import load_tokenizer
from hearth.tune.api import load_tuned
from hearth.tune.forward import flatten, hidden_states
from hearth.tune.tokenize import TokenizedExample


@pytest.fixture
def tiny_store(tmp_path: Path, hearth_home: Path, smollm2_gguf: Path) -> Path:
    """A store holding `tiny`: a random 2-layer llama over SmolLM2's vocabulary and template."""
    from transformers import LlamaConfig, LlamaForCausalLM

    tok = load_tokenizer(smollm2_gguf)
    folder = tmp_path / "tiny"
    torch.manual_seed(0)
    config = LlamaConfig(
        vocab_size=tok.vocab_size, hidden_size=64, intermediate_size=96, num_hidden_layers=2,
        num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=256,
        bos_token_id=tok.bos_id, eos_token_id=tok.eos_id, tie_word_embeddings=False,
    )  # fmt: skip
    LlamaForCausalLM(config).save_pretrained(folder)
    tok.backend.save(str(folder / "tokenizer.json"))
    (folder / "tokenizer_config.json").write_text(json.dumps({
        "chat_template": tok.chat_template, "bos_token": tok.id_to_token(tok.bos_id or 0),
        "eos_token": tok.id_to_token(tok.eos_id or 0),
    }))  # fmt: skip
    Store(load_settings()).import_path(folder, "tiny", accept_license=True)
    data = tmp_path / "chat.jsonl"
    rows = [
        {
            "messages": [
                {"role": "user", "content": f"Question {i}?"},
                {"role": "assistant", "content": f"Ahoy! Answer {i}."},
            ]
        }
        for i in range(12)
    ]
    data.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return data


def test_tune_stores_base_plus_adapter_and_exports_peft(
    tiny_store: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code, out, err = _run(
        capsys, "tune", "tiny", "--data", str(tiny_store), "--name", "tiny-ahoy", "--max-steps", "3",
        "--batch-size", "2", "--seq-len", "64", "--lr", "1e-2", "--rank", "4", "--eval-split", "0.2",
        "--eval-every", "3", "--dtype", "fp32", "--accept-license", "--json",
    )  # fmt: skip
    assert code == 0, err
    lines = [json.loads(line) for line in out.splitlines()]
    steps = [x for x in lines if x["event"] == "step"]
    assert [s["step"] for s in steps] == [1, 2, 3]
    assert steps[-1]["eval_loss"] is not None and steps[0]["tokens_per_s"] > 0
    assert lines[-1]["event"] == "done" and lines[-1]["name"] == "tiny-ahoy"

    code, out, _ = _run(capsys, "list", "--json")
    listed = {m["name"]: m for m in json.loads(out)}
    assert listed["tiny-ahoy:latest"]["source"] == "tune:tiny:latest"
    greedy = ("--temperature", "0", "--max-tokens", "6", "--raw")
    code, tuned_text, err = _run(capsys, "run", "tiny-ahoy", "hello there", *greedy)
    assert code == 0, err  # runs on its base with the adapter, unmerged

    output = tmp_path / "peft"
    code, _, err = _run(capsys, "export", "tiny-ahoy", "--format", "peft", "--output", str(output))
    assert code == 0, err
    assert "Derived from `tiny:latest` (sha256:" in (output / "LICENSE-NOTICE.md").read_text()
    _assert_peft_logits_equal(output, tmp_path / "tiny")

    code, out, err = _run(
        capsys, "export", "tiny-ahoy", "--format", "gguf-lora", "--output", str(tmp_path / "g")
    )
    assert code == 0, err
    _assert_gguf_lora_matches(tmp_path / "g" / "tiny-latest-lora.gguf", output)

    code, _, err = _run(capsys, "merge", "tiny-ahoy", "--accept-license")
    assert code == 0, err
    _assert_merged_equals_adapter("tiny-ahoy-merged", "tiny-ahoy")
    code, merged_text, err = _run(capsys, "run", "tiny-ahoy-merged", "hello there", *greedy)
    assert code == 0 and merged_text == tuned_text, err
    # the exported PEFT folder on the plain base: `run --lora`, as llama.cpp's --lora
    code, lora_text, err = _run(
        capsys, "run", "tiny", "--lora", str(output), "hello there", *greedy
    )
    assert code == 0 and lora_text == tuned_text, err
    code, _, err = _run(
        capsys, "export", "tiny-ahoy", "--format", "gguf", "--output", str(tmp_path / "m")
    )
    assert code == 2 and "the base of tiny-ahoy is hf" in err


def _assert_peft_logits_equal(adapter: Path, base_folder: Path) -> None:
    import peft
    from transformers import AutoModelForCausalLM

    config = json.loads((adapter / "adapter_config.json").read_text())
    assert config["base_model_name_or_path"] == "tiny:latest"
    from safetensors import safe_open

    with safe_open(str(adapter / "adapter_model.safetensors"), "pt") as f:
        assert f.metadata()["hearth.base_digest"].startswith("sha256:")
    hf = AutoModelForCausalLM.from_pretrained(base_folder, dtype=torch.float32)
    model = peft.PeftModel.from_pretrained(hf, adapter).eval()
    ours, _, _ = load_tuned("tiny-ahoy")
    ids = [1, 500, 42, 9000, 77, 3]
    with torch.no_grad():
        theirs = model(input_ids=torch.tensor([ids])).logits[0]
        flat = flatten([TokenizedExample(tuple(ids), (True,) * len(ids), "x")])
        mine = ours.compute_logits(hidden_states(ours, flat))
    torch.testing.assert_close(mine, theirs, rtol=1e-4, atol=1e-4)
    lora_b = [p for n, p in model.named_parameters() if "lora_B" in n]
    assert any(float(p.abs().max()) > 0 for p in lora_b), "the adapter learned nothing"


def test_bad_input_is_one_line(
    tiny_store: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"messages": [{"role": "user", "content": "hi"}]}\n')
    cases: list[tuple[list[str], str, int]] = [
        (["--data", str(bad)], "bad.jsonl:1: the conversation has no assistant turn", 2),
        (["--data", str(tiny_store), "--rank", "0"], "--rank must be a positive integer", 2),
        (["--data", str(tiny_store), "--targets", "qkv"], "it has down_proj, gate_proj", 2),
        (
            ["--data", str(tiny_store), "--seq-len", "8"],
            "12 of 12 examples are longer than --seq-len 8",
            2,
        ),
        (
            ["--data", "hf://datasets/only-an-org"],
            "give hf://datasets/ORG/NAME or hf://datasets/ORG/NAME/FILE",
            2,
        ),
        (["--data", str(tmp_path / "none.jsonl")], "no data at", 2),
    ]
    for extra, message, exit_code in cases:
        code, _, err = _run(capsys, "tune", "tiny", "--name", "x", "--accept-license", *extra)
        assert code == exit_code and message in err and "Traceback" not in err, (extra, err)
    assert [r.name for r in Store(load_settings()).list()] == ["tiny:latest"]


def _assert_gguf_lora_matches(path: Path, peft_folder: Path) -> None:
    """llama.cpp's layout: adapter metadata, blk.N.<part>.weight.lora_a/b, q/k rows of B
    permuted as llama.cpp permutes a llama file's q/k (hearth's GGUF loader undoes it)."""
    import gguf
    from safetensors.torch import load_file

    from hearth.weights.gguf import _unpermute

    reader = gguf.GGUFReader(str(path))
    fields = {f.name: f for f in reader.fields.values()}
    assert bytes(fields["general.type"].parts[-1]).decode() == "adapter"
    assert bytes(fields["adapter.type"].parts[-1]).decode() == "lora"
    assert float(fields["adapter.lora.alpha"].parts[-1][0]) == 32.0
    tensors = {t.name: torch.from_numpy(t.data.copy()) for t in reader.tensors}
    assert len(tensors) == 2 * 7 * 2  # A and B of 7 projections in 2 layers
    peft_w = load_file(str(peft_folder / "adapter_model.safetensors"))
    prefix = "base_model.model.model.layers.1."
    torch.testing.assert_close(
        tensors["blk.1.ffn_down.weight.lora_a"], peft_w[prefix + "mlp.down_proj.lora_A.weight"]
    )
    torch.testing.assert_close(
        tensors["blk.1.attn_v.weight.lora_b"], peft_w[prefix + "self_attn.v_proj.lora_B.weight"]
    )
    q_b = tensors["blk.1.attn_q.weight.lora_b"]
    torch.testing.assert_close(
        _unpermute(q_b, 4), peft_w[prefix + "self_attn.q_proj.lora_B.weight"]
    )
    k_b = tensors["blk.1.attn_k.weight.lora_b"]
    torch.testing.assert_close(
        _unpermute(k_b, 2), peft_w[prefix + "self_attn.k_proj.lora_B.weight"]
    )


def _assert_merged_equals_adapter(merged: str, tuned: str) -> None:
    from hearth.model.build import build_model
    from hearth.weights.loader import load_weights

    loaded = load_weights(Store(load_settings()).locate(merged).path)
    plain = build_model(loaded.config, loaded.tensors)
    ours, _, _ = load_tuned(tuned)
    flat = flatten([TokenizedExample((1, 500, 42, 9000, 77, 3), (True,) * 6, "x")])
    with torch.no_grad():
        a = plain.compute_logits(hidden_states(plain, flat))
        b = ours.compute_logits(hidden_states(ours, flat))
    torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-4)


def test_license_gate_refuses_tuning(
    hearth_home: Path, nc_gguf: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from hearth.licenses.policy import set_policy_value

    Store(load_settings()).import_path(nc_gguf, "nc-model")
    set_policy_value(load_settings(), "commercial", "true")
    data = tmp_path / "d.jsonl"
    data.write_text('{"text": "hello"}\n')
    code, _, err = _run(capsys, "tune", "nc-model", "--data", str(data), "--name", "nc-tuned")
    assert code == 3 and "NonCommercial" in err and "Traceback" not in err
    assert len(err.strip().splitlines()) == 1
    assert [r.name for r in Store(load_settings()).list()] == ["nc-model:latest"]
    # data that is a model's output: that model's license is checked for "train_other"
    set_policy_value(load_settings(), "commercial", "false")
    code, _, err = _run(
        capsys, "tune", "nc-model", "--data", str(data), "--name", "t", "--data-from", "nc-model"
    )
    assert code == 3 and "training other models" in err and "Traceback" not in err


def test_dpo_run_reports_margins(
    tiny_store: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    pairs = tmp_path / "pairs.jsonl"
    rows = [
        {"prompt": f"Question {i}?", "chosen": f"Ahoy! {i}", "rejected": f"No. {i}"}
        for i in range(6)
    ]
    pairs.write_text("".join(json.dumps(r) + "\n" for r in rows))
    code, out, err = _run(
        capsys, "tune", "tiny", "--data", str(pairs), "--name", "tiny-dpo", "--method", "dpo",
        "--max-steps", "2", "--batch-size", "3", "--seq-len", "64", "--lr", "1e-2", "--rank", "4",
        "--dtype", "fp32", "--accept-license", "--json",
    )  # fmt: skip
    assert code == 0, err
    steps = [x for x in map(json.loads, out.splitlines()) if x["event"] == "step"]
    assert len(steps) == 2 and abs(steps[0]["reward_margin"]) < 1e-5  # policy == reference at start
    assert abs(steps[1]["reward_margin"]) > 1e-4 and 0.0 <= steps[1]["reward_accuracy"] <= 1.0


def test_full_fine_tune_is_stored_as_a_model(
    tiny_store: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """--method full: the trained weights become a plain model in the base's format, listed
    as made from its base; its weights are the trained ones (base + change)."""
    from hearth.tune import TrainConfig, tune
    from hearth.tune.trainer import Trainer
    from hearth.weights.loader import load_weights

    trained: dict[str, torch.Tensor] = {}

    def keep(trainer: Trainer) -> None:
        trained["model"] = trainer.model  # type: ignore[assignment]

    outcome = tune(
        "tiny", tiny_store, "tiny-full",
        TrainConfig(method="full", max_steps=2, batch_size=2, seq_len=64, lr=1e-2),
        accept_license=True, trainer_ready=keep,
    )  # fmt: skip
    assert outcome.record is not None and outcome.record.source == "tune:tiny:latest"
    stored = load_weights(Store(load_settings()).locate("tiny-full").path).tensors
    state = trained["model"].state_dict()  # type: ignore[attr-defined]
    base = load_weights(tmp_path / "tiny").tensors
    name = "model.layers.1.mlp.down_proj.weight"
    assert not torch.equal(base[name], state[name])  # it trained
    for key in ("model.layers.0.self_attn.q_proj.weight", name, "model.norm.weight"):
        torch.testing.assert_close(stored[key].float(), state[key].float(), rtol=0, atol=1e-6)
    code, out, _ = _run(capsys, "list", "--json")
    assert code == 0 and "tiny-full:latest" in {m["name"] for m in json.loads(out)}


@pytest.mark.timeout(900)
def test_fsdp_tuning_stores_what_ddp_stores(tiny_store: Path) -> None:
    """Two ranks with FSDP (--shard full) store an adapter that loads as the DDP run's does:
    the full weights are gathered on rank 0, and the store changes only when the run ends."""
    from hearth.tune import TrainConfig, tune

    config = TrainConfig(max_steps=3, batch_size=1, seq_len=64, lr=1e-2)
    store = Store(load_settings())
    loaded = {}
    for shard in ("none", "full"):
        before = {r.name for r in store.list()}

        def unchanged(_report: object, before: set[str] = before) -> None:
            assert {r.name for r in store.list()} == before  # nothing stored mid-run

        outcome = tune("tiny", tiny_store, f"tiny-{shard}", config, accept_license=True,
                       dtype=torch.float32, nproc=2, shard=shard, on_step=unchanged)  # fmt: skip
        assert outcome.record is not None and outcome.result.steps == 3
        loaded[shard] = load_tuned(f"tiny-{shard}")[0].state_dict()
    assert loaded["none"].keys() == loaded["full"].keys()
    for key, value in loaded["none"].items():
        torch.testing.assert_close(loaded["full"][key], value, atol=1e-4, rtol=0, msg=key)
    assert any("lora" in k for k in loaded["full"])
