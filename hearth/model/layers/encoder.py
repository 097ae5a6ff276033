"""The BERT-family encoder in plain PyTorch (BERT, RoBERTa / XLM-R, MiniLM, bge, e5):
learned absolute positions and token types, post-norm layers, GELU MLP, bidirectional
attention, and the optional sequence-classification head of a cross-encoder reranker.

Batches are packed: the tokens of all sequences lie in one (T, H) tensor with `lens` giving
each sequence's length, so projections, norms and the MLP never compute a pad token
(attention runs per run of equal lengths; see PackedLayout). The projections go through
`EncoderOps` (bias, GELU and the residual add fused into the matmul where a backend can;
plain PyTorch here). Parameter names are those of transformers' BertModel / RobertaModel
so a checkpoint loads 1:1. Knows nothing of files, tokenizers, CPU features or requests."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from hearth.weights.encoder_config import EncoderConfig

# A pack of more runs of equal length than this takes one padded, masked attention call
# instead of one call per run: on the 2-core machine one call per run (all-MiniLM, 100
# sorted sentences of 10-200 tokens, ~1 run per sequence) ran at 3.9 sentences/s against
# 7.2 padded (float32, same process); the kernel's fixed cost per call (a parallel region)
# outweighs the gather, scatter and pad it saves. So only a pack of one length skips them.
MAX_ATTENTION_RUNS = 1


class EncoderOps:
    """The encoder's projections in plain PyTorch, the reference every faster backend
    (cpu/encoder_ops.py) must equal. x (T, K), weight (N, K), bias (N,) -> (T, N)."""

    name = "torch"

    def linear(self, x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor) -> torch.Tensor:
        return F.linear(x, weight, bias)

    def linear_gelu(
        self, x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor, approximate: str
    ) -> torch.Tensor:
        return F.gelu(F.linear(x, weight, bias), approximate=approximate)

    def linear_add(
        self, x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor, residual: torch.Tensor
    ) -> torch.Tensor:
        """x @ weight.T + bias + residual (T, N), in residual's dtype where it is wider."""
        return F.linear(x, weight, bias) + residual

    def linear_add_norm(
        self,
        x: torch.Tensor,
        weight: torch.Tensor,
        bias: torch.Tensor,
        residual: torch.Tensor,
        norm: nn.LayerNorm,
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """A post-norm residual step: out = norm(x @ weight.T + bias + residual) (T, N) in
        residual's dtype, and out in x's dtype (the next projection's input). May reuse
        residual's memory: callers drop residual."""
        out = norm(self.linear_add(x, weight, bias, residual))
        return out, out.to(x.dtype)


class EncoderEmbeddings(nn.Module):
    def __init__(self, config: EncoderConfig) -> None:
        super().__init__()
        h = config.hidden_size
        self.word_embeddings = nn.Embedding(config.vocab_size, h)
        self.position_embeddings = nn.Embedding(config.max_position_embeddings, h)
        self.token_type_embeddings = nn.Embedding(config.type_vocab_size, h)
        self.LayerNorm = nn.LayerNorm(h, eps=config.layer_norm_eps)

    def forward(
        self, ids: torch.Tensor, positions: torch.Tensor, type_ids: torch.Tensor
    ) -> torch.Tensor:
        x = self.word_embeddings(ids) + self.token_type_embeddings(type_ids)
        x = x + self.position_embeddings(positions)
        return self.LayerNorm(x)  # (T, H)


class SelfAttention(nn.Module):
    def __init__(self, config: EncoderConfig) -> None:
        super().__init__()
        h = config.hidden_size
        self.num_heads = config.num_attention_heads
        self.query = nn.Linear(h, h)
        self.key = nn.Linear(h, h)
        self.value = nn.Linear(h, h)


class AttentionOutput(nn.Module):
    def __init__(self, config: EncoderConfig, d_in: int) -> None:
        super().__init__()
        self.dense = nn.Linear(d_in, config.hidden_size)
        self.LayerNorm = nn.LayerNorm(config.hidden_size, eps=config.layer_norm_eps)


class Attention(nn.Module):
    def __init__(self, config: EncoderConfig) -> None:
        super().__init__()
        self.self = SelfAttention(config)
        self.output = AttentionOutput(config, config.hidden_size)


class Intermediate(nn.Module):
    def __init__(self, config: EncoderConfig) -> None:
        super().__init__()
        self.dense = nn.Linear(config.hidden_size, config.intermediate_size)
        self.approximate = "tanh" if config.hidden_act == "gelu_tanh" else "none"


class EncoderLayer(nn.Module):
    def __init__(self, config: EncoderConfig) -> None:
        super().__init__()
        self.attention = Attention(config)
        self.intermediate = Intermediate(config)
        self.output = AttentionOutput(config, config.intermediate_size)
        # the four projections' (weight, bias) in the projection dtype (q, k and v as one
        # matmul), derived from the modules' parameters by `fuse()` after loading
        self.proj: LayerProjections | None = None

    def fuse(self, dtype: torch.dtype) -> None:
        """Build the projections' weights in `dtype` from the parameters (which stay in their
        own dtype: the residual stream, the norms and the softmax keep it)."""
        s, out = self.attention.self, self.attention.output

        def cast(*layers: nn.Linear) -> tuple[torch.Tensor, torch.Tensor]:
            # one layer: its own tensors where the dtype is theirs (no copy in float32)
            weight: torch.Tensor = layers[0].weight
            bias: torch.Tensor = layers[0].bias
            if len(layers) > 1:
                weight = torch.cat([one.weight for one in layers])
                bias = torch.cat([one.bias for one in layers])
            return weight.detach().to(dtype), bias.detach().to(dtype)

        self.proj = LayerProjections(
            qkv=cast(s.query, s.key, s.value),
            attn_out=cast(out.dense),
            ffn_in=cast(self.intermediate.dense),
            ffn_out=cast(self.output.dense),
        )

    def forward(
        self, x: torch.Tensor, x_low: torch.Tensor, layout: PackedLayout, ops: EncoderOps
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """x (T, H) in the parameters' dtype and x_low, the same in the projection dtype ->
        the layer's output as such a pair. Only the projections' inputs take the projection
        dtype (bfloat16 products, float32 sums inside the GEMM); their outputs are added to
        the residual stream in its own dtype and the norms run in it, so no bfloat16
        rounding accumulates across layers (docs/decisions/embed-bf16-accuracy.md)."""
        if self.proj is None:
            self.fuse(x.dtype)
        assert self.proj is not None
        p = self.proj
        t, h = x.shape
        nh = self.attention.self.num_heads
        rows = layout.pad(x_low)  # (T, H), or (S * L, H) in the padded view
        qkv = ops.linear(rows, *p.qkv)  # (rows, 3H)
        ctx = layout.attend(qkv.view(rows.shape[0], 3, nh, h // nh))  # (T, nh, hd)
        norm = self.attention.output.LayerNorm
        x, x_low = ops.linear_add_norm(ctx.reshape(t, h), *p.attn_out, x, norm)  # post-norm
        mid = ops.linear_gelu(x_low, *p.ffn_in, self.intermediate.approximate)  # (T, I)
        return ops.linear_add_norm(mid, *p.ffn_out, x, self.output.LayerNorm)


@dataclass(frozen=True)
class LayerProjections:
    """One layer's projections as (weight (N, K), bias (N,)) in the projection dtype."""

    qkv: tuple[torch.Tensor, torch.Tensor]
    attn_out: tuple[torch.Tensor, torch.Tensor]
    ffn_in: tuple[torch.Tensor, torch.Tensor]
    ffn_out: tuple[torch.Tensor, torch.Tensor]


class PackedLayout:
    """Where each sequence of a pack lies, for attention. Projections, norms and the MLP run
    on the packed (T, H) tensor. A run of consecutive sequences of equal length is already a
    (n, L, ...) view of the packed tensor: attention on it needs no gather, no mask and
    computes no pad. A pack of more runs than MAX_ATTENTION_RUNS gathers its sequences into
    one padded (S, L, ...) view (L = the longest) with the missing keys masked, runs one
    fused call and scatters the real rows back: one call beats many small ones (the
    kernel's fixed cost per call dominates at these sizes); a caller that packs sequences of
    similar length (sorted) keeps the padded view small. Built once per forward, shared by
    the layers."""

    def __init__(self, lens: Sequence[int], device: torch.device) -> None:
        self.lens = [int(n) for n in lens]
        self.longest = max(self.lens)
        # (first packed row, number of sequences, their length) of each run
        self.runs: list[tuple[int, int, int]] = []
        row = 0
        for n in self.lens:
            if self.runs and self.runs[-1][2] == n:
                start, count, _ = self.runs[-1]
                self.runs[-1] = (start, count + 1, n)
            else:
                self.runs.append((row, 1, n))
            row += n
        self.padded = len(self.runs) > MAX_ATTENTION_RUNS
        if not self.padded:
            return
        num = len(self.lens)
        pos = torch.arange(self.longest, device=device)
        counts = torch.tensor(self.lens, device=device)
        valid = pos[None, :] < counts[:, None]  # (S, L)
        starts = counts.cumsum(0) - counts
        # padded slot -> packed row (missing slots read row 0; their keys are masked)
        self.gather = torch.where(valid, starts[:, None] + pos[None, :], 0).reshape(-1)
        self.scatter = valid.reshape(-1).nonzero().squeeze(1)  # packed row -> padded slot
        mask = torch.zeros(num, 1, 1, self.longest, device=device)
        self.mask = mask.masked_fill(~valid[:, None, None, :], float("-inf"))

    def pad(self, x: torch.Tensor) -> torch.Tensor:
        """The layer input (T, H) in the rows attention reads: packed as it is, or gathered
        into the padded view (S * L, H). Gathering the input rather than q, k and v moves a
        third of the bytes; the q/k/v projection then computes the few pad rows (a sorted
        pack has few), whose queries are dropped and whose keys are masked."""
        return x.index_select(0, self.gather) if self.padded else x

    def attend(self, qkv: torch.Tensor) -> torch.Tensor:
        """qkv: (rows, 3, nh, hd) in `pad`'s rows -> (T, nh, hd) packed, bidirectional
        attention per sequence."""
        if self.padded:
            out = _attention(qkv, len(self.lens), self.longest, self.mask.to(qkv.dtype))
            return out.index_select(0, self.scatter)
        outs = [_attention(qkv[a : a + n * length], n, length, None) for a, n, length in self.runs]
        return outs[0] if len(outs) == 1 else torch.cat(outs)


def _attention(qkv: torch.Tensor, num: int, length: int, mask: torch.Tensor | None) -> torch.Tensor:
    """qkv (num * length, 3, nh, hd) of `num` sequences of `length` rows each -> their
    attention output (num * length, nh, hd)."""
    _, _, nh, hd = qkv.shape
    q, k, v = qkv.view(num, length, 3, nh, hd).permute(2, 0, 3, 1, 4)  # 3 x (S, nh, L, hd)
    out = F.scaled_dot_product_attention(q, k, v, attn_mask=mask)  # (S, nh, L, hd)
    return out.transpose(1, 2).reshape(num * length, nh, hd)


class EncoderBody(nn.Module):
    def __init__(self, config: EncoderConfig) -> None:
        super().__init__()
        self.layer = nn.ModuleList(EncoderLayer(config) for _ in range(config.num_hidden_layers))


class Pooler(nn.Module):
    def __init__(self, config: EncoderConfig) -> None:
        super().__init__()
        self.dense = nn.Linear(config.hidden_size, config.hidden_size)


class RobertaClassifier(nn.Module):
    def __init__(self, config: EncoderConfig) -> None:
        super().__init__()
        self.dense = nn.Linear(config.hidden_size, config.hidden_size)
        self.out_proj = nn.Linear(config.hidden_size, config.num_labels)


class Encoder(nn.Module):
    """`forward(ids, type_ids, lens)` -> the last layer's hidden states (T, H);
    `classify(hidden, lens)` -> the classification head's logits (S, num_labels)."""

    def __init__(self, config: EncoderConfig, ops: EncoderOps | None = None) -> None:
        super().__init__()
        self.config = config
        # the projections' backend, chosen once by whoever builds the encoder
        self.ops = ops or EncoderOps()
        self.embeddings = EncoderEmbeddings(config)
        self.encoder = EncoderBody(config)
        self.pooler: Pooler | None = None
        self.classifier: nn.Module | None = None
        if config.num_labels and config.classifier == "bert":
            self.pooler = Pooler(config)
            self.classifier = nn.Linear(config.hidden_size, config.num_labels)
        elif config.num_labels:
            self.classifier = RobertaClassifier(config)

    def positions(self, lens: Sequence[int], device: torch.device) -> torch.Tensor:
        """Each sequence counts its positions from position_offset. (T,) int64"""
        off = self.config.position_offset
        return torch.cat([torch.arange(off, off + n, device=device) for n in lens])

    def forward(
        self, ids: torch.Tensor, type_ids: torch.Tensor, lens: Sequence[int]
    ) -> torch.Tensor:
        """ids, type_ids: (T,) int64 of the sequences packed end to end; lens: their lengths
        (each >= 1, summing to T). Returns (T, H)."""
        lens = [int(n) for n in lens]
        x = self.embeddings(ids, self.positions(lens, ids.device), type_ids)
        layout = PackedLayout(lens, ids.device)
        x_low = x.to(self.projection_dtype)
        for layer in self.encoder.layer:
            x, x_low = layer(x, x_low, layout, self.ops)
        return x

    def classify(self, hidden: torch.Tensor, lens: Sequence[int]) -> torch.Tensor:
        """Logits (S, num_labels) from each sequence's first token ([CLS] / <s>)."""
        if self.classifier is None:
            raise ValueError("this encoder has no classification head (num_labels=0)")
        starts = torch.tensor([0, *list(lens)[:-1]], device=hidden.device).cumsum(0)
        first = hidden[starts]  # (S, H)
        if isinstance(self.classifier, RobertaClassifier):
            c = self.classifier
            return c.out_proj(torch.tanh(c.dense(first)))
        assert self.pooler is not None
        return self.classifier(torch.tanh(self.pooler.dense(first)))

    def load_hf(self, tensors: Mapping[str, torch.Tensor], prefix: str = "") -> None:
        """Copy HF-named tensors in. `prefix` is the encoder's prefix in a classification
        checkpoint ("bert." / "roberta."); the head's tensors carry none. Tensors the network
        lacks (position_ids buffers, an unused pooler) are skipped; a missing one raises."""
        own = self.state_dict()
        found: dict[str, torch.Tensor] = {}
        for name in own:
            for candidate in (prefix + name, name):
                if candidate in tensors:
                    found[name] = tensors[candidate]
                    break
        missing = sorted(set(own) - set(found))
        if missing:
            raise KeyError(f"checkpoint lacks {len(missing)} tensors, e.g. {missing[:3]}")
        self.load_state_dict(found, strict=False)
        self.set_projection_dtype(self.embeddings.word_embeddings.weight.dtype)

    def set_projection_dtype(self, dtype: torch.dtype) -> None:
        """Run the projections (q/k/v, attention output, the MLP: nearly all the FLOPs) with
        inputs and weights in `dtype`, everything else in the parameters' dtype. The
        weights are derived from the parameters, so one load serves every dtype."""
        for layer in self.encoder.layer:
            assert isinstance(layer, EncoderLayer)
            layer.fuse(dtype)

    @property
    def projection_dtype(self) -> torch.dtype:
        first = self.encoder.layer[0]
        assert isinstance(first, EncoderLayer)
        if first.proj is None:
            return self.embeddings.word_embeddings.weight.dtype
        return first.proj.qkv[0].dtype
