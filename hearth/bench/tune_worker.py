"""One side of the tune bench, in a process of its own (`python -m hearth.bench.tune_worker`,
a JSON spec on stdin, a JSON result on stdout), so each side's peak RSS is its own:

- hearth: the stored GGUF loaded as `hearth tune` loads it (bf16 weights kept bf16 for
  lora, the 4-bit blocks kept for qlora, fp32 for full), `apply_lora`, and the real
  `Trainer` (its schedule, clipping, chunked loss);
- peft: transformers' model de-quantized from the same GGUF (fp32 weights), PEFT's
  `get_peft_model` with the same LoRA settings and the same initial A/B (hearth's first
  run writes them), bf16 autocast, torch's AdamW with the same learning rate per step, the
  same micro-batches in the same order and the same gradient clipping.

Both sides: batch_size 1 x `micro_batches` per optimizer step, every token trained, the
step's loss the mean over its tokens. Knows nothing of printing."""

from __future__ import annotations

import json
import resource
import sys
import time
from pathlib import Path
from typing import Any

_PEFT_PREFIX = "base_model.model."


def _rss_mb() -> float:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return round(int(line.split()[1]) / 1024, 1)
    return 0.0


def _peak_rss_mb() -> float:
    return round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1)  # KiB on Linux


def _train_config(spec: dict[str, Any]) -> Any:
    from hearth.model.layers.lora import LoraConfig
    from hearth.tune.train_config import TrainConfig

    return TrainConfig(
        method=spec["method"],
        lora=LoraConfig(rank=spec["rank"], alpha=spec["alpha"], targets=tuple(spec["targets"])),
        max_steps=spec["steps"],
        lr=spec["lr"],
        batch_size=1,
        grad_accum=spec["micro_batches"],
        seq_len=spec["seq_len"],
        seed=spec["seed"],
    )


def _blocks(spec: dict[str, Any]) -> list[Any]:
    from hearth.tune.packing import Block
    from hearth.tune.tokenize import TokenizedExample

    rows = json.loads(Path(spec["data"]).read_text())
    return [Block((TokenizedExample(tuple(ids), (True,) * len(ids), "bench"),)) for ids in rows]


def run_hearth(spec: dict[str, Any]) -> dict[str, Any]:
    import torch

    from hearth.model.layers.lora import lora_state_dict
    from hearth.tune.adapter_files import load_adapter_weights
    from hearth.tune.trainer import StepReport, Trainer
    from hearth.tune.training_model import training_model

    config = _train_config(spec)
    model = training_model(Path(spec["path"]), config, torch.bfloat16)
    init = Path(spec["init"])
    if config.method != "full":
        if init.exists():
            load_adapter_weights(model, torch.load(init))
        else:  # the first hearth run gives both sides their starting adapter
            torch.save(lora_state_dict(model), init)
    loaded_rss = _rss_mb()
    times: list[float] = []
    cpu: list[float] = []
    losses: list[float] = []
    last = (time.perf_counter(), time.process_time())

    def on_step(report: StepReport) -> None:
        nonlocal last
        now = (time.perf_counter(), time.process_time())
        times.append(now[0] - last[0])
        cpu.append(now[1] - last[1])
        losses.append(report.loss)
        last = now

    trainer = Trainer(model, config, _blocks(spec))
    last = (time.perf_counter(), time.process_time())
    trainer.run(on_step)
    return {
        "losses": losses,
        "step_seconds": times,
        "cpu_seconds": cpu,
        "loaded_rss_mb": loaded_rss,
    }


def run_peft(spec: dict[str, Any]) -> dict[str, Any]:
    import torch
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM

    from hearth.tune.packing import micro_batches
    from hearth.tune.train_config import lr_at

    config = _train_config(spec)
    path = Path(spec["path"])
    base = AutoModelForCausalLM.from_pretrained(
        str(path.parent), gguf_file=path.name, dtype=torch.float32
    )
    model = get_peft_model(
        base,
        LoraConfig(
            r=spec["rank"], lora_alpha=spec["alpha"], lora_dropout=0.0,
            target_modules=list(spec["targets"]),
        ),
    )  # fmt: skip
    init: dict[str, torch.Tensor] = torch.load(spec["init"])
    params = dict(model.named_parameters())
    with torch.no_grad():
        for name, value in init.items():
            key = _PEFT_PREFIX + name.replace(".weight", ".default.weight")
            params[key].copy_(value)
    trainable = [p for p in model.parameters() if p.requires_grad]
    optimizer = torch.optim.AdamW(trainable, lr=config.lr, weight_decay=config.weight_decay)
    rows = json.loads(Path(spec["data"]).read_text())
    order = micro_batches(list(range(len(rows))), 1, config.seed, 0)
    loaded_rss = _rss_mb()
    model.train()
    times: list[float] = []
    cpu: list[float] = []
    losses: list[float] = []
    accum = config.grad_accum
    for step in range(config.max_steps):
        start, start_cpu = time.perf_counter(), time.process_time()
        for group in optimizer.param_groups:
            group["lr"] = lr_at(step, config.max_steps, config)
        batch = [
            torch.tensor([rows[i] for i in b]) for b in order[step * accum : (step + 1) * accum]
        ]
        total_tokens = sum(ids.numel() - ids.shape[0] for ids in batch)
        step_loss = 0.0
        for ids in batch:
            with torch.autocast("cpu", dtype=torch.bfloat16):
                out = model(input_ids=ids, labels=ids)  # mean over the shifted tokens
            loss = out.loss * ((ids.numel() - ids.shape[0]) / total_tokens)
            loss.backward()
            step_loss += float(loss.detach())
        if config.max_grad_norm is not None:
            torch.nn.utils.clip_grad_norm_(trainable, config.max_grad_norm)
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        times.append(time.perf_counter() - start)
        cpu.append(time.process_time() - start_cpu)
        losses.append(step_loss)
    return {
        "losses": losses,
        "step_seconds": times,
        "cpu_seconds": cpu,
        "loaded_rss_mb": loaded_rss,
    }


def run_spec(spec: dict[str, Any]) -> dict[str, Any]:
    import torch

    baseline = _rss_mb()  # the interpreter and torch, before any model is loaded
    torch.set_num_threads(int(spec["threads"]))
    result = run_peft(spec) if spec["engine"] == "peft" else run_hearth(spec)
    return {**result, "baseline_rss_mb": baseline, "peak_rss_mb": _peak_rss_mb()}


def main() -> None:
    spec = json.loads(sys.stdin.read())
    sys.stdout.write("\n" + json.dumps(run_spec(spec)) + "\n")


if __name__ == "__main__":
    main()
