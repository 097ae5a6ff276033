"""Build a Decoder whose projections are quantized layers (quant.py), choosing per tensor:

  mode   GGUF Q4_0/Q4_1/Q4_K   other GGUF quant types         float (HF, GGUF F16/F32)
  auto   int4, exact re-pack   int8 (de-quantize, re-quantize) bf16 dense
  int8   int8 (re-quantize)    int8 (re-quantize)              int8
  int4   int4, exact re-pack   int4 (de-quantize, re-quantize) int4
  ("none" never comes here: model/build.py loads dense weights in the asked dtype.)

The token embeddings become an int8 table in every quantized mode; a tied LM head shares
it, an untied one is int8 except under auto when the file has it in an exact-int4 type.
q/k/v and gate/up are fused into one projection each when their parts got the same kind
of layer (one kernel call instead of three or two per layer and step). Activations, norms
and the KV cache run in bfloat16, the dtype both kernels want.

Tensors are read, converted and dropped one at a time, so peak memory stays near the
quantized model's size. Knows nothing of files (weights/ reads them) or requests."""

from __future__ import annotations

from collections.abc import Callable, Mapping

import torch
from torch import nn

from hearth.errors import CorruptModelError, InvalidParameterError, UnsupportedModelError
from hearth.model.backend import select_backend
from hearth.model.build import checkpoint_sources
from hearth.model.layers.attention_layer import Attention
from hearth.model.layers.decoder import Decoder
from hearth.model.layers.linear import Linear
from hearth.model.layers.mlp import GatedMLP
from hearth.model.layers.ops import Ops
from hearth.model.layers.quant import (
    ACT_DTYPE,
    Int4Linear,
    Int4Weight,
    Int8Embedding,
    Int8Linear,
    Int8Weight,
)
from hearth.model.quant_modes import QUANT_MODES, QuantMode
from hearth.model.quant_pack import (
    EXACT_INT4_TYPES,
    GROUP,
    int4_from_gguf,
    quantize_int4,
    quantize_int8,
)
from hearth.weights.config import ModelConfig
from hearth.weights.gguf_quant import GGUFQuantizedTensor
from hearth.weights.gptq_awq import PackedInt4

Planned = Int4Weight | Int8Weight | torch.Tensor  # a torch.Tensor here is a dense weight


def check_quant_mode(quant: str) -> QuantMode:
    if quant not in QUANT_MODES:
        raise InvalidParameterError(
            "quant", f"quant must be one of {', '.join(QUANT_MODES)}, got {quant!r}"
        )
    return quant  # type: ignore[return-value]


def _dense(value: torch.Tensor | GGUFQuantizedTensor | PackedInt4) -> torch.Tensor:
    if isinstance(value, GGUFQuantizedTensor | PackedInt4):
        return value.dequantize(torch.float32)
    return value


# rows converted at once when a weight is de-quantized and quantized again: ~8 MB of fp32
# per chunk instead of the whole tensor (the 49152 x 576 embedding would be 113 MB, and the
# quantizer's temporaries several times that)
CHUNK_ELEMENTS = 2 * 1024 * 1024


def _requantize(
    value: torch.Tensor | GGUFQuantizedTensor, quantize: Callable[[torch.Tensor], Planned]
) -> Planned:
    """quantize(dense value), a chunk of rows at a time into one pre-sized result (both
    quantizers work per row, so these are the same bits as converting the whole tensor)."""
    rows, cols = value.shape[0], value.shape[-1]
    step = max(1, CHUNK_ELEMENTS // max(1, cols))
    if rows <= step:
        return quantize(_dense(value))
    out: Planned | None = None
    for start in range(0, rows, step):
        if isinstance(value, GGUFQuantizedTensor):
            data = value.data[start : start + step]
            chunk = GGUFQuantizedTensor(value.ggml_type, data, (data.shape[0], *value.shape[1:]))
            part = quantize(chunk.dequantize(torch.float32))
        else:
            part = quantize(value[start : start + step])
        if not isinstance(part, Int8Weight | Int4Weight):
            raise TypeError(f"a quantizer returned {type(part).__name__}")
        end = start + part.q.shape[0]
        if isinstance(part, Int8Weight):
            if out is None:
                out = Int8Weight(part.q.new_empty(rows, cols), part.scales.new_empty(rows))
            assert isinstance(out, Int8Weight)
            out.q[start:end], out.scales[start:end] = part.q, part.scales
        else:
            if out is None:
                sz = part.scales_and_zeros
                out = Int4Weight(
                    part.q.new_empty(rows, cols),
                    sz.new_empty(sz.shape[0], rows, 2),
                    part.group_size,
                )
            assert isinstance(out, Int4Weight)
            out.q[start:end], out.scales_and_zeros[:, start:end] = part.q, part.scales_and_zeros
    assert out is not None
    return out


def plan_weight(
    value: torch.Tensor | GGUFQuantizedTensor | PackedInt4, mode: QuantMode, head: bool = False
) -> Planned:
    """The layer weight one checkpoint tensor (N, K) becomes under `mode` (table above).
    head: the LM head, kept at int8 unless the file already has it in exact int4."""
    if isinstance(value, PackedInt4):  # GPTQ / AWQ: int4 already, taken as it is
        if mode in ("auto", "int4") and not head:
            sz = value.scales_and_zeros.to(ACT_DTYPE)
            return Int4Weight(value.q, sz, value.group_size)
        return _requantize(_dense(value), quantize_int8)
    gguf = isinstance(value, GGUFQuantizedTensor)
    exact4 = gguf and value.ggml_type in EXACT_INT4_TYPES  # type: ignore[union-attr]
    if mode == "auto":
        if exact4:
            return int4_from_gguf(value)  # type: ignore[arg-type]
        if gguf:
            return _requantize(value, quantize_int8)
        return _dense(value).to(ACT_DTYPE)
    if mode == "int4" and not head:
        if exact4:
            return int4_from_gguf(value)  # type: ignore[arg-type]
        if value.shape[-1] % GROUP == 0:
            return _requantize(value, quantize_int4)
    # int8, or int4 where the width does not split into groups of 32, or the int4 LM head
    return _requantize(value, quantize_int8)


def _fuse(parts: list[Planned]) -> Planned | None:
    """One weight whose rows are the parts' rows in order, or None when the parts got
    different kinds of layer."""
    first = parts[0]
    if isinstance(first, Int4Weight):
        if not all(isinstance(p, Int4Weight) and p.group_size == first.group_size for p in parts):
            return None
        p4 = [p for p in parts if isinstance(p, Int4Weight)]
        return Int4Weight(
            torch.cat([p.q for p in p4]),
            torch.cat([p.scales_and_zeros for p in p4], dim=1),
            first.group_size,
        )
    if isinstance(first, Int8Weight):
        if not all(isinstance(p, Int8Weight) for p in parts):
            return None
        p8 = [p for p in parts if isinstance(p, Int8Weight)]
        return Int8Weight(torch.cat([p.q for p in p8]), torch.cat([p.scales for p in p8]))
    if not all(isinstance(p, torch.Tensor) for p in parts):
        return None
    return torch.cat([p for p in parts if isinstance(p, torch.Tensor)])


def _layer(weight: Planned, bias: torch.Tensor | None, ops: Ops) -> nn.Module:
    if isinstance(weight, Int4Weight):
        return Int4Linear(weight, bias, ops)
    if isinstance(weight, Int8Weight):
        return Int8Linear(weight, bias, reuse_storage=True, ops=ops)  # made for it alone
    layer = Linear(weight.shape[1], weight.shape[0], bias is not None, ops)
    layer.weight = nn.Parameter(weight.to(ACT_DTYPE).contiguous(), requires_grad=False)
    if bias is not None:
        layer.bias = nn.Parameter(bias.to(ACT_DTYPE), requires_grad=False)
    return layer


class _Loader:
    """Reads checkpoint tensors by decoder name, checking shapes and remembering which
    names were used (so leftovers can be reported)."""

    def __init__(self, config: ModelConfig, tensors: Mapping[str, torch.Tensor]) -> None:
        self.config = config
        self.sources = checkpoint_sources(config, tensors)
        self.used: set[str] = set()
        # GGUF tensors view a memory-mapped file: its pages count in RSS once read
        self._release_pages = getattr(tensors, "release_pages", None)

    def release_pages(self) -> None:
        """Forget the file pages read so far (see GGUFTensors.release_pages)."""
        if self._release_pages is not None:
            self._release_pages()

    def get(self, name: str, shape: tuple[int, ...]) -> torch.Tensor | GGUFQuantizedTensor:
        if name not in self.sources:
            raise CorruptModelError(
                f"tensor {name} is missing from the checkpoint of this "
                f"{self.config.architecture} model; the download is incomplete or the config "
                "does not match the weights"
            )
        value = self.sources[name]()
        if tuple(value.shape) != shape:
            raise CorruptModelError(
                f"tensor {name} has shape {tuple(value.shape)} but the config implies {shape}; "
                "the config does not match the weights"
            )
        self.used.add(name)
        return value

    def linear(
        self, prefix: str, module: nn.Module, mode: QuantMode
    ) -> tuple[Planned, torch.Tensor | None]:
        assert isinstance(module, Linear)
        value = self.get(f"{prefix}.weight", (module.out_features, module.in_features))
        weight = plan_weight(value, mode, head=prefix == "lm_head")
        bias = None
        if module.bias is not None:
            bias = _dense(self.get(f"{prefix}.bias", (module.out_features,)))
        return weight, bias


def build_quantized_model(
    config: ModelConfig,
    tensors: Mapping[str, torch.Tensor],
    quant: str,
    device: torch.device | str = "cpu",
    backend: Ops | None = None,
    fuse: bool = True,
) -> Decoder:
    """A Decoder in eval mode with quantized projections (see the table above) on `backend`
    (None: select_backend's default); `tensors` may hold GGUFQuantizedTensor values
    (load_gguf(keep_quantized=True)). fuse=False keeps q/k/v and gate/up apart (QLoRA
    adapts each by its own name). Raises the same errors as build_model for missing,
    mis-shaped or unexpected tensors."""
    mode = check_quant_mode(quant)
    if mode == "none":
        raise ValueError("quant 'none' builds with model.build.build_model")
    ops = select_backend() if backend is None else backend
    with torch.device("meta"):
        model = Decoder(config, ops)
    load = _Loader(config, tensors)
    projections: list[nn.Module] = []  # what the layers' projections became
    for name, module in list(model.named_modules()):
        if isinstance(module, Attention):
            names: tuple[str, ...] = ("q_proj", "k_proj", "v_proj")
        elif isinstance(module, GatedMLP):
            names = ("gate_proj", "up_proj")
        else:
            continue
        projections += _fuse_group(load, model, name, module, names, mode, ops, fuse)
        load.release_pages()
    for name, module in list(model.named_modules()):
        if isinstance(module, Linear) and module.weight.is_meta and name != "lm_head":
            weight, bias = load.linear(name, module, mode)
            projections.append(_layer(weight, bias, ops))
            _replace(model, name, projections[-1])
            load.release_pages()
    vocab, hidden = config.vocab_size, config.hidden_size
    embed = plan_weight(load.get("model.embed_tokens.weight", (vocab, hidden)), "int8")
    assert isinstance(embed, Int8Weight)
    embedding = Int8Embedding(embed, reuse_storage=True, ops=ops)
    model.model.embed_tokens = embedding  # type: ignore[assignment]
    if model.lm_head is None:
        model.lm_head = embedding.as_linear()
    else:
        weight, bias = load.linear("lm_head", model.lm_head, mode)
        model.lm_head = _layer(weight, bias, ops)
    if isinstance(model.lm_head, Int4Linear | Int8Linear):
        model.lm_head.out_float32 = True  # compute_logits wants float32 logits
    load.release_pages()
    state: dict[str, torch.Tensor] = {}
    for name, param in model.named_parameters():
        if param.is_meta:
            value = _dense(load.get(name, tuple(param.shape)))
            state[name] = value.to(ACT_DTYPE) if value.is_floating_point() else value
    unexpected = sorted(set(load.sources) - load.used)
    if unexpected:
        raise UnsupportedModelError(
            f"the checkpoint has tensors the {config.architecture} config does not account "
            f"for: {', '.join(unexpected[:5])}{' ...' if len(unexpected) > 5 else ''}; "
            "config.json and the weights disagree"
        )
    model.load_state_dict(state, strict=False, assign=True)
    load.release_pages()  # (a float weight may view the file: its pages fault back in)
    # the whole-step road takes every projection fused and on the low-bit kernel
    lowbit = all(_is_lowbit(p) for p in projections)
    model.plans_decode_step = torch.device(device).type == "cpu" and ops.step_fits(config, lowbit)
    return model.to(device).eval()


def _is_lowbit(layer: nn.Module) -> bool:
    """Whether a projection this builder made runs on the low-bit kernel without a bias
    (an Attention or GatedMLP here: its parts stayed apart)."""
    if isinstance(layer, Int4Linear):
        return layer.bias is None and layer.lowbit
    if isinstance(layer, Int8Linear):
        return layer.bias is None and layer.int8.lowbit
    return False


def _fuse_group(
    load: _Loader,
    model: nn.Module,
    prefix: str,
    module: Attention | GatedMLP,
    names: tuple[str, ...],
    mode: QuantMode,
    ops: Ops,
    fuse: bool = True,
) -> list[nn.Module]:
    """The group's projections loaded, fused into one layer where the parts got the same
    kind (and `fuse`); returns the layers made, and `module` itself where they stay apart
    (the C step wants them fused)."""
    parts = [load.linear(f"{prefix}.{n}", getattr(module, n), mode) for n in names]
    fused = _fuse([w for w, _ in parts]) if fuse else None
    biases = [b for _, b in parts]
    if fused is None:  # different kinds: keep separate layers
        for n, (w, b) in zip(names, parts, strict=True):
            setattr(module, n, _layer(w, b, ops))
        return [module]
    bias = None if biases[0] is None else torch.cat(biases)  # type: ignore[arg-type]
    layer = _layer(fused, bias, ops)
    if isinstance(module, Attention):
        module.fuse_qkv(layer)
    else:
        module.fuse_gate_up(layer)
    return [layer]


def _replace(model: nn.Module, name: str, layer: nn.Module) -> None:
    parent, _, leaf = name.rpartition(".")
    setattr(model.get_submodule(parent) if parent else model, leaf, layer)
