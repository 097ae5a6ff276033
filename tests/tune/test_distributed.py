"""DDP and FSDP tuning over 2 real processes (gloo, 127.0.0.1): the loss curve of 10 steps
and the trained weights equal one process's at the same global batch (fp32, within 1e-4),
with a short last batch that leaves one rank without a block; only rank 0 writes the
checkpoint, in the one-process format."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest
import torch
from test_trainer import pattern_examples

from hearth.model.layers.lora import LoraConfig
from hearth.tune.distributed import RankJob, build_rank_model, start_rank0
from hearth.tune.packing import make_blocks
from hearth.tune.train_config import TrainConfig
from hearth.tune.trainer import Trainer

# micro-batch 2 per rank x 2 ranks x 2 accumulated = 8 blocks per optimizer step
CONFIG = TrainConfig(
    lora=LoraConfig(rank=4, alpha=16.0, dropout=0.0), lr=2e-2, max_steps=10, batch_size=2,
    grad_accum=2, seq_len=48, pack=False, warmup_steps=2, seed=3, save_every=4,
)  # fmt: skip


@pytest.mark.parametrize(
    ("method", "shard", "tied"),
    [
        pytest.param("lora", "none", False, id="ddp-lora"),
        pytest.param("lora", "full", True, id="fsdp-lora-tied"),
        pytest.param("full", "full", False, id="fsdp-full", marks=pytest.mark.slow),
    ],
)
def test_two_ranks_give_the_one_process_loss_curve(
    tiny_pair: Any, tmp_path: Path, method: str, shard: str, tied: bool
) -> None:
    """DDP, and FSDP (each rank 1/2 of every weight; a tied head read outside forward; a
    full fine-tune whose head trains), equal one process at the same global batch."""
    from torch.distributed.tensor import DTensor

    tiny_pair("llama", tie_word_embeddings=tied)  # saves the folder both runs load
    folder = next(p for p in tmp_path.iterdir() if p.name.startswith("llama"))
    # 45 blocks: each epoch's last global micro-batch holds one block, none for rank 1
    blocks = make_blocks(pattern_examples(45), CONFIG.seq_len, pack=False)
    # eval forwards between steps (no backward): FSDP's gathered root must stay current
    held_out = make_blocks(pattern_examples(4, seed=1), CONFIG.seq_len, pack=False)
    checkpoint = tmp_path / "run" / "checkpoint.pt"
    lr = CONFIG.lr if method == "lora" else 2e-3
    config = replace(CONFIG, method=method, lr=lr, eval_every=3)
    job = RankJob(str(folder), "float32", config, blocks, held_out, str(checkpoint), shard=shard)

    threads = torch.get_num_threads()
    try:
        model = build_rank_model(job)
        trainer = start_rank0(model, job, nproc=2)
        result = trainer.run()
    finally:
        torch.set_num_threads(threads)
    assert result.steps == 10 and checkpoint.is_file()

    one = build_rank_model(job)
    single = Trainer(one, replace(config, batch_size=4), blocks, held_out)
    expected = single.run()
    assert [h["tokens"] for h in result.history] == [h["tokens"] for h in expected.history]
    for key in ("loss", "eval_loss"):
        torch.testing.assert_close(
            torch.tensor([h[key] or 0.0 for h in result.history]),
            torch.tensor([h[key] or 0.0 for h in expected.history]),
            atol=1e-4, rtol=0, msg=key,
        )  # fmt: skip
    assert sum(h["eval_loss"] is not None for h in result.history) == 4  # steps 3, 6, 9, 10
    assert expected.history[-1]["loss"] < expected.history[0]["loss"] * 0.7  # it learned
    # what api.tune saves from rank 0's module: the full trained weights, no shards left
    got = dict(model.named_parameters())
    assert not any(isinstance(p, DTensor) for p in got.values())
    for name, want in single.params.items():
        torch.testing.assert_close(got[name], want, atol=1e-4, rtol=0, msg=name)
    # the checkpoint is in the one-process format (full tensors), whatever the sharding
    saved = torch.load(checkpoint, weights_only=True)
    assert {n: v.shape for n, v in saved["params"].items()} == {
        n: p.shape for n, p in single.params.items()
    }


def test_fsdp_resumes_a_one_process_checkpoint(tiny_pair: Any, tmp_path: Path) -> None:
    """Checkpoints hold full tensors whatever wrote them: two FSDP ranks resume one
    process's step-8 checkpoint (weights and AdamW moments sharded on load) and continue
    its loss curve."""
    tiny_pair("llama")
    folder = next(p for p in tmp_path.iterdir() if p.name.startswith("llama"))
    blocks = make_blocks(pattern_examples(45), CONFIG.seq_len, pack=False)
    checkpoint = tmp_path / "run" / "checkpoint.pt"
    job = RankJob(str(folder), "float32", CONFIG, blocks, [], str(checkpoint), shard="full")
    single = Trainer(build_rank_model(job), replace(CONFIG, batch_size=4), blocks, [], checkpoint)
    expected = single.run()  # saves at steps 4 and 8
    assert torch.load(checkpoint, weights_only=True)["step"] == 8

    threads = torch.get_num_threads()
    try:
        trainer = start_rank0(build_rank_model(job), replace(job, resume=True), nproc=2)
        trainer.resume()
        assert trainer.step == 8
        result = trainer.run()
    finally:
        torch.set_num_threads(threads)
    torch.testing.assert_close(
        torch.tensor([h["loss"] for h in result.history[8:]]),
        torch.tensor([h["loss"] for h in expected.history[8:]]),
        atol=1e-4, rtol=0,
    )  # fmt: skip


@pytest.mark.slow
@pytest.mark.timeout(3600)
@pytest.mark.parametrize("shard", ["none", "full"])
def test_hearth_tune_nproc_stores_the_adapter_once(
    smollm2_gguf: Path, tmp_path: Path, shard: str
) -> None:
    """The CLI end to end on SmolLM2 (bf16 base, tied head): two ranks train (DDP or FSDP),
    one JSON line per step (rank 0's), the tuned model stored once."""
    import json
    import os
    import subprocess
    import sys

    from hearth.config import load_settings
    from hearth.store import Store

    home = tmp_path / "home"
    env = {**os.environ, "HEARTH_HOME": str(home)}
    Store(load_settings(env)).import_path(smollm2_gguf, "smollm2:135m", accept_license=True)
    rows = [{"messages": [{"role": "user", "content": f"Say {w}."},
                          {"role": "assistant", "content": f"{w.capitalize()}!"}]}
            for w in ["yes", "no", "maybe", "later", "now", "soon"]]  # fmt: skip
    data = tmp_path / "data.jsonl"
    data.write_text("".join(json.dumps(r) + "\n" for r in rows))
    argv = ["--json", "tune", "smollm2:135m", "--data", str(data), "--name", "smollm2-ddp",
            "--nproc", "2", "--batch-size", "1", "--max-steps", "2", "--seq-len", "64",
            "--rank", "4", "--no-pack", "--shard", shard]  # fmt: skip
    proc = subprocess.run(
        [sys.executable, "-m", "hearth", *argv], env=env, capture_output=True, text=True,
        timeout=3000,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    steps = [json.loads(line) for line in proc.stdout.splitlines() if '"step"' in line]
    assert [s["step"] for s in steps if "loss" in s] == [1, 2]
    names = [r.name for r in Store(load_settings(env)).list()]
    assert names.count("smollm2-ddp:latest") == 1
