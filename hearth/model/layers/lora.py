"""LoRA as a property of a projection: `LoraLinear` wraps one of the decoder's projections
(dense, or the quantized ones for QLoRA) and adds `scaling * B(A(dropout(x)))`, with A and
B as PEFT makes them (A: Kaiming-uniform, a = sqrt(5); B: zeros; scaling alpha / r, or
alpha / sqrt(r) with rsLoRA), so an adapter moves between hearth and PEFT unchanged.
`apply_lora` swaps the targeted projections of a built model in place and freezes the rest.

The adapter's weights stay float32 whatever the base's dtype (a bf16 base stays bf16 and
is never re-cast); it computes in the activations' dtype and adds to the base's output.
It lives with the layers because an adapter is a property of a projection (tune/ trains
it; the engine will serve it per sequence). Knows nothing of data or training loops."""

from __future__ import annotations

import math
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from hearth.errors import InvalidParameterError, UserInputError
from hearth.model.layers.quant import Int4Linear, Int8Linear

__all__ = [
    "DEFAULT_TARGETS",
    "LoraConfig",
    "LoraLinear",
    "adapter_disabled",
    "apply_lora",
    "dense_weight",
    "lora_layers",
    "lora_state_dict",
    "merge_lora",
    "projection_names",
]

DEFAULT_TARGETS = ("q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj")


@dataclass(frozen=True)
class LoraConfig:
    """rank: r; alpha: the scale numerator; dropout on the adapter's input; rslora: scale
    by alpha / sqrt(r) (rank-stabilised) instead of alpha / r; targets: the projections'
    names (the last part of the module path, as PEFT's target_modules)."""

    rank: int = 16
    alpha: float = 32.0
    dropout: float = 0.0
    rslora: bool = False
    targets: tuple[str, ...] = DEFAULT_TARGETS

    def __post_init__(self) -> None:
        if not isinstance(self.rank, int) or self.rank <= 0:
            raise InvalidParameterError(
                "rank", f"--rank must be a positive integer, got {self.rank!r}"
            )
        if self.alpha <= 0:
            raise InvalidParameterError("alpha", f"--alpha must be > 0, got {self.alpha!r}")
        if not 0.0 <= self.dropout < 1.0:
            raise InvalidParameterError(
                "dropout", f"--dropout must be in [0, 1), got {self.dropout!r}"
            )
        if not self.targets:
            raise InvalidParameterError("targets", "--targets must name at least one projection")

    @property
    def scaling(self) -> float:
        return self.alpha / (math.sqrt(self.rank) if self.rslora else self.rank)


def dense_weight(projection: nn.Module) -> torch.Tensor:
    """(out, in): the weight a projection multiplies by, de-quantized for a quantized one
    (Int4Linear, Int8Linear: bf16, made for the call). Any other projection is read back
    by multiplying the identity."""
    weight = getattr(projection, "weight", None)
    if isinstance(weight, torch.Tensor) and weight.dim() == 2:
        return weight
    if isinstance(projection, Int4Linear) and (projection.dense_ok or projection.lowbit):
        return projection.dense_weight()
    if isinstance(projection, Int8Linear):
        return projection.int8.rows(torch.arange(projection.out_features))
    features = _features(projection)
    assert features is not None, f"{type(projection).__name__} is not a projection"
    eye = torch.eye(features[0], dtype=torch.bfloat16)
    bias = getattr(projection, "bias", None)
    out = projection(eye)  # (in, out) = W.T (+ bias on every row)
    return (out - bias if isinstance(bias, torch.Tensor) else out).t()


class _FrozenProjection(torch.autograd.Function):
    """y = base(x) through a quantized projection's own kernel (what serving runs), which
    autograd cannot see through; backward gives the input its gradient, grad_y @ W, with
    W de-quantized for that call and dropped after: the low-bit weights are never held
    dense, and the frozen base gets no gradient of its own."""

    @staticmethod
    def forward(ctx: Any, x: torch.Tensor, base: nn.Module) -> torch.Tensor:
        ctx.base = base
        ctx.x_dtype = x.dtype
        return base(x)

    @staticmethod
    def backward(ctx: Any, grad: torch.Tensor) -> tuple[torch.Tensor, None]:
        weight = dense_weight(ctx.base)  # (out, in)
        grad_x = grad.to(weight.dtype) @ weight
        return grad_x.to(ctx.x_dtype), None


class LoraLinear(nn.Module):
    """base(x) + scaling * lora_B(lora_A(dropout(x))). lora_A.weight: (r, in); lora_B.weight:
    (out, r), float32. Parameter names follow PEFT's (`<module>.lora_A.weight`)."""

    def __init__(
        self, base: nn.Module, in_features: int, out_features: int, config: LoraConfig
    ) -> None:
        super().__init__()
        self.base_layer = base
        self.in_features, self.out_features = in_features, out_features
        self.lora_A = nn.Linear(in_features, config.rank, bias=False, dtype=torch.float32)
        self.lora_B = nn.Linear(config.rank, out_features, bias=False, dtype=torch.float32)
        nn.init.kaiming_uniform_(self.lora_A.weight, a=math.sqrt(5))  # as PEFT's "default" init
        nn.init.zeros_(self.lora_B.weight)
        self.dropout = nn.Dropout(config.dropout) if config.dropout > 0 else nn.Identity()
        self.scaling = config.scaling
        self.enabled = True
        # a dense base differentiates by itself; a quantized one (QLoRA) through its kernel
        weight = getattr(base, "weight", None)
        self.quantized_base = not (isinstance(weight, torch.Tensor) and weight.dim() == 2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.quantized_base and torch.is_grad_enabled() and x.requires_grad:
            out = _FrozenProjection.apply(x, self.base_layer)
        else:
            out = self.base_layer(x)
        if not self.enabled:
            return out
        # the adapter runs in the activations' dtype (A and B cast, r x in and out x r, not
        # the (T, in) input: what bf16 autocast does for PEFT), its float32 weights the
        # master copy autograd's gradients arrive in; scaling on the (T, r) middle, not on
        # the (T, out) result
        a = self.lora_A.weight.to(x.dtype)
        b = self.lora_B.weight.to(x.dtype)
        return out + F.linear(F.linear(self.dropout(x), a) * self.scaling, b).to(out.dtype)

    def delta_weight(self) -> torch.Tensor:
        """scaling * B @ A: (out, in) float32, what merging adds to the base weight."""
        return (self.lora_B.weight @ self.lora_A.weight) * self.scaling


def projection_names(model: nn.Module) -> list[str]:
    """The distinct last names of the model's projections (what --targets may name)."""
    names = {
        path.rsplit(".", 1)[-1]
        for path, module in model.named_modules()
        if _features(module) is not None and "lora_" not in path
    }
    return sorted(names)


def apply_lora(model: nn.Module, config: LoraConfig, seed: int | None = None) -> list[str]:
    """Wrap every projection named in config.targets with a LoraLinear (in module order, so
    a seed gives the same initialisation every time); freeze everything else. Returns the
    wrapped modules' paths. Raises UserInputError listing the projections the model has when
    a target matches none."""
    have = projection_names(model)
    missing = [t for t in config.targets if t not in have]
    if missing:
        raise UserInputError(
            f"--targets {', '.join(missing)}: this model has no such projection; it has "
            f"{', '.join(have)}"
        )
    for p in model.parameters():
        p.requires_grad_(False)
    generator_state = torch.random.get_rng_state()
    if seed is not None:
        torch.manual_seed(seed)
    wrapped: list[str] = []
    try:
        for path, module in list(model.named_modules()):
            name = path.rsplit(".", 1)[-1]
            features = _features(module)
            if name not in config.targets or features is None or isinstance(module, LoraLinear):
                continue
            parent = model.get_submodule(path.rsplit(".", 1)[0]) if "." in path else model
            setattr(parent, name, LoraLinear(module, *features, config))
            wrapped.append(path)
    finally:
        if seed is not None:
            torch.random.set_rng_state(generator_state)
    return wrapped


def _features(module: nn.Module) -> tuple[int, int] | None:
    """(in, out) of a projection: any module with in_features/out_features and a weight."""
    if isinstance(module, LoraLinear):
        return module.in_features, module.out_features
    in_f, out_f = getattr(module, "in_features", None), getattr(module, "out_features", None)
    if isinstance(in_f, int) and isinstance(out_f, int) and not isinstance(module, nn.Linear):
        return in_f, out_f
    return None


def lora_layers(model: nn.Module) -> Iterator[tuple[str, LoraLinear]]:
    for path, module in model.named_modules():
        if isinstance(module, LoraLinear):
            yield path, module


def lora_state_dict(model: nn.Module) -> dict[str, torch.Tensor]:
    """`<module path>.lora_A.weight` / `.lora_B.weight` -> tensor, for every adapter."""
    out: dict[str, torch.Tensor] = {}
    for path, layer in lora_layers(model):
        out[f"{path}.lora_A.weight"] = layer.lora_A.weight.detach().clone()
        out[f"{path}.lora_B.weight"] = layer.lora_B.weight.detach().clone()
    return out


@contextmanager
def adapter_disabled(model: nn.Module) -> Iterator[None]:
    """The base model inside the block (DPO's reference: no second copy of the weights)."""
    layers = [layer for _, layer in lora_layers(model)]
    for layer in layers:
        layer.enabled = False
    try:
        yield
    finally:
        for layer in layers:
            layer.enabled = True


def merge_lora(model: nn.Module) -> None:
    """Fold every adapter into its base weight (dense projections) and unwrap it."""
    for path, layer in list(lora_layers(model)):
        base = layer.base_layer
        weight = getattr(base, "weight", None)
        if not isinstance(weight, torch.Tensor) or weight.shape != (
            layer.out_features,
            layer.in_features,
        ):
            raise UserInputError(
                f"{path}: only dense projections can be merged; export the adapter instead"
            )
        with torch.no_grad():
            weight.copy_((weight.float() + layer.delta_weight()).to(weight.dtype))
        parent = model.get_submodule(path.rsplit(".", 1)[0]) if "." in path else model
        setattr(parent, path.rsplit(".", 1)[-1], base)
