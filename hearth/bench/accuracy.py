"""What each `--quant` mode costs in accuracy, against the same model de-quantized to fp32:
perplexity on a fixed public-domain text shipped with hearth (the Gettysburg Address and
the opening of the Declaration of Independence), the distance of the logits at every
position (max and mean absolute difference), and how often the top-1 token agrees.

Each mode has a budget (BUDGETS) that `hearth bench --accuracy` reports against and the
tests hold it to. Knows nothing of engines or peers: it runs the decoder directly."""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from importlib import resources
from pathlib import Path
from typing import Any

import torch

TEXT_FILE = "gettysburg.txt"


@dataclass(frozen=True)
class Budget:
    """max_ppl_increase: perplexity may rise by at most this fraction over fp32;
    min_top1_agreement: share of positions whose argmax equals fp32's."""

    max_ppl_increase: float
    min_top1_agreement: float

    def __post_init__(self) -> None:
        if self.max_ppl_increase < 0:
            raise ValueError(f"max_ppl_increase must be >= 0, got {self.max_ppl_increase}")
        if not 0 <= self.min_top1_agreement <= 1:
            raise ValueError(f"min_top1_agreement must be in 0..1, got {self.min_top1_agreement}")


# measured on SmolLM2-135M Q4_1 (ppl +0.8% / -1.4%, top-1 95% / 93% for auto / int8),
# with headroom
BUDGETS = {
    "none": Budget(0.0, 1.0),
    "auto": Budget(0.05, 0.90),
    "int4": Budget(0.05, 0.90),
    "int8": Budget(0.05, 0.90),
}


def reference_text() -> str:
    return resources.files("hearth.bench").joinpath("data", TEXT_FILE).read_text()


def text_logits(decoder: Any, ids: list[int]) -> torch.Tensor:
    """(len(ids), vocab) float32 logits of one prefill over `ids` (one sequence, its KV
    cache in consecutive blocks)."""
    from hearth.model.batch import AttentionMetadata
    from hearth.model.kv_cache import allocate_kv_caches

    block_size, length = 16, len(ids)
    num_blocks = -(-length // block_size)
    param = decoder.model.norm.weight  # the activation dtype (embeddings may be int8)
    caches = allocate_kv_caches(decoder.config, num_blocks, block_size, param.dtype)
    meta = AttentionMetadata(
        query_lens=[length],
        context_lens=torch.tensor([length], dtype=torch.int32),
        slot_mapping=torch.arange(length, dtype=torch.int64),
        block_tables=torch.arange(num_blocks, dtype=torch.int32)[None],
        block_size=block_size,
    )
    positions = torch.arange(length, dtype=torch.int64)
    hidden = decoder(torch.tensor(ids), positions, meta, caches)
    return decoder.compute_logits(hidden).float()


def perplexity(logits: torch.Tensor, ids: list[int]) -> float:
    """exp(mean NLL) of ids[1:] given logits[:-1]."""
    logp = torch.log_softmax(logits[:-1], dim=-1)
    nll = -logp.gather(1, torch.tensor(ids[1:])[:, None]).mean()
    return math.exp(float(nll))


def compare(
    logits: torch.Tensor, reference: torch.Tensor, ids: list[int], mode: str
) -> dict[str, Any]:
    diff = (logits - reference).abs()
    ppl, ref_ppl = perplexity(logits, ids), perplexity(reference, ids)
    agree = float((logits.argmax(-1) == reference.argmax(-1)).float().mean())
    budget = BUDGETS[mode]
    return {
        "quant": mode,
        "perplexity": round(ppl, 4),
        "perplexity_fp32": round(ref_ppl, 4),
        "ppl_increase": round(ppl / ref_ppl - 1, 4),
        "logits_max_abs_diff": round(float(diff.max()), 4),
        "logits_mean_abs_diff": round(float(diff.mean()), 4),
        "top1_agreement": round(agree, 4),
        "budget": asdict(budget),
        "within_budget": ppl / ref_ppl - 1 <= budget.max_ppl_increase
        and agree >= budget.min_top1_agreement,
    }


def measure_accuracy(
    path: Path, modes: tuple[str, ...] = ("auto", "int8", "int4"), max_tokens: int = 512
) -> list[dict[str, Any]]:
    """One row per mode (plus "none" = fp32 itself, the reference) on the shipped text,
    cut to max_tokens."""
    from hearth.model.quant_load import load_decoder
    from hearth.tokenizer.loading import load_tokenizer

    ids = list(load_tokenizer(path).encode(reference_text()))[:max_tokens]
    with torch.inference_mode():
        reference = text_logits(load_decoder(path, "none").decoder, ids)
        rows = [compare(reference, reference, ids, "none")]
        for mode in modes:
            rows.append(
                compare(text_logits(load_decoder(path, mode).decoder, ids), reference, ids, mode)
            )
    return rows
