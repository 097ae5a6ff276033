"""The BERT-family encoder in plain PyTorch (BERT, RoBERTa / XLM-R, MiniLM, bge, e5):
learned absolute positions and token types, post-norm layers, GELU MLP, bidirectional
attention, and the optional sequence-classification head of a cross-encoder reranker.

Batches are packed: the tokens of all sequences lie in one (T, H) tensor with `lens` giving
each sequence's length, so projections, norms and the MLP never compute a pad token
(attention gathers each sequence's rows; see PackedLayout). Parameter names are those of transformers' BertModel /
RobertaModel so a checkpoint loads 1:1. Knows nothing of files, tokenizers or requests."""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import torch
import torch.nn.functional as F
from torch import nn

from hearth.weights.encoder_config import EncoderConfig


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

    def forward(self, x: torch.Tensor, residual: torch.Tensor) -> torch.Tensor:
        return self.LayerNorm(self.dense(x) + residual)  # post-norm


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

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.gelu(self.dense(x), approximate=self.approximate)


class EncoderLayer(nn.Module):
    def __init__(self, config: EncoderConfig) -> None:
        super().__init__()
        self.attention = Attention(config)
        self.intermediate = Intermediate(config)
        self.output = AttentionOutput(config, config.intermediate_size)
        # q, k and v as one matmul; filled from query/key/value by `fuse()` after loading
        self.qkv_weight: torch.Tensor | None = None
        self.qkv_bias: torch.Tensor | None = None

    def fuse(self) -> None:
        s = self.attention.self
        self.qkv_weight = torch.cat([s.query.weight, s.key.weight, s.value.weight]).detach()
        self.qkv_bias = torch.cat([s.query.bias, s.key.bias, s.value.bias]).detach()

    def forward(self, x: torch.Tensor, layout: PackedLayout) -> torch.Tensor:
        s = self.attention.self
        t, h = x.shape
        nh = s.num_heads
        if self.qkv_weight is not None and self.qkv_bias is not None:
            qkv = F.linear(x, self.qkv_weight, self.qkv_bias)  # (T, 3H)
        else:
            qkv = torch.cat([s.query(x), s.key(x), s.value(x)], dim=-1)
        ctx = layout.attend(qkv.view(t, 3, nh, h // nh))  # (T, nh, hd)
        ctx = ctx.reshape(t, h)  # (T, H)
        x = self.attention.output(ctx, x)
        return self.output(self.intermediate(x), x)


class PackedLayout:
    """Where each sequence of a pack lies, for attention. Projections, norms and the MLP run
    on the packed (T, H) tensor; attention gathers the sequences into a (S, L, ...) view
    (L = the longest) with the missing keys masked, runs one fused attention call, and
    scatters the real rows back. One call for the batch is an order of magnitude faster on
    CPU than one call per sequence (the kernel's fixed cost per call dominates at these
    sizes); a caller that packs sequences of similar length (sorted) keeps the padded view
    small. Built once per forward, shared by the layers."""

    def __init__(self, lens: Sequence[int], device: torch.device) -> None:
        self.lens = [int(n) for n in lens]
        self.longest = max(self.lens)
        num = len(self.lens)
        self.uniform = all(n == self.longest for n in self.lens)
        if self.uniform:
            return
        pos = torch.arange(self.longest, device=device)
        counts = torch.tensor(self.lens, device=device)
        valid = pos[None, :] < counts[:, None]  # (S, L)
        starts = counts.cumsum(0) - counts
        # padded slot -> packed row (missing slots read row 0; their keys are masked)
        self.gather = torch.where(valid, starts[:, None] + pos[None, :], 0).reshape(-1)
        self.scatter = valid.reshape(-1).nonzero().squeeze(1)  # packed row -> padded slot
        mask = torch.zeros(num, 1, 1, self.longest, device=device)
        self.mask = mask.masked_fill(~valid[:, None, None, :], float("-inf"))

    def attend(self, qkv: torch.Tensor) -> torch.Tensor:
        """qkv: (T, 3, nh, hd) packed -> (T, nh, hd) bidirectional attention per sequence."""
        _, _, nh, hd = qkv.shape
        num = len(self.lens)
        if self.uniform:
            padded = qkv.view(num, self.longest, 3, nh, hd)
        else:
            padded = qkv.index_select(0, self.gather).view(num, self.longest, 3, nh, hd)
        q, k, v = padded.permute(2, 0, 3, 1, 4)  # 3 x (S, nh, L, hd)
        mask = None if self.uniform else self.mask.to(q.dtype)
        out = F.scaled_dot_product_attention(q, k, v, attn_mask=mask)  # (S, nh, L, hd)
        out = out.transpose(1, 2).reshape(num * self.longest, nh, hd)
        return out if self.uniform else out.index_select(0, self.scatter)


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

    def __init__(self, config: EncoderConfig) -> None:
        super().__init__()
        self.config = config
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
        for layer in self.encoder.layer:
            x = layer(x, layout)
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
        missing = sorted(set(own) - set(found) - {"qkv_weight", "qkv_bias"})
        if missing:
            raise KeyError(f"checkpoint lacks {len(missing)} tensors, e.g. {missing[:3]}")
        self.load_state_dict(found, strict=False)
        for layer in self.encoder.layer:
            assert isinstance(layer, EncoderLayer)
            layer.fuse()
