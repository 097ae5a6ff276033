"""Embedding and reranking models: tokenize, pack, run the encoder, pool. An `Embedder` is
loaded from an embedding or rerank folder (a sentence-transformers folder or a
cross-encoder) and computes vectors (`embed`) or relevance scores (`rerank`) for a batch of
texts. Knows nothing of HTTP.

Batches are padding-free: inputs are sorted by length and packed end to end into forwards
of at most `max_batch_tokens` tokens, so a 10-token sentence next to a 500-token one costs
10 tokens, not 500. The weights load once, in float32; the projections' dtype is chosen
once, at load (`load`, dtype None = auto: bfloat16 projections, with the residual stream,
norms, softmax and pooling in float32, where the CPU multiplies bfloat16 natively and the
model's vectors stay within the bar of its float32 ones; see
docs/decisions/embed-bf16-accuracy.md). Not thread-safe: callers serialize (the async
wrapper runs one call at a time on its worker thread)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import torch
from tokenizers import Encoding
from tokenizers import Tokenizer as Backend

from hearth.errors import ContextLengthError, InvalidParameterError, UnsupportedModelError
from hearth.model.cpu.encoder_ops import encoder_ops
from hearth.model.cpu.native_build import cpu_flags
from hearth.model.layers.encoder import Encoder, EncoderOps
from hearth.model.layers.pooling import pool, truncate_dimensions
from hearth.weights.hf import SafetensorsTensors
from hearth.weights.sentence_transformers import EmbeddingModelSpec, read_embedding_folder

# tokens per forward: large enough for efficient matmuls, small enough that a forward's
# activations (tokens x intermediate_size floats) stay a few tens of MB
MAX_BATCH_TOKENS = 4096
# bounds of one call (as the generation engine's embed has)
MAX_INPUTS = 2048
# auto dtype: bfloat16 projections only where the vectors keep this cosine to the float32
# ones (the bar for equality with the reference), checked at load on PROBE_TEXTS
MIN_COSINE = 0.9999
# CPU features with native bfloat16 products (AVX512-BF16 dot products, AMX tiles)
BF16_FLAGS = ("avx512_bf16", "amx_bf16")
_PROBE = (
    "the quick brown fox jumps over the lazy dog while a river runs north past the old "
    "house where the family kept music books and maps of the world since the war years"
)
_PROBE_WORDS = _PROBE.split()
# ~500 tokens, so the check costs two small forwards: 6 to ~380 words (the last one cut to
# the model's limit: long inputs are where roundings add up), an empty text, emoji, CJK
PROBE_TEXTS = (
    *(" ".join(_PROBE_WORDS[(7 * i) % 11 :][:n]) for i, n in enumerate((6, 32))),
    " ".join(_PROBE_WORDS * 3),
    " ".join(_PROBE_WORDS[5:] * 14),
    "",
    "Hello, world! 🌍",
    "数据 and 123 numbers",
)


@dataclass(frozen=True)
class Tokenized:
    ids: list[list[int]]
    type_ids: list[list[int]]

    @property
    def counts(self) -> list[int]:
        return [len(one) for one in self.ids]


def _backend(folder: Path, max_len: int | None) -> Backend:
    path = folder / "tokenizer.json"
    if not path.is_file():
        raise UnsupportedModelError(
            f"{folder.name} has no tokenizer.json; hearth reads fast-tokenizer files only"
        )
    tok = Backend.from_file(str(path))
    tok.no_padding()  # a saved tokenizer.json may pad to a fixed length: packing needs none
    if max_len is None:
        tok.no_truncation()
    else:
        tok.enable_truncation(max_len, strategy="longest_first")
    return tok


def auto_dtype(kind: str) -> torch.dtype:
    """The projection dtype auto tries: bfloat16 for embedding models where the CPU has
    native bfloat16 products (about twice float32's rate), else float32. Rerank scores stay
    float32: their bar (1e-4 of the cross-encoder's score) is below bfloat16's precision."""
    flags = cpu_flags().split()
    if kind == "embedding" and any(f in flags for f in BF16_FLAGS):
        return torch.bfloat16
    return torch.float32


def _network(spec: EmbeddingModelSpec, folder: Path, ops: EncoderOps) -> Encoder:
    """The encoder with its float32 parameters (the projections float32 too)."""
    assert spec.encoder is not None
    network = Encoder(spec.encoder, ops)
    network.load_hf(SafetensorsTensors(folder, torch.float32), spec.tensor_prefix)
    return network.eval()


class Embedder:
    """spec: what the folder says; network: the encoder; `max_len`: the longest input."""

    def __init__(
        self,
        spec: EmbeddingModelSpec,
        network: Encoder,
        folder: Path,
        max_batch_tokens: int = MAX_BATCH_TOKENS,
    ) -> None:
        self.spec = spec
        self.network = network
        self.max_batch_tokens = max_batch_tokens
        self.max_len = spec.max_seq_length
        self._tok = _backend(folder, None)
        self._tok_cut = _backend(folder, self.max_len)
        # where a text's tokens go between the special tokens the tokenizer adds
        probe = self._tok.encode("a")
        content = [i for i, s in enumerate(probe.special_tokens_mask) if not s]
        self._prefix = probe.ids[: content[0]] if content else []
        self._suffix = probe.ids[content[-1] + 1 :] if content else []

    @classmethod
    def load(cls, folder: Path, dtype: torch.dtype | None = None) -> Embedder:
        """dtype: the projections' dtype (the rest stays float32); None: auto (see
        `auto_dtype`: bfloat16 where it keeps MIN_COSINE to the float32 vectors of
        PROBE_TEXTS, checked here on the one loaded weight set); torch.float32 is the
        reference."""
        spec = read_embedding_folder(folder)
        if spec.encoder is None:
            raise UnsupportedModelError(
                f"{folder.name}: decoder-based embedding models load through the engine"
            )
        embedder = cls(spec, _network(spec, folder, encoder_ops()), folder)
        want = dtype or auto_dtype(spec.kind)
        if want == torch.float32:
            return embedder
        reference = embedder.embed(PROBE_TEXTS, truncate=True)[0] if dtype is None else None
        embedder.network.set_projection_dtype(want)
        if reference is not None and not embedder.agrees_with(reference):
            embedder.network.set_projection_dtype(torch.float32)
        return embedder

    def agrees_with(self, reference: torch.Tensor) -> bool:
        """Whether this embedder's vectors of PROBE_TEXTS keep MIN_COSINE to `reference`
        (the float32 vectors of PROBE_TEXTS)."""
        ours = self.embed(PROBE_TEXTS, truncate=True)[0]
        cos = torch.nn.functional.cosine_similarity(ours, reference)
        return bool(cos.min() >= MIN_COSINE)

    @property
    def dtype(self) -> torch.dtype:
        """The projections' dtype (the residual stream, norms and pooling are float32)."""
        return self.network.projection_dtype

    @property
    def kind(self) -> str:
        return self.spec.kind

    # -- tokens -------------------------------------------------------------------------
    def tokenize(self, inputs: Sequence[str | Sequence[int]], truncate: bool) -> Tokenized:
        """Token ids (with the model's special tokens) of texts or of raw token ids; texts get
        the model's default prompt first (token ids are taken as they are)."""
        prompt = self.spec.default_prompt
        texts = [(i, prompt + t) for i, t in enumerate(inputs) if isinstance(t, str)]
        tok = self._tok_cut if truncate else self._tok
        encoded: dict[int, Encoding] = dict(
            zip((i for i, _ in texts), tok.encode_batch([t for _, t in texts]), strict=True)
        )
        ids: list[list[int]] = []
        for i, one in enumerate(inputs):
            if i in encoded:
                ids.append(list(encoded[i].ids))
            else:
                raw = [int(t) for t in one]
                if truncate:
                    raw = raw[: max(0, self.max_len - len(self._prefix) - len(self._suffix))]
                ids.append([*self._prefix, *raw, *self._suffix])
            self._check_length(i, len(ids[-1]))
        return Tokenized(ids, [[0] * len(one) for one in ids])

    def tokenize_pairs(self, query: str, docs: Sequence[str], truncate: bool) -> Tokenized:
        tok = self._tok_cut if truncate else self._tok
        encoded = tok.encode_batch([(query, d) for d in docs])
        for i, enc in enumerate(encoded):
            self._check_length(i, len(enc.ids), "query and document")
        return Tokenized([list(e.ids) for e in encoded], [list(e.type_ids) for e in encoded])

    def _check_length(self, i: int, n: int, what: str = "input") -> None:
        if n > self.max_len:
            raise ContextLengthError(
                n,
                self.max_len,
                f"{what} [{i}] is {n} tokens but the model takes at most {self.max_len}; "
                "shorten it, or send truncate: true to cut it to fit",
            )

    # -- compute ------------------------------------------------------------------------
    @torch.inference_mode()
    def _forward(self, batch: Tokenized, head: bool) -> torch.Tensor:
        """Pooled vectors (S, D) or, with `head`, the classifier's logits (S, labels), in
        the inputs' order; longest first, packed into forwards of max_batch_tokens."""
        order = sorted(range(len(batch.ids)), key=lambda i: -len(batch.ids[i]))
        out: list[torch.Tensor | None] = [None] * len(order)
        start = 0
        while start < len(order):
            group = [order[start]]
            size = len(batch.ids[order[start]])
            while start + len(group) < len(order):
                n = len(batch.ids[order[start + len(group)]])
                if size + n > self.max_batch_tokens:
                    break
                group.append(order[start + len(group)])
                size += n
            start += len(group)
            lens = [len(batch.ids[i]) for i in group]
            ids = torch.tensor([t for i in group for t in batch.ids[i]], dtype=torch.int64)
            types = torch.tensor([t for i in group for t in batch.type_ids[i]], dtype=torch.int64)
            hidden = self.network(ids, types, lens)
            rows = (
                self.network.classify(hidden, lens).float()
                if head
                else pool(hidden, lens, self.spec.pooling)
            )
            for i, row in zip(group, rows, strict=True):
                out[i] = row
        return torch.stack([row for row in out if row is not None])

    def vectors(self, batch: Tokenized) -> torch.Tensor:
        """The pooled (and normalised, if the model says so) vectors (S, D) of tokenized
        inputs."""
        return self._forward(batch, head=False)

    def embed(
        self,
        inputs: Sequence[str | Sequence[int]],
        truncate: bool = False,
        dimensions: int | None = None,
    ) -> tuple[torch.Tensor, list[int]]:
        """(vectors (S, D) float32, token counts) for texts or token ids."""
        if self.kind != "embedding":
            raise InvalidParameterError(
                "model", "this is a rerank model; use /v1/rerank (or .rerank) with it"
            )
        self._check_count(len(inputs))
        if dimensions is not None and not 1 <= dimensions <= self.spec.dimensions:
            raise InvalidParameterError(
                "dimensions",
                f"dimensions must be between 1 and {self.spec.dimensions} for this model, "
                f"got {dimensions}",
            )
        batch = self.tokenize(inputs, truncate)
        vectors = self.vectors(batch)
        if dimensions is not None and dimensions < vectors.shape[1]:
            vectors = truncate_dimensions(vectors, dimensions, self.spec.pooling.normalize)
        return vectors, batch.counts

    def rerank(
        self, query: str, documents: Sequence[str], truncate: bool = False
    ) -> tuple[list[float], list[int]]:
        """(relevance score per document, token count per pair)."""
        if self.kind != "rerank":
            raise InvalidParameterError(
                "model", "this is an embedding model, not a reranker; give a rerank model"
            )
        self._check_count(len(documents), "documents")
        batch = self.tokenize_pairs(query, documents, truncate)
        logits = self._forward(batch, head=True)[:, 0]
        if self.spec.activation == "sigmoid":
            logits = torch.sigmoid(logits)
        return logits.tolist(), batch.counts

    def _check_count(self, n: int, what: str = "input") -> None:
        if n == 0:
            raise InvalidParameterError(what, f"{what}: give at least one text")
        if n > MAX_INPUTS:
            raise InvalidParameterError(
                what, f"{what}: at most {MAX_INPUTS} per call, got {n}; split the call"
            )
