"""The tune scenario: hearth's LoRA training step against PEFT + transformers on the same
model file, the same token blocks in the same order, the same LoRA settings and initial
adapter, the same learning rate per step and the same torch thread count, in one command.
Each side runs in a process of its own (tune_worker.py: its peak RSS is its own), and the
runs alternate (hearth, peft, hearth, peft, ...) so a burst of load from other programs on
a shared machine skews both alike; the best tokens/s of each side counts, and the highest
peak RSS. The first optimizer step (allocations, first-touch of the weights) is left out of
the rate. Knows nothing of printing."""

from __future__ import annotations

import json
import random
import subprocess
import sys
import tempfile
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from hearth.config import load_settings
from hearth.errors import HearthError, OptionalDependencyError

__all__ = [
    "TUNE_METHODS",
    "TUNE_PEERS",
    "TuneBenchConfig",
    "bench_rows",
    "run_tune_bench",
    "summary",
]

TUNE_PEERS = ("peft",)
TUNE_METHODS = ("lora", "qlora", "full")
# common English words: text-like token statistics, so the loss curve means something
_WORDS = """
the of and to in is was for that on with as by at from his it an were are which this
be or has had first one their its new after who they two her she been other when
there all during into school time may years more most only over city some world
would where later up such used many can state about national out known university
united then made also river house music family team game water light road north
south film book war year people
""".split()  # noqa: SIM905 (a list literal of 90 words spans 90 lines once formatted)


@dataclass(frozen=True)
class TuneBenchConfig:
    """The issue's anchor by default: LoRA r16 alpha32 on the seven projections, 4 x
    512-token micro-batches per optimizer step, AdamW lr 2e-4, 2 threads. methods: hearth's
    (lora always; qlora and full measured beside it when named); rounds: how many times each
    side runs."""

    steps: int = 30
    micro_batches: int = 4
    seq_len: int = 512
    rank: int = 16
    alpha: float = 32.0
    lr: float = 2e-4
    threads: int = 2
    rounds: int = 2
    seed: int = 0
    targets: tuple[str, ...] = (
        "q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj",
    )  # fmt: skip
    methods: tuple[str, ...] = ("lora",)

    def __post_init__(self) -> None:
        for name in ("steps", "micro_batches", "seq_len", "rank", "threads", "rounds"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be >= 1, got {getattr(self, name)}")
        bad = [m for m in self.methods if m not in TUNE_METHODS]
        if bad or "lora" not in self.methods:
            raise ValueError(f"methods must include lora and be among {TUNE_METHODS}, got {bad}")


def bench_rows(tokenize: Any, count: int, seq_len: int, seed: int) -> list[list[int]]:
    """`count` blocks of exactly `seq_len` token ids: random-word sentences, tokenized and
    laid end to end."""
    rng = random.Random(seed)
    rows = []
    for _ in range(count):
        ids: list[int] = []
        while len(ids) < seq_len:
            words = [rng.choice(_WORDS) for _ in range(rng.randint(5, 30))]
            ids.extend(tokenize(" ".join(words).capitalize() + ". "))
        rows.append(ids[:seq_len])
    return rows


def _run_worker(spec: dict[str, Any]) -> dict[str, Any]:
    proc = subprocess.run(
        [sys.executable, "-m", "hearth.bench.tune_worker"],
        input=json.dumps(spec), capture_output=True, text=True, check=False,
    )  # fmt: skip
    if proc.returncode != 0:
        tail = proc.stderr.strip().splitlines()[-5:]
        raise HearthError(
            f"the {spec['engine']} tune bench worker failed (exit {proc.returncode}): "
            + " | ".join(tail)
        )
    return dict(json.loads(proc.stdout.strip().splitlines()[-1]))


def _check_peers(peers: tuple[str, ...]) -> None:
    if "peft" in peers:
        try:
            import peft  # noqa: F401
            import transformers  # noqa: F401
        except ImportError as exc:
            raise OptionalDependencyError(
                "--peer peft needs peft and transformers: pip install peft transformers gguf"
            ) from exc


def _summarize(
    engine: str, round_: int, out: dict[str, Any], tokens_per_step: int
) -> dict[str, Any]:
    times, cpu = out["step_seconds"], out["cpu_seconds"]
    timed = times[1:] or times  # the first step warms up
    timed_cpu = cpu[1:] or cpu
    return {
        "engine": engine,
        "round": round_,
        "tokens_per_s": round(tokens_per_step * len(timed) / sum(timed), 1),
        # on a shared machine the wall clock counts other programs' time; CPU seconds
        # (OpenMP workers sleep when idle: OMP_WAIT_POLICY=PASSIVE) count this side's work
        "tokens_per_cpu_s": round(tokens_per_step * len(timed_cpu) / sum(timed_cpu), 1),
        "step_seconds": [round(t, 3) for t in times],
        "cpu_seconds": [round(t, 3) for t in cpu],
        "losses": [round(v, 5) for v in out["losses"]],
        "peak_rss_mb": out["peak_rss_mb"],
        "baseline_rss_mb": out["baseline_rss_mb"],
        "loaded_rss_mb": out["loaded_rss_mb"],
    }


def run_tune_bench(
    path: Path, config: TuneBenchConfig, peers: tuple[str, ...], tokenize: Any
) -> dict[str, Any]:
    """The scenario's JSON-ready result. `tokenize(text) -> list[int]`: the model's tokenizer."""
    from hearth.bench.machine import machine_info

    _check_peers(peers)
    tokens_per_step = config.micro_batches * config.seq_len
    runs: list[dict[str, Any]] = []
    with tempfile.TemporaryDirectory(prefix="hearth-tune-bench-") as tmp:
        data = Path(tmp) / "rows.json"
        rows = bench_rows(
            tokenize, config.steps * config.micro_batches, config.seq_len, config.seed
        )
        data.write_text(json.dumps(rows))
        base = {
            **asdict(config), "path": str(path), "data": str(data),
            "init": str(Path(tmp) / "init.pt"),
        }  # fmt: skip
        engines = [(f"hearth-{m}" if m != "lora" else "hearth", m) for m in config.methods]
        engines += [(peer, "lora") for peer in peers]
        for round_ in range(config.rounds):
            for engine, method in engines:
                spec = {**base, "engine": engine, "method": method}
                runs.append(_summarize(engine, round_, _run_worker(spec), tokens_per_step))
    return {
        "scenario": "tune",
        "model": str(path),
        "machine": machine_info(config.threads, probe=False),
        "settings": {
            **asdict(config),
            "tokens_per_step": tokens_per_step,
            "dtype": "bfloat16",
            # both sides run under it (hearth's CLI sets PASSIVE unless the user chose)
            "omp_wait_policy": load_settings().omp_wait_policy or None,
        },
        "runs": runs,
        "summary": summary(runs),
    }


def summary(runs: list[dict[str, Any]]) -> dict[str, Any]:
    """Per engine: best tokens/s, highest peak RSS, the losses of its first run; and hearth
    against PEFT: the speed-up, the RSS ratio and the largest relative loss difference over
    the same steps."""
    engines: dict[str, dict[str, Any]] = {}
    for r in runs:
        e = engines.setdefault(
            r["engine"], {"tokens_per_s": 0.0, "tokens_per_cpu_s": 0.0, "peak_rss_mb": 0.0}
        )
        e["tokens_per_s"] = max(e["tokens_per_s"], r["tokens_per_s"])
        e["tokens_per_cpu_s"] = max(e["tokens_per_cpu_s"], r["tokens_per_cpu_s"])
        e["peak_rss_mb"] = max(e["peak_rss_mb"], r["peak_rss_mb"])
        e.setdefault("losses", r["losses"])
    out: dict[str, Any] = {"engines": engines}
    if "hearth" in engines and "peft" in engines:
        ours, theirs = engines["hearth"], engines["peft"]
        out["speedup_vs_peft"] = round(ours["tokens_per_s"] / theirs["tokens_per_s"], 2)
        out["cpu_speedup_vs_peft"] = round(ours["tokens_per_cpu_s"] / theirs["tokens_per_cpu_s"], 2)
        out["peak_rss_vs_peft"] = round(ours["peak_rss_mb"] / theirs["peak_rss_mb"], 2)
        out["max_loss_rel_diff"] = round(
            max(abs(a - b) / abs(b) for a, b in zip(ours["losses"], theirs["losses"], strict=True)),
            4,
        )
    return out
