"""Test helpers for the eval harness: a tiny random Llama (transformers) with a small
byte-level BPE trained on the evaluation data, wrapped three ways —
- `HFReferenceLM`: the LanguageModel computed in-process (lm-eval's HF rules),
- `make_completions_app`: an OpenAI-compatible `/v1/completions` server (echo + logprobs),
- `HFEngineStandIn`: the documented `LLM.generate(prompt ids, SamplingParams)` API with
  prompt logprobs, until hearth's engine lands.
Imported by tests under tests/eval and tests/cli (not a conftest: both need it)."""

from __future__ import annotations

import json
import os
import socket
import threading
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from hearth.engine.outputs import CompletionOutput, Logprob, RequestOutput
from hearth.eval.lm import GenerationRequest, cut_at_stops, encode_pair

# a few items per task, inside the repository (fixtures/README.md: sources, licenses)
DATA = Path(__file__).resolve().parent / "fixtures"
MMLU_SUBJECTS = 2  # the fixture's MMLU: abstract_algebra and high_school_physics, 4 items each


def full_data() -> Path | None:
    """The full evaluation data for the slow agreement tests: $HEARTH_EVAL_DATA, else
    ../shared/data beside the repository when it is there; None when neither is."""
    env = os.environ.get("HEARTH_EVAL_DATA")
    path = Path(env) if env else Path(__file__).resolve().parents[2] / ".." / "shared" / "data"
    return path.resolve() if (path / "mmlu" / "test.jsonl").is_file() else None


class TinyTokenizer:
    """Byte-level BPE (tokenizers) trained on a slice of the evaluation data."""

    def __init__(self, vocab_size: int = 1024) -> None:
        from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers

        tok = Tokenizer(models.BPE())
        tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
        tok.decoder = decoders.ByteLevel()
        trainer = trainers.BpeTrainer(
            vocab_size=vocab_size,
            initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
            show_progress=False,
        )
        texts = []
        for name in ("arc_challenge/train.jsonl", "gsm8k/test_subset100_seed1234.jsonl"):
            texts += (DATA / name).read_text(encoding="utf-8").split("\n")[:150]
        tok.train_from_iterator(texts, trainer)
        self.tok = tok

    @property
    def pieces(self) -> list[str]:
        if not hasattr(self, "_pieces"):
            self._pieces = [self.decode([i]) for i in range(self.vocab_size)]
        return self._pieces

    @property
    def vocab_size(self) -> int:
        return int(self.tok.get_vocab_size())

    def encode(self, text: str) -> list[int]:
        return list(self.tok.encode(text).ids)

    def encode_with_offsets(self, text: str) -> tuple[list[int], list[int]]:
        """Ids and each token's start offset, OpenAI style: a token starts where the
        previous one ended, so a leading space belongs to the token that carries it."""
        enc = self.tok.encode(text)
        starts = [0] + [end for _, end in enc.offsets[:-1]]
        return list(enc.ids), starts

    def decode(self, ids: Sequence[int]) -> str:
        return str(self.tok.decode(list(ids)))


def tiny_model(vocab_size: int, seed: int = 0) -> Any:
    from transformers import LlamaConfig, LlamaForCausalLM

    torch.manual_seed(seed)
    config = LlamaConfig(
        vocab_size=vocab_size,
        hidden_size=32,
        intermediate_size=64,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=2,
        max_position_embeddings=8192,
    )
    # eager attention: SDPA's CPU flash kernel costs ~2 ms for one query at head_dim 8
    config._attn_implementation = "eager"
    return LlamaForCausalLM(config).eval()


@contextmanager
def one_thread() -> Iterator[None]:
    """Run the tiny model on one thread: its matmuls are too small to split, and on a
    shared 2-core machine two threads spin against other processes (8 ms -> 380 ms per
    request measured here)."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(before)


@dataclass
class TokenStats:
    """Per prompt position p >= 1: log-probability of token p given tokens < p, its rank,
    and the most likely token there with its log-probability. Lists of length n - 1."""

    logprob: list[float]
    rank: list[int]
    top_id: list[int]
    top_logprob: list[float]


class PrefixScorer:
    """TokenStats for a token sequence, reusing the KV cache and the stats of the previous
    sequence up to their common prefix (a one-entry prefix cache: consecutive requests
    share few-shot contexts, as in an engine with prefix caching)."""

    def __init__(self, model: Any) -> None:
        self.model = model
        self.ids: list[int] = []
        self.cache: Any = None
        self.stats = TokenStats([], [], [], [])

    @torch.inference_mode()
    def score(self, ids: list[int]) -> TokenStats:
        with one_thread():
            return self._score(ids)

    def _score(self, ids: list[int]) -> TokenStats:
        common = 0
        for a, b in zip(self.ids, ids, strict=False):
            if a != b:
                break
            common += 1
        # the distribution after token common-1 is reused, but it now scores a different
        # next token: rerun from token common-1 (keeping tokens < common-1 cached)
        keep = max(0, min(common, len(ids) - 1) - 1)
        if keep == 0 or self.cache is None:
            out = self.model(torch.tensor([ids]), use_cache=True)
        else:
            self.cache.crop(keep - len(self.ids))  # transformers 5: crop(-n) drops n tokens
            out = self.model(torch.tensor([ids[keep:]]), past_key_values=self.cache, use_cache=True)
        logp = torch.log_softmax(out.logits[0, :-1].float(), dim=-1)  # (n - keep - 1, V)
        target = torch.tensor(ids[keep + 1 :])
        lp = logp.gather(1, target[:, None])[:, 0]
        rank = (logp > lp[:, None]).sum(-1) + 1
        top_lp, top_id = logp.max(-1)
        old = self.stats
        self.stats = TokenStats(
            old.logprob[:keep] + lp.tolist(),
            old.rank[:keep] + rank.tolist(),
            old.top_id[:keep] + top_id.tolist(),
            old.top_logprob[:keep] + top_lp.tolist(),
        )
        self.ids, self.cache = list(ids), out.past_key_values
        return self.stats


@torch.inference_mode()
def greedy(model: Any, tokenizer: TinyTokenizer, ids: list[int], max_tokens: int, until: Sequence[str]) -> str:
    with one_thread():
        return _greedy(model, tokenizer, ids, max_tokens, until)


def _greedy(model: Any, tokenizer: TinyTokenizer, ids: list[int], max_tokens: int, until: Sequence[str]) -> str:
    out = model(torch.tensor([ids]), use_cache=True)
    past, generated = out.past_key_values, []
    for _ in range(max_tokens):
        nxt = int(out.logits[0, -1].argmax())
        generated.append(nxt)
        text = tokenizer.decode(generated)
        if any(s in text for s in until):
            return cut_at_stops(text, until)
        out = model(torch.tensor([[nxt]]), past_key_values=past, use_cache=True)
        past = out.past_key_values
    return tokenizer.decode(generated)


class HFReferenceLM:
    """The LanguageModel computed directly with transformers (lm-eval's HF backend rules:
    encode_pair, sum of continuation logprobs, greedy = argmax at every position)."""

    def __init__(self, model: Any, tokenizer: TinyTokenizer) -> None:
        self.model, self.tokenizer = model, tokenizer
        self.scorer = PrefixScorer(model)

    def loglikelihood(self, requests: Sequence[tuple[str, str]]) -> list[tuple[float, bool]]:
        out = []
        for context, continuation in requests:
            ctx, cont = encode_pair(self.tokenizer.encode, context, continuation)
            stats = self.scorer.score(ctx + cont)
            n = len(cont)
            greedy_ok = stats.top_id[-n:] == cont
            out.append((sum(stats.logprob[-n:]), greedy_ok))
        return out

    def generate_until(self, requests: Sequence[GenerationRequest]) -> list[str]:
        return [
            greedy(self.model, self.tokenizer, self.tokenizer.encode(r.context), r.max_tokens, r.until)
            for r in requests
        ]


def make_completions_app(model: Any, tokenizer: TinyTokenizer, min_max_tokens: int = 0) -> Any:
    """A minimal OpenAI `/v1/completions`: text prompts (one or a list), echo with
    token_logprobs / top_logprobs / text_offset, greedy generation with stop strings.
    `min_max_tokens=1` imitates servers that reject max_tokens=0."""
    from fastapi import FastAPI
    from fastapi.responses import JSONResponse, Response

    app = FastAPI()
    app.state.requests = []
    scorer = PrefixScorer(model)

    @app.post("/v1/completions")
    def completions(body: dict[str, Any]) -> Any:
        app.state.requests.append(body)
        prompts = body["prompt"] if isinstance(body["prompt"], list) else [body["prompt"]]
        max_tokens = int(body.get("max_tokens", 16))
        if max_tokens < min_max_tokens:
            return JSONResponse({"error": {"message": "max_tokens must be at least 1"}}, status_code=400)
        stop = body.get("stop") or []
        stop = [stop] if isinstance(stop, str) else stop
        choices = []
        for index, prompt in enumerate(prompts):
            ids, starts = tokenizer.encode_with_offsets(prompt)
            text = greedy(model, tokenizer, ids, max_tokens, stop) if max_tokens > 0 else ""
            choice: dict[str, Any] = {"index": index, "text": (prompt + text) if body.get("echo") else text}
            if body.get("echo") and body.get("logprobs"):
                all_ids = ids + tokenizer.encode(text)[:max_tokens] if text else ids
                stats = scorer.score(all_ids)
                pieces = tokenizer.pieces  # id -> text, precomputed: decoding per token is slow
                choice["logprobs"] = {
                    "tokens": [pieces[i] for i in all_ids],
                    "token_logprobs": [None, *stats.logprob],
                    "top_logprobs": [
                        None,
                        *({pieces[t]: v} for t, v in zip(stats.top_id, stats.top_logprob, strict=True)),
                    ],
                    "text_offset": starts + [len(prompt)] * (len(all_ids) - len(ids)),
                }
            choices.append(choice)
        # a Response, not a dict: FastAPI's jsonable_encoder walks every logprob (slow)
        payload = {"object": "text_completion", "model": body.get("model"), "choices": choices}
        return Response(json.dumps(payload), media_type="application/json")

    return app


@contextmanager
def serve(app: Any) -> Iterator[str]:
    """Run `app` with uvicorn on 127.0.0.1 in a thread; yields the base URL."""
    import uvicorn

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="error"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 20
    while not server.started:
        if time.monotonic() > deadline:
            raise RuntimeError("test server did not start")
        time.sleep(0.02)
    try:
        yield f"http://127.0.0.1:{port}/v1"
    finally:
        server.should_exit = True
        thread.join(timeout=10)


class HFEngineStandIn:
    """`generate(list of prompt id lists, SamplingParams)` -> RequestOutputs with
    `prompt_logprobs` ({token: Logprob(logprob, rank)}, None first) and greedy text: the
    engine's documented API, computed with the tiny transformers model."""

    def __init__(self, model: Any, tokenizer: TinyTokenizer) -> None:
        self.model, self.tokenizer = model, tokenizer
        self.scorer = PrefixScorer(model)
        self.calls: list[int] = []  # prompts per generate call

    def generate(self, prompts: Sequence[list[int]], params: Any) -> list[RequestOutput]:
        self.calls.append(len(prompts))
        plist = list(params) if isinstance(params, (list, tuple)) else [params] * len(prompts)
        outs = []
        for n, (ids, sampling_params) in enumerate(zip(prompts, plist, strict=True)):
            plp: list[dict[int, Logprob] | None] | None = None
            if sampling_params.prompt_logprobs is not None:
                stats = self.scorer.score(list(ids))
                start = sampling_params.prompt_logprobs_start or 1
                plp = [None] * start
                for pos in range(start, len(ids)):
                    plp.append({ids[pos]: Logprob(stats.logprob[pos - 1], stats.rank[pos - 1])})
            candidates: list[dict[int, Logprob]] | None = None
            if sampling_params.logprob_token_ids:  # the candidates' logprobs after the prompt
                entry = {}
                for tok in sampling_params.logprob_token_ids:
                    stats = self.scorer.score([*ids, tok])
                    entry[tok] = Logprob(stats.logprob[-1], stats.rank[-1])
                candidates = [entry]
            text = (
                ""
                if sampling_params.prompt_logprobs is not None or candidates  # scoring
                else greedy(self.model, self.tokenizer, list(ids), sampling_params.max_tokens or 16, sampling_params.stop)
            )
            outs.append(
                RequestOutput(
                    request_id=str(n),
                    prompt=None,
                    prompt_token_ids=list(ids),
                    outputs=[
                        CompletionOutput(
                            index=0, text=text, token_ids=[], finish_reason="stop", logprobs=candidates
                        )
                    ],
                    finished=True,
                    prompt_logprobs=plp,
                )
            )
        return outs


def save_tiny_folder(model: Any, tokenizer: TinyTokenizer, folder: Path) -> Path:
    """The tiny model as a Hugging Face folder hearth's engine loads (config.json,
    safetensors, tokenizer.json): `hearth eval FOLDER --backend hearth` runs on it."""
    folder.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(str(folder))
    tokenizer.tok.save(str(folder / "tokenizer.json"))
    return folder
