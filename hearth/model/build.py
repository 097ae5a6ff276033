"""Turn a ModelConfig and HF-named tensors into a ready Decoder. Checkpoint layouts that
differ from the decoder's parameter names are reconciled here, in one table: Mixtral's
`block_sparse_moe.experts.N.w1/w2/w3`, Phi-3's fused `qkv_proj` and `gate_up_proj` (split
into views at load), Llama 4's `feed_forward` with fused (E, in, out) expert tensors (split
per expert) and its multimodal wrapper's `language_model.` prefix (vision tower ignored).
Missing, mismatched or unexpected tensors raise errors naming them. `fuse_projections`
merges q/k/v and gate/up for the engine. The builder hands every layer its backend (Ops),
and, knowing what it built, says whether the backend's whole-decode-step road may run it
(`Decoder.plans_decode_step`). Knows nothing of files (weights/ reads them) or of requests."""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping, Sequence

import torch
from torch import nn

from hearth.errors import CorruptModelError, UnsupportedModelError
from hearth.model.backend import select_backend
from hearth.model.layers.attention_layer import Attention
from hearth.model.layers.decoder import Decoder
from hearth.model.layers.linear import Linear
from hearth.model.layers.mlp import GatedMLP
from hearth.model.layers.ops import Ops
from hearth.weights.config import ModelConfig

Source = Callable[[], torch.Tensor]

_MIXTRAL_EXPERT = re.compile(r"(.*)\.block_sparse_moe\.experts\.(\d+)\.w([123])\.weight$")
_MIXTRAL_PROJ = {"1": "gate_proj", "2": "down_proj", "3": "up_proj"}
_LAYER = re.compile(r"^model\.layers\.(\d+)\.")
# Llama 4: the multimodal wrapper keeps the text model under this prefix; the rest is vision
_TEXT_PREFIX = "language_model."
_VISION_PREFIXES = ("vision_model.", "multi_modal_projector.")
_LLAMA4_FFN = (  # Llama 4 name piece -> the decoder's
    (".feed_forward.router.", ".mlp.gate."),
    (".feed_forward.shared_expert.", ".mlp.shared_experts."),
    (".feed_forward.", ".mlp."),
)


class _FusedExperts:
    """Per-expert (out, in) weights cut from Llama 4's fused (E, in, out) expert tensors. The
    two fused tensors of the layer being loaded stay held, so each is read once per layer,
    not once per expert."""

    def __init__(self, tensors: Mapping[str, torch.Tensor], num_experts: int) -> None:
        self.tensors = tensors
        self.num_experts = num_experts
        self._held: dict[str, torch.Tensor] = {}

    def _fused(self, name: str) -> torch.Tensor:
        if name not in self._held:
            tensor = self.tensors[name]
            if tensor.dim() != 3 or tensor.shape[0] != self.num_experts:
                raise CorruptModelError(
                    f"tensor {name} has shape {tuple(tensor.shape)} but the config implies "
                    f"{self.num_experts} experts first; config.json does not match the weights"
                )
            if len(self._held) >= 2:
                del self._held[next(iter(self._held))]
            self._held[name] = tensor
        return self._held[name]

    def source(self, name: str, expert: int, start: int, stop: int | None) -> Source:
        return lambda: self._fused(name)[expert, :, start:stop].t().contiguous()


def checkpoint_sources(
    config: ModelConfig, tensors: Mapping[str, torch.Tensor]
) -> dict[str, Source]:
    """Decoder parameter name -> how to get it from the checkpoint (lazily)."""

    def get(name: str) -> Source:
        return lambda: tensors[name]

    def rows(name: str, start: int, stop: int) -> Source:
        return lambda: tensors[name][start:stop]

    q_rows = config.num_attention_heads * config.head_dim
    kv_rows = config.num_key_value_heads * config.head_dim
    experts = _FusedExperts(tensors, config.moe.num_experts if config.moe else 0)
    sources: dict[str, Source] = {}
    for raw in tensors:
        if raw.startswith(_VISION_PREFIXES):
            continue  # Llama 4's vision tower and projector: hearth runs the text model
        name = raw.removeprefix(_TEXT_PREFIX)
        if ".feed_forward." in name:  # Llama 4
            for old, new in _LLAMA4_FFN:
                if old in name:
                    name = name.replace(old, new)
                    break
        layer = _LAYER.match(name)
        if layer and int(layer.group(1)) >= config.num_hidden_layers:
            continue  # DeepSeek-V3's multi-token-prediction layers: not used for decoding
        if name.endswith("rotary_emb.inv_freq"):
            continue  # recomputed from the config
        if name == "lm_head.weight" and config.tie_word_embeddings:
            continue
        expert = _MIXTRAL_EXPERT.match(name)
        if expert:
            prefix, index, w = expert.groups()
            sources[f"{prefix}.mlp.experts.{index}.{_MIXTRAL_PROJ[w]}.weight"] = get(raw)
        elif ".block_sparse_moe.gate." in name:
            sources[name.replace(".block_sparse_moe.", ".mlp.")] = get(raw)
        elif name.endswith(".mlp.experts.gate_up_proj") and config.moe:
            size = config.moe.intermediate_size  # Llama 4: (E, hidden, 2I), gate first
            for e in range(experts.num_experts):
                prefix = f"{name[: -len('gate_up_proj')]}{e}."
                sources[prefix + "gate_proj.weight"] = experts.source(raw, e, 0, size)
                sources[prefix + "up_proj.weight"] = experts.source(raw, e, size, None)
        elif name.endswith(".mlp.experts.down_proj") and config.moe:  # Llama 4: (E, I, hidden)
            for e in range(experts.num_experts):
                prefix = f"{name[: -len('down_proj')]}{e}."
                sources[prefix + "down_proj.weight"] = experts.source(raw, e, 0, None)
        elif name.endswith("self_attn.qkv_proj.weight"):  # Phi-3: rows are q, then k, then v
            prefix = name[: -len("qkv_proj.weight")]
            sources[prefix + "q_proj.weight"] = rows(raw, 0, q_rows)
            sources[prefix + "k_proj.weight"] = rows(raw, q_rows, q_rows + kv_rows)
            sources[prefix + "v_proj.weight"] = rows(raw, q_rows + kv_rows, q_rows + 2 * kv_rows)
        elif name.endswith("mlp.gate_up_proj.weight"):  # Phi-3: rows are gate, then up
            prefix = name[: -len("gate_up_proj.weight")]
            size = config.intermediate_size
            sources[prefix + "gate_proj.weight"] = rows(raw, 0, size)
            sources[prefix + "up_proj.weight"] = rows(raw, size, 2 * size)
        else:
            sources[name] = get(raw)
    return sources


def build_model(
    config: ModelConfig,
    tensors: Mapping[str, torch.Tensor],
    dtype: torch.dtype = torch.float32,
    device: torch.device | str = "cpu",
    backend: Ops | None = None,
) -> Decoder:
    """A Decoder in eval mode holding `tensors` (HF checkpoint names) in `dtype` on `device`,
    its layers on `backend` (None: select_backend's default, the C kernels where they run).

    Raises CorruptModelError naming a tensor that is missing or has the wrong shape, and
    UnsupportedModelError naming a tensor the config does not account for (e.g. biases the
    config says the model has not): loading it anyway would give silently wrong numbers."""
    ops = select_backend() if backend is None else backend
    with torch.device("meta"):  # no memory for parameters until the checkpoint's arrive
        model = Decoder(config, ops)
    expected = model.state_dict()
    sources = checkpoint_sources(config, tensors)
    unexpected = sorted(set(sources) - set(expected))
    if unexpected:
        raise UnsupportedModelError(
            f"the checkpoint has tensors the {config.architecture} config does not account "
            f"for: {', '.join(unexpected[:5])}{' ...' if len(unexpected) > 5 else ''}; "
            "config.json and the weights disagree"
        )
    state: dict[str, torch.Tensor] = {}
    for name, slot in expected.items():
        if name not in sources:
            raise CorruptModelError(
                f"tensor {name} is missing from the checkpoint of this {config.architecture} "
                "model; the download is incomplete or config.json does not match the weights"
            )
        tensor = sources[name]()
        if tuple(tensor.shape) != tuple(slot.shape):
            raise CorruptModelError(
                f"tensor {name} has shape {tuple(tensor.shape)} but the config implies "
                f"{tuple(slot.shape)}; config.json does not match the weights"
            )
        if tensor.is_floating_point() and tensor.dtype != dtype:
            tensor = tensor.to(dtype)
        state[name] = tensor.to(device)
    model.load_state_dict(state, strict=True, assign=True)
    return model.eval()


def fuse_projections(model: Decoder) -> Decoder:
    """Each layer's q/k/v and gate/up dense projections merged into one `qkv_proj` and one
    `gate_up_proj` (rows q, k, v; gate, up), as the quantized build does: one matmul each
    instead of three and two, and the fused rows are what decode_ops' one-pass rope + cache
    write and SiLU gate read. Same products (each output row is the same dot product);
    for the serving road only: parameter names change, so a checkpoint's names no longer
    match. Layers whose parts differ in dtype or bias presence stay as they are."""
    for layer in model.model.layers:
        attn, mlp = layer.self_attn, layer.mlp
        if isinstance(attn, Attention) and attn.qkv_proj is None:
            fused = _fused_linear([attn.q_proj, attn.k_proj, attn.v_proj])
            if fused is not None:
                attn.fuse_qkv(fused)
        if type(mlp) is GatedMLP and mlp.gate_up_proj is None:
            fused = _fused_linear([mlp.gate_proj, mlp.up_proj])
            if fused is not None:
                mlp.fuse_gate_up(fused)
    return model


def _fused_linear(parts: Sequence[nn.Module]) -> Linear | None:
    if not all(type(p) is Linear for p in parts):
        return None
    linears = [p for p in parts if isinstance(p, Linear)]
    weights: list[torch.Tensor] = [p.weight for p in linears]
    biases = [p.bias for p in linears]
    if len({w.dtype for w in weights}) != 1 or len({w.device for w in weights}) != 1:
        return None
    if any(b is None for b in biases) and not all(b is None for b in biases):
        return None
    with torch.device("meta"):
        fused = Linear(
            weights[0].shape[1], sum(w.shape[0] for w in weights), biases[0] is not None,
            linears[0].ops,
        )  # fmt: skip
    fused.weight = nn.Parameter(torch.cat(weights), requires_grad=False)
    if fused.bias is not None:
        fused.bias = nn.Parameter(
            torch.cat([b for b in biases if b is not None]), requires_grad=False
        )
    return fused
