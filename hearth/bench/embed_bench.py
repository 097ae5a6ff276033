"""The embed scenario: hearth's Embedder against sentence-transformers' `encode` on the same
model folder, the same sentences and the same torch thread count, in one process and one
command. 1,000 sentences of mixed length (10-200 tokens); sentences/s of each, their ratio
and the per-sentence cosine similarity between the two (the check that hearth computes
the same vectors). "hearth" is the default road (dtype auto: bfloat16 projections with a
float32 residual stream where the CPU and the model's vectors allow, see
docs/decisions/embed-bf16-accuracy.md), "hearth-float32" the
reference road (reported separately when auto chose another dtype). Runs alternate
(hearth, peer, hearth, peer) and the best of each
counts, so a burst of load from other programs on a shared machine skews both alike.
Knows nothing of printing."""

from __future__ import annotations

import random
import time
from pathlib import Path
from typing import Any

from hearth.errors import OptionalDependencyError

EMBED_PEERS = ("sentence-transformers",)
PEER_BATCH_SIZE = 32  # sentence-transformers' encode() default
# common English words (one WordPiece token each in BERT's uncased vocabulary, mostly)
_WORDS = ["the", "of", "and", "to", "in", "is", "was", "for", "that", "on", "with", "as", "by", "at", "from", "his", "it", "an", "were", "are", "which", "this", "be", "or", "has", "had", "first", "one", "their", "its", "new", "after", "who", "they", "two", "her", "she", "been", "other", "when", "there", "all", "during", "into", "school", "time", "may", "years", "more", "most", "only", "over", "city", "some", "world", "would", "where", "later", "up", "such", "used", "many", "can", "state", "about", "national", "out", "known", "university", "united", "then", "made", "also", "river", "house", "music", "family", "team", "game", "water", "light", "road", "north", "south", "film", "book", "war", "year", "people"]


def mixed_sentences(count: int, seed: int, tokenize: Any) -> list[str]:
    """`count` sentences whose token counts (with special tokens) spread over 10..200."""
    rng = random.Random(seed)
    out = []
    for _ in range(count):
        target = rng.randint(10, 200)
        words = [rng.choice(_WORDS) for _ in range(max(1, target - 2))]
        while len(words) > 1 and tokenize(" ".join(words)) > target:
            words.pop()
        out.append(" ".join(words))
    return out


def _peer(path: Path) -> Any:
    try:
        from sentence_transformers import SentenceTransformer
    except ImportError as exc:
        raise OptionalDependencyError(
            "--peer sentence-transformers needs sentence-transformers: "
            "pip install sentence-transformers"
        ) from exc
    return SentenceTransformer(str(path), device="cpu")


def run_embed_bench(
    path: Path, threads: int, peers: tuple[str, ...], count: int = 1000, repeats: int = 2
) -> dict[str, Any]:
    """The scenario's JSON-ready result."""
    import torch

    from hearth.bench.machine import machine_info
    from hearth.engine.embedder import Embedder

    if threads > 0:
        torch.set_num_threads(threads)
    embedder = Embedder.load(path)  # dtype auto: what users get
    ours = {"hearth": embedder}
    if embedder.dtype != torch.float32:
        ours["hearth-float32"] = Embedder.load(path, torch.float32)
    sentences = mixed_sentences(
        count, 0, lambda t: len(embedder.tokenize([t], truncate=True).ids[0])
    )
    lens = embedder.tokenize(sentences, truncate=True).counts
    peer = _peer(path) if "sentence-transformers" in peers else None
    for one in ours.values():
        one.embed(sentences[:32], truncate=True)  # warm-up
    if peer is not None:
        peer.encode(sentences[:32], batch_size=PEER_BATCH_SIZE)
    times: dict[str, list[float]] = {name: [] for name in ours}
    times["sentence-transformers"] = []
    vectors: dict[str, Any] = {}
    for _ in range(repeats):
        for name, one in ours.items():
            start = time.perf_counter()
            vectors[name], _ = one.embed(sentences, truncate=True)
            times[name].append(time.perf_counter() - start)
        if peer is not None:
            start = time.perf_counter()
            vectors["peer"] = peer.encode(
                sentences, batch_size=PEER_BATCH_SIZE, convert_to_tensor=True
            )
            times["sentence-transformers"].append(time.perf_counter() - start)
    runs: list[dict[str, Any]] = [
        {
            "engine": engine,
            "dtype": str(ours[engine].dtype).removeprefix("torch.")
            if engine in ours
            else "float32",
            "batch_size": PEER_BATCH_SIZE if engine == "sentence-transformers" else None,
            "seconds": [round(s, 3) for s in secs],
            "sentences_per_s": round(count / min(secs), 1),
        }
        for engine, secs in times.items()
        if secs
    ]
    rate = {r["engine"]: r["sentences_per_s"] for r in runs}
    result: dict[str, Any] = {
        "scenario": "embed",
        "model": str(path),
        "machine": machine_info(torch.get_num_threads(), probe=False),
        "threads": torch.get_num_threads(),
        "sentences": count,
        "tokens": {"total": sum(lens), "min": min(lens), "max": max(lens)},
        "runs": runs,
        "dtype": str(embedder.dtype).removeprefix("torch."),
        "ratio": None,
        "min_cosine": None,
        "ratio_float32": None,
        "min_cosine_float32": None,
    }
    if peer is not None:
        theirs = vectors["peer"].float()
        for name, key in (("hearth", ""), ("hearth-float32", "_float32")):
            if name not in vectors:
                continue
            result["ratio" + key] = round(rate[name] / rate["sentence-transformers"], 2)
            cos = torch.nn.functional.cosine_similarity(vectors[name].float(), theirs)
            result["min_cosine" + key] = round(cos.min().item(), 7)
    return result
