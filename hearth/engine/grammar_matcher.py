"""Grammar masks for sampling: a `StructuredSpec` compiled against a tokenizer's vocabulary
(llguidance), cached per (tokenizer, spec), one `GrammarMatcher` per sequence that masks
logits, follows the sampled tokens and says when the grammar is complete. Compilation runs
on a small thread pool (llguidance releases the GIL) so it never stalls other requests'
decoding. Knows nothing of the scheduler, the model or HTTP: the engine hands it logits
rows and sampled ids.
"""

from __future__ import annotations

import sys
import threading
import time
import weakref
from collections import OrderedDict
from collections.abc import Collection, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Protocol

import numpy as np

from hearth.engine.grammar_bounds import char_tokens, closing_path, scan_quotes
from hearth.engine.grammar_spec import StructuredSpec
from hearth.errors import GrammarError

if TYPE_CHECKING:
    import llguidance
    import tokenizers
    import torch


class TokenizerLike(Protocol):
    """hearth's `Tokenizer` as seen from here: the `tokenizers` backend and its EOS ids."""

    @property
    def backend(self) -> tokenizers.Tokenizer: ...

    @property
    def eos_ids(self) -> Collection[int]: ...


@dataclass
class GrammarStats:
    """Counters the engine's metrics read (all monotonic; thread-safe updates)."""

    constrained_requests: int = 0  # matchers handed out (one per constrained sequence)
    compiles: int = 0  # cache misses: grammars compiled against a vocabulary
    cache_hits: int = 0
    compile_seconds: float = 0.0  # total time spent compiling
    mask_steps: int = 0  # rows masked (one per constrained sequence per decode step)
    mask_seconds: float = 0.0  # total time computing + applying masks
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False, compare=False)

    @property
    def mean_mask_seconds(self) -> float:
        """Mean mask time per constrained sequence per step."""
        return self.mask_seconds / self.mask_steps if self.mask_steps else 0.0

    def add(self, **deltas: float) -> None:
        with self._lock:
            for name, delta in deltas.items():
                setattr(self, name, getattr(self, name) + delta)

    def snapshot(self) -> dict[str, float]:
        with self._lock:
            return {
                "constrained_requests": self.constrained_requests,
                "compiles": self.compiles,
                "cache_hits": self.cache_hits,
                "compile_seconds": self.compile_seconds,
                "mask_steps": self.mask_steps,
                "mask_seconds": self.mask_seconds,
                "mean_mask_seconds": self.mean_mask_seconds,
            }


# how close to the end of its budget a constrained sequence's tokens are checked against
# the closing path (grammar_bounds.closing_path)
BUDGET_SLACK = 8


class GrammarMatcher:
    """The grammar state of one sequence. Not thread-safe: one sequence, one thread."""

    def __init__(self, compiler: GrammarCompiler, matcher: llguidance.LLMatcher) -> None:
        self.compiler = compiler
        self._m = matcher
        self._num_accepted = 0
        # (inside a JSON string, after a backslash) after each accepted token, for the
        # closing walk's order of preference; [0] is the start
        self._quotes: list[tuple[bool, bool]] = [(False, False)]
        # closing path from the current state: (num_accepted, path or None)
        self._closing: tuple[int, list[int] | None] | None = None
        # closing path after the token last checked by `fit_budget`: (token, path)
        self._next_closing: tuple[int, list[int] | None] | None = None
        # (num_accepted, closing path length) of the last successful walk
        self._walked: tuple[int, int] | None = None

    def fill_mask(self, logits_row: torch.Tensor) -> None:
        """Set every token the grammar forbids next to -inf, in place. `logits_row`: (V,),
        V may exceed the tokenizer's vocabulary (padded LM heads): the padding is masked."""
        self.compiler.apply_masks(logits_row.unsqueeze(0), [self])

    def accept(self, token_id: int) -> None:
        """Advance past a sampled token; GrammarError if the grammar forbids it (the
        sampler ignored the mask: an engine bug, or a token forced from outside)."""
        if not self._m.consume_token(int(token_id)):
            raise GrammarError(
                f"token {token_id} is not allowed by the grammar here ({self._m.get_error()}); "
                "sample from masked logits"
            )
        self._num_accepted += 1
        data = self.compiler._llt.decode_bytes([int(token_id)])
        self._quotes.append(scan_quotes(self._quotes[-1], data))
        nxt, self._next_closing = self._next_closing, None
        self._closing = (self._num_accepted, nxt[1]) if nxt and nxt[0] == token_id else None

    def is_finished(self) -> bool:
        """True once the grammar cannot continue (only EOS may follow) or EOS was taken:
        the engine can stop the sequence here."""
        return bool(self._m.is_stopped())

    def is_accepting(self) -> bool:
        """True if stopping now leaves a complete match (EOS is allowed)."""
        return bool(self._m.is_accepting())

    def rollback(self, num_tokens: int) -> None:
        """Undo the last `num_tokens` accepted tokens (speculative decoding, stop strings)."""
        if not 0 <= num_tokens <= self._num_accepted:
            raise ValueError(f"num_tokens must be in [0, {self._num_accepted}], got {num_tokens}")
        if not self._m.rollback(num_tokens):
            raise GrammarError(
                f"grammar rollback of {num_tokens} tokens failed: {self._m.get_error()}"
            )
        self._num_accepted -= num_tokens
        del self._quotes[len(self._quotes) - num_tokens :]
        self._closing = self._next_closing = self._walked = None

    def closing_path(self, limit: int) -> list[int] | None:
        """Tokens that complete the grammar from here (empty if it may end now), at most
        `limit`; None if none that short was found (grammar_bounds.closing_path)."""
        if self._closing is not None and self._closing[0] == self._num_accepted:
            path = self._closing[1]
            if path is not None and len(path) <= limit:
                return path
        path = self._walk(self._m, self._quotes[-1], limit)
        self._closing = (self._num_accepted, path)
        self._walked = (self._num_accepted, len(path)) if path is not None else None
        return path

    def fit_budget(self, token_id: int, num_left: int) -> int:
        """`token_id` if the output can still be completed after it within the `num_left`
        tokens this sequence may still produce (this one included); otherwise the first
        token of the closing path from here (when that fits), so a constrained output
        always ends complete if its budget allows it at all."""
        if self._walked is not None:
            # far from the end, walk only now and then (a walk costs ~1-3 ms): assume a
            # token lengthens the closing path by at most 4 since the last walk
            since = self._num_accepted - self._walked[0]
            if since < 16 and num_left > self._walked[1] + BUDGET_SLACK + 4 * (since + 1):
                return token_id
        here = self.closing_path(num_left)
        if here is not None and len(here) + BUDGET_SLACK < num_left:
            # room to spare: no single token lengthens the closing path that much (and
            # the greedy walk is not exact, so it is not trusted to veto far from the end)
            return token_id
        after = self._m.deep_copy()
        if not after.consume_token(int(token_id)):
            return token_id  # accept() will report it
        data = self.compiler._llt.decode_bytes([int(token_id)])
        path = self._walk(after, scan_quotes(self._quotes[-1], data), num_left - 1)
        if path is not None:
            self._next_closing = (token_id, path)
            return token_id
        if not here:
            return token_id  # cannot fit either way (or may end now): leave the model be
        self._next_closing = (here[0], here[1:])
        return here[0]

    def _walk(self, m: llguidance.LLMatcher, quotes: tuple[bool, bool], limit: int) -> list[int] | None:
        return closing_path(m, self.compiler._llt, self.compiler.char_tokens, quotes, limit)

    @property
    def num_accepted(self) -> int:
        return self._num_accepted


class GrammarCompiler:
    """Compiles specs against one tokenizer's vocabulary; an LRU of compiled grammars keyed
    by spec; matchers are cheap copies (~10 µs) of the cached, never-advanced template."""

    def __init__(
        self,
        tokenizer: TokenizerLike | tokenizers.Tokenizer,
        *,
        eos_ids: Collection[int] | None = None,
        cache_size: int = 128,
        max_workers: int = 1,
    ) -> None:
        import llguidance

        if cache_size < 1:
            raise ValueError(f"cache_size must be >= 1, got {cache_size}")
        if max_workers < 1:
            raise ValueError(f"max_workers must be >= 1, got {max_workers}")
        backend = getattr(tokenizer, "backend", tokenizer)
        if eos_ids is None:
            eos_ids = getattr(tokenizer, "eos_ids", None)
        # a copy: padding/truncation settings must not leak into the vocabulary dump
        backend = copy_backend(backend)
        self.vocab_size: int = backend.get_vocab_size(with_added_tokens=True)
        # without eos_ids (a bare tokenizers.Tokenizer) llguidance infers EOS from the vocab
        self._llt = llguidance.LLTokenizer(
            backend.to_str(),
            n_vocab=self.vocab_size,
            eos_token=[int(i) for i in eos_ids] if eos_ids else None,
        )
        self.eos_ids: tuple[int, ...] = tuple(self._llt.eos_tokens)
        self.char_tokens = char_tokens(self._llt)  # for closing walks
        self.stats = GrammarStats()
        self._cache: OrderedDict[StructuredSpec, llguidance.LLMatcher] = OrderedDict()
        self._cache_size = cache_size
        self._lock = threading.Lock()
        self._pool = ThreadPoolExecutor(
            max_workers=max_workers, thread_name_prefix="hearth-grammar"
        )
        # llguidance's own Rust threads compute batched masks in parallel
        self._executor = llguidance.LLExecutor(num_threads=max(1, min(4, _cpu_count())))
        self._num_words = (self.vocab_size + 31) // 32

    def compile(self, spec: StructuredSpec) -> GrammarMatcher:
        """A fresh matcher for one sequence; GrammarError if the spec cannot be compiled
        against this vocabulary (e.g. a special token it names does not exist)."""
        with self._lock:
            template = self._cache.get(spec)
            if template is not None:
                self._cache.move_to_end(spec)
        if template is None:
            template = self._compile_template(spec)
        else:
            self.stats.add(cache_hits=1)
        self.stats.add(constrained_requests=1)
        return GrammarMatcher(self, template.deep_copy())

    def compile_async(self, spec: StructuredSpec) -> Future[GrammarMatcher]:
        """`compile` on the compiler's thread pool; the engine polls `.done()` and schedules
        the sequence once its matcher is ready, decoding others meanwhile."""
        return self._pool.submit(self.compile, spec)

    def _compile_template(self, spec: StructuredSpec) -> llguidance.LLMatcher:
        import llguidance

        start = time.perf_counter()
        matcher = llguidance.LLMatcher(self._llt, spec.backend_grammar, log_level=0)
        if matcher.is_error():
            raise GrammarError(
                f"the {spec.kind} cannot be compiled for this model's vocabulary: "
                f"{matcher.get_error()}"
            )
        self.stats.add(compiles=1, compile_seconds=time.perf_counter() - start)
        with self._lock:
            self._cache[spec] = matcher
            self._cache.move_to_end(spec)
            while len(self._cache) > self._cache_size:
                self._cache.popitem(last=False)
        return matcher

    def apply_masks(self, logits: torch.Tensor, matchers: Sequence[GrammarMatcher | None]) -> None:
        """Mask a batch in place. `logits`: (B, V) with V >= 1; `matchers[i]` constrains row i,
        None leaves the row untouched (unconstrained sequences batched with constrained)."""
        import torch

        if logits.dim() != 2 or logits.shape[0] != len(matchers):
            raise ValueError(
                f"logits must be (B, V) with B == len(matchers) = {len(matchers)}, "
                f"got {tuple(logits.shape)}"
            )
        rows = [i for i, m in enumerate(matchers) if m is not None]
        if not rows:
            return
        start = time.perf_counter()
        bitmask = torch.empty((len(rows), self._num_words), dtype=torch.int32)  # (k, W)
        if len(rows) == 1:
            # one row: compute on this thread (llguidance drops the GIL); waking the
            # executor's threads costs more than the mask itself
            only = matchers[rows[0]]
            assert only is not None
            only._m.unsafe_compute_mask_ptr(bitmask.data_ptr(), self._num_words * 4)
        else:
            pairs = [(matchers[i]._m, j) for j, i in enumerate(rows)]  # type: ignore[union-attr]
            self._executor.unsafe_compute_mask_ptr(
                pairs, bitmask.data_ptr(), self._num_words * 4, len(rows)
            )
        n = min(logits.shape[1], self.vocab_size)
        if logits.device.type == "cpu" and logits.dtype in (
            torch.float32, torch.float16, torch.float64
        ):
            _mask_rows_numpy(logits, rows, bitmask, n)
        else:
            _mask_rows_torch(logits, rows, bitmask, n)
        self.stats.add(mask_steps=len(rows), mask_seconds=time.perf_counter() - start)

    def close(self) -> None:
        self._pool.shutdown(wait=False, cancel_futures=True)





def _unpack_numpy(bitmask: torch.Tensor, n: int) -> np.ndarray:
    """(k, W) int32 bitmask, bit j of word w = token 32w + j → (k, n) uint8 of 0/1."""
    words = bitmask.numpy()
    if sys.byteorder != "little":
        words = words.byteswap()
    return np.unpackbits(words.view(np.uint8), axis=-1, bitorder="little", count=n)


def _mask_rows_numpy(logits: torch.Tensor, rows: list[int], bitmask: torch.Tensor, n: int) -> None:
    """CPU path, single-threaded numpy on a view of `logits` (B, V): an intra-op parallel
    torch kernel over one 50k row waits on its second thread, which on a busy machine
    costs milliseconds per step; numpy takes tens of microseconds."""
    # numpy writes through the view; inference-mode tensors allow it, autograd is not
    # involved (logits never require grad here)
    view = logits.detach().numpy()
    bits = _unpack_numpy(bitmask, n)  # (k, n)
    for j, i in enumerate(rows):
        row = view[i]
        np.putmask(row[:n], bits[j] == 0, -np.inf)
        row[n:] = -np.inf  # LM-head padding beyond the vocabulary


def _mask_rows_torch(logits: torch.Tensor, rows: list[int], bitmask: torch.Tensor, n: int) -> None:
    """Accelerator (or bf16) path: ship the 32x smaller bitmask, unpack on the device."""
    import torch

    shifts = torch.arange(32, dtype=torch.int32, device=logits.device)
    words = bitmask.to(logits.device, non_blocking=True)  # (k, W)
    allowed = ((words.unsqueeze(-1) >> shifts) & 1).bool().flatten(1)[:, :n]  # (k, n)
    index = torch.tensor(rows, device=logits.device)
    # the engine's logits come out of inference mode; in-place updates need it too
    with torch.inference_mode():
        selected = logits.index_select(0, index)  # (k, V)
        selected[:, :n].masked_fill_(~allowed, float("-inf"))
        selected[:, n:] = float("-inf")
        logits.index_copy_(0, index, selected)


def copy_backend(backend: Any) -> tokenizers.Tokenizer:
    import tokenizers

    if not isinstance(backend, tokenizers.Tokenizer):
        raise TypeError(
            f"tokenizer must be hearth's Tokenizer or a tokenizers.Tokenizer, got {type(backend)}"
        )
    copy = tokenizers.Tokenizer.from_str(backend.to_str())
    copy.no_padding()
    copy.no_truncation()
    return copy


def _cpu_count() -> int:
    import os

    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1


# One compiler per live tokenizer object, so every engine sharing a tokenizer shares its
# compiled grammars; weak keys let a dropped tokenizer take its cache with it.
_COMPILERS: weakref.WeakKeyDictionary[Any, GrammarCompiler] = weakref.WeakKeyDictionary()
_COMPILERS_LOCK = threading.Lock()


def compiler_for(tokenizer: TokenizerLike | tokenizers.Tokenizer) -> GrammarCompiler:
    """The shared `GrammarCompiler` of `tokenizer` (created on first use, ~0.2 s)."""
    with _COMPILERS_LOCK:
        compiler = _COMPILERS.get(tokenizer)
        if compiler is None:
            compiler = GrammarCompiler(tokenizer)
            _COMPILERS[tokenizer] = compiler
        return compiler


def compile_matcher(
    tokenizer: TokenizerLike | tokenizers.Tokenizer, spec: StructuredSpec
) -> GrammarMatcher:
    """A matcher for one sequence, from the compiled-grammar cache of `tokenizer`."""
    return compiler_for(tokenizer).compile(spec)


def compile_matcher_async(
    tokenizer: TokenizerLike | tokenizers.Tokenizer, spec: StructuredSpec
) -> Future[GrammarMatcher]:
    """`compile_matcher` on a background thread; never blocks the decode loop."""
    return compiler_for(tokenizer).compile_async(spec)


def apply_masks(logits: torch.Tensor, matchers: Sequence[GrammarMatcher | None]) -> None:
    """Mask a (B, V) batch in place; `matchers[i]` None leaves row i unconstrained."""
    compilers = {id(m.compiler): m.compiler for m in matchers if m is not None}
    if len(compilers) > 1:
        raise ValueError("matchers in one batch must come from one tokenizer's compiler")
    for compiler in compilers.values():
        compiler.apply_masks(logits, matchers)
