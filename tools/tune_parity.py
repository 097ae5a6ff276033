"""The distributed-tuning target of issue 29, measured: 10 optimizer steps of LoRA (or a full
fine-tune) on a tiny random llama (fp32), one process at global batch 8 against 2 ranks at
micro-batch 2 x 2 accumulated, as DDP, FSDP, and DDP or FSDP on Ray Train workers (a local Ray).
Prints each step's loss per setup and the largest difference from one process
(docs/scale.md has the numbers).

    PYTHONPATH=. python tools/tune_parity.py [--method lora|full] [--setups 1 ddp fsdp ray ray-fsdp]"""

from __future__ import annotations

import argparse
import random
import tempfile
from dataclasses import replace
from pathlib import Path

import torch

from hearth.model.layers.lora import LoraConfig
from hearth.tune.distributed import RankJob, build_rank_model, start_rank0
from hearth.tune.packing import make_blocks
from hearth.tune.tokenize import TokenizedExample
from hearth.tune.train_config import TrainConfig
from hearth.tune.trainer import Trainer

CONFIG = TrainConfig(
    lora=LoraConfig(rank=4, alpha=16.0, dropout=0.0), lr=2e-2, max_steps=10, batch_size=2,
    grad_accum=2, seq_len=48, pack=False, warmup_steps=2, seed=3, save_every=100,
)  # fmt: skip


def tiny_llama(folder: Path) -> None:
    from transformers import LlamaConfig, LlamaForCausalLM

    torch.manual_seed(0)
    config = LlamaConfig(vocab_size=128, hidden_size=64, intermediate_size=96,
                         num_hidden_layers=2, num_attention_heads=4, num_key_value_heads=2,
                         max_position_embeddings=128)  # fmt: skip
    LlamaForCausalLM(config).save_pretrained(folder)


def examples(count: int) -> list[TokenizedExample]:
    """Random prompts, always answered by the same three tokens."""
    rng = random.Random(0)
    out = []
    for i in range(count):
        prompt = [rng.randrange(10, 120) for _ in range(rng.randrange(4, 12))]
        trained = (False,) * len(prompt) + (True,) * 3
        out.append(TokenizedExample(tuple([*prompt, 7, 8, 9]), trained, f"x:{i}"))
    return out


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--method", default="lora", choices=["lora", "full"])
    parser.add_argument("--setups", nargs="+", default=["1", "ddp", "fsdp", "ray"])
    args = parser.parse_args()
    config = replace(CONFIG, method=args.method, lr=2e-2 if args.method == "lora" else 2e-3)
    curves: dict[str, list[float]] = {}
    with tempfile.TemporaryDirectory() as tmp:
        tiny_llama(Path(tmp) / "tiny")
        blocks = make_blocks(examples(45), config.seq_len, pack=False)
        for setup in args.setups:
            shard = "full" if setup.endswith("fsdp") else "none"
            job = RankJob(str(Path(tmp) / "tiny"), "float32", config, blocks, [],
                          str(Path(tmp) / setup / "checkpoint.pt"), shard=shard)  # fmt: skip
            model = build_rank_model(job)
            threads = torch.get_num_threads()
            if setup == "1":
                trainer = Trainer(model, replace(config, batch_size=4), blocks, [])
            elif setup.startswith("ray"):
                from hearth.tune.ray_train import LOCAL, RayTrainer

                trainer = RayTrainer(model, job, 2, LOCAL)
            else:
                trainer = start_rank0(model, job, 2)
            result = trainer.run()
            torch.set_num_threads(threads)
            curves[setup] = [h["loss"] for h in result.history]
    names = list(curves)
    print("step " + " ".join(f"{n:>12}" for n in names))
    for step in range(len(curves[names[0]])):
        print(f"{step + 1:>4} " + " ".join(f"{curves[n][step]:12.6f}" for n in names))
    if "1" in curves:
        for name in names[1:]:
            worst = max(abs(a - b) for a, b in zip(curves[name], curves["1"], strict=True))
            print(f"max |{name} - 1 process| = {worst:.2e}")


if __name__ == "__main__":
    main()
