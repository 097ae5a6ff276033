"""FSDP for distributed tuning (`hearth tune --nproc N --shard full`): PyTorch's FSDP2
(`fully_shard`) over the CPU process group, one unit per decoder layer plus the root (the
embeddings, final norm and LM head), so each rank holds 1/N of every weight, gradient and
AdamW moment and all-gathers one layer at a time. What `--shard auto` decides, and the
conversions between a sharded run and the one-process checkpoint format: a checkpoint holds
full tensors (gathered from every rank, written by rank 0), so a run can resume sharded or
not, and at the end every weight is gathered back into the module (`unshard`) so the caller
saves the model as it would after one process. Knows nothing of data, the store or files.

Checked on torch 2.13 CPU with gloo: mixed dtypes in one unit (a bf16 frozen base next to
float32 adapters) and frozen parameters work; the root's parameters stay gathered from its
forward to the end of backward, so the loss may read the LM head outside `forward`."""

from __future__ import annotations

import os
from typing import Any

import torch
from torch import nn

__all__ = [
    "AUTO_RAM_SHARE",
    "SHARD_CHOICES",
    "full_state",
    "resolve_shard",
    "shard_model",
    "sharded_state",
    "training_bytes",
    "unshard_all",
]

SHARD_CHOICES = ("auto", "full", "none")
# --shard auto shards when one process's copy would need more than this share of its part
# of the RAM (total / nproc): the rest is for activations, the data and the OS
AUTO_RAM_SHARE = 0.5


def training_bytes(model: nn.Module) -> int:
    """What one unsharded copy of `model` needs to train: every weight, plus a gradient and
    AdamW's two moments for each trainable one (activations not counted)."""
    total = 0
    for p in model.parameters():
        size = p.numel() * p.element_size()
        total += size * 4 if p.requires_grad else size
    return total + sum(b.numel() * b.element_size() for b in model.buffers())


def _ram_bytes() -> int:
    try:
        return int(os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES"))
    except (ValueError, OSError):  # not POSIX: a conservative 8 GiB
        return 8 * 1024**3


def resolve_shard(shard: str, method: str, model: nn.Module, nproc: int) -> str:
    """'full' or 'none' for --shard `shard`. auto: 'full' when training_bytes(model) exceeds
    AUTO_RAM_SHARE of this machine's RAM / nproc; qlora never shards (its int4 base is
    buffers FSDP would not split; its adapters are small)."""
    from hearth.errors import InvalidParameterError

    if shard not in SHARD_CHOICES:
        raise InvalidParameterError(
            "shard", f"--shard must be one of {', '.join(SHARD_CHOICES)}, got {shard!r}"
        )
    if method == "qlora":
        if shard == "full":
            raise InvalidParameterError(
                "shard", "--shard full does not apply to --method qlora (its int4 base is not "
                "sharded); use --shard none, or --method lora to shard a float base",
            )  # fmt: skip
        return "none"
    if shard == "auto":
        return "full" if training_bytes(model) > AUTO_RAM_SHARE * _ram_bytes() / nproc else "none"
    return shard


def shard_model(model: Any) -> None:
    """fully_shard `model` (a Decoder) in place over the default process group: one FSDP
    unit per decoder layer, the root holding the rest. Its parameters become DTensors
    (names unchanged), so optimizers must be built after this."""
    import torch.distributed as dist
    from torch.distributed.device_mesh import init_device_mesh
    from torch.distributed.fsdp import fully_shard

    mesh = init_device_mesh("cpu", (dist.get_world_size(),))
    for layer in model.model.layers:
        fully_shard(layer, mesh=mesh)
    fully_shard(model, mesh=mesh)


def _map(value: Any, fn: Any) -> Any:
    if isinstance(value, dict):
        return {k: _map(v, fn) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return type(value)(_map(v, fn) for v in value)
    return fn(value)


def full_state(state: dict[str, Any]) -> dict[str, Any]:
    """`state` with every DTensor gathered into a full tensor (a collective: every rank
    calls it with the same structure, in the same order)."""
    from torch.distributed.tensor import DTensor

    return _map(state, lambda v: v.full_tensor() if isinstance(v, DTensor) else v)


def sharded_state(state: dict[str, Any], params: dict[str, Any]) -> dict[str, Any]:
    """A full-tensor trainer state (trainer.Trainer.state()) laid out like the sharded
    `params`: each parameter's value, best value and AdamW moments as a DTensor placed like
    it. Every rank holds the same file, so each takes its shard without communicating."""
    from torch.distributed.tensor import DTensor, distribute_tensor

    def like(param: Any, value: Any) -> Any:
        if not isinstance(param, DTensor) or not isinstance(value, torch.Tensor):
            return value
        if value.shape != param.shape:  # AdamW's scalar "step"
            return value
        return distribute_tensor(value, param.device_mesh, param.placements, src_data_rank=None)

    by_index = list(params.values())
    out = dict(state)
    out["params"] = {n: like(params.get(n), v) for n, v in state["params"].items()}
    if state.get("best_state") is not None:
        out["best_state"] = {n: like(params.get(n), v) for n, v in state["best_state"].items()}
    optimizer = dict(state["optimizer"])
    optimizer["state"] = {
        i: {k: like(by_index[int(i)], v) for k, v in moments.items()}
        for i, moments in state["optimizer"]["state"].items()
    }
    out["optimizer"] = optimizer
    return out


def unshard_all(model: nn.Module) -> None:
    """Gather every FSDP unit's weights (a collective): afterwards the module's parameters
    are plain full tensors, as after one process, and stay so (nothing reshards them
    until the next forward). Each unit is resharded first: a unit still gathered from an
    eval forward holds the values from before the best weights were copied back."""
    from torch.distributed.fsdp import FSDPModule

    units = [m for m in model.modules() if isinstance(m, FSDPModule)]
    for unit in units:
        unit.reshard()
    for unit in units:
        unit.unshard()
