"""`tune(base, data, name)`: the whole run for scripts and the CLI. The license gate for
"tune" first; then the base is loaded from the store, the data prepared with its template,
LoRA applied (or every weight trained for --method full), the loop run with checkpoints
under $HEARTH_HOME/tune/<name>/, and the result stored as base + adapter (store/adapters.py).
Nothing in the store changes until the run finishes. `merge` folds a tuned model's adapter
into its base and stores the merged model. Knows nothing of the terminal."""

from __future__ import annotations

import shutil
import tempfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import torch

from hearth.config import Settings, load_settings
from hearth.errors import InvalidParameterError, UserInputError
from hearth.licenses import detection_from_stored, enforce
from hearth.model.build import build_model
from hearth.model.layers.lora import apply_lora
from hearth.store import Store
from hearth.store.adapters import add_adapter_model, locate_adapter_model
from hearth.store.names import ModelName
from hearth.store.records import ModelRecord
from hearth.tokenizer import load_tokenizer
from hearth.tune.adapter_files import load_adapter, load_adapter_weights, save_adapter
from hearth.tune.export import name_problem
from hearth.tune.merge import full_deltas, write_merged, write_with_deltas
from hearth.tune.prepare import Prepared, prepare_data
from hearth.tune.train_config import TrainConfig
from hearth.tune.trainer import StepReport, Trainer, TrainResult
from hearth.tune.training_model import training_model
from hearth.weights.loader import load_weights

__all__ = ["TuneOutcome", "checkpoint_path", "load_tuned", "merge", "tune"]


@dataclass(frozen=True)
class TuneOutcome:
    """record: the stored model (None when the run was interrupted: see checkpoint)."""

    name: str
    record: ModelRecord | None
    result: TrainResult
    checkpoint: Path
    data: Prepared
    trainable_params: int
    warnings: list[str]


def checkpoint_path(settings: Settings, name: str) -> Path:
    model = ModelName.parse(name)
    return settings.home / "tune" / f"{model.name}-{model.tag}" / "checkpoint.pt"


def _license_warnings(
    store: Store,
    record: ModelRecord,
    name: str,
    data_from: str | None,
    settings: Settings,
    accept_license: bool,
) -> list[str]:
    """The policy's verdict on tuning `record` (and on training from `data_from`'s outputs):
    warnings, or PolicyError; plus what the license asks of the new model's name (said now,
    checked at export: the license binds what is distributed)."""
    warnings = enforce(
        detection_from_stored(record.license_id, record.license_signals), "tune", settings,
        record.digest, accept_license,
    )  # fmt: skip
    if data_from is not None:
        teacher = store.get(data_from)
        warnings += enforce(
            detection_from_stored(teacher.license_id, teacher.license_signals), "train_other",
            settings, teacher.digest, accept_license,
        )  # fmt: skip
    problem = name_problem(record.license_id, ModelName.parse(name).name)
    if problem is not None:
        warnings.append(f"--name {name}: {problem}")
    return warnings


def _check_ranks(nproc: int, shard: str, ray_address: str | None) -> None:
    from hearth.tune.sharding import SHARD_CHOICES

    if nproc < 1:
        raise InvalidParameterError("nproc", f"--nproc must be >= 1, got {nproc}")
    if shard not in SHARD_CHOICES:
        raise InvalidParameterError(
            "shard", f"--shard must be one of {', '.join(SHARD_CHOICES)}, got {shard!r}"
        )
    if shard == "full" and nproc < 2 and ray_address is None:
        raise InvalidParameterError(
            "shard", "--shard full splits the model over ranks: add --nproc 2 or more"
        )
    if ray_address is not None:  # before any work: an address nothing answers at fails now
        from hearth.tune.ray_train import check_address

        check_address(ray_address)


def tune(
    base: str,
    data: str | Path,
    name: str,
    config: TrainConfig | None = None,
    *,
    resume: bool = False,
    data_from: str | None = None,
    dtype: torch.dtype = torch.bfloat16,
    accept_license: bool = False,
    settings: Settings | None = None,
    on_step: Callable[[StepReport], None] | None = None,
    on_info: Callable[[str], None] | None = None,
    trainer_ready: Callable[[Trainer], None] | None = None,
    nproc: int = 1,
    shard: str = "auto",
    ray_address: str | None = None,
) -> TuneOutcome:
    """Fine-tune the stored model `base` on `data` and store the result as `name`.
    `data_from`: the stored model whose outputs the data are (e.g. exported arena answers):
    its license is checked for "train_other" too. `nproc` > 1: data-parallel over that many
    local processes, config.batch_size blocks each (global batch nproc x batch_size x
    grad_accum); `shard`: full (FSDP), none (DDP) or auto (tune/sharding.py's rule).
    `ray_address`: the nproc ranks are Ray Train workers on that cluster ("local": a Ray
    started for the run)."""
    config = config or TrainConfig()
    settings = settings or load_settings()
    ModelName.parse(name)  # a bad name fails before any work
    _check_ranks(nproc, shard, ray_address)
    store = Store(settings)
    record = store.get(base)
    warnings = _license_warnings(store, record, name, data_from, settings, accept_license)
    location = store.locate(base)
    info = on_info or (lambda _m: None)
    tokenizer = load_tokenizer(location.path)
    prepared = prepare_data(data, tokenizer, config, settings.hf_endpoint)
    info(
        f"{prepared.num_examples} examples, {prepared.num_tokens} tokens: {len(prepared.train)} "
        f"training {'pairs' if config.method == 'dpo' else 'blocks'}, {len(prepared.eval)} held out"
    )
    model = training_model(location.path, config, dtype)
    checkpoint = checkpoint_path(settings, name)
    if nproc > 1 or ray_address is not None:  # DDP/FSDP ranks (tune/distributed.py)
        from hearth.tune.distributed import RankJob, start_rank0
        from hearth.tune.sharding import resolve_shard

        job = RankJob(str(location.path), str(dtype).removeprefix("torch."), config,
                      prepared.train, prepared.eval, str(checkpoint), resume,
                      resolve_shard(shard, config.method, model, nproc))  # fmt: skip
        info(f"{nproc} ranks, {'FSDP (sharded)' if job.shard == 'full' else 'DDP'}"
             + (f" on Ray Train ({ray_address})" if ray_address else ""))  # fmt: skip
        if ray_address is not None:
            from hearth.tune.ray_train import RayTrainer

            trainer: Trainer = RayTrainer(model, job, nproc, ray_address)
        else:  # this process is rank 0
            trainer = start_rank0(model, job, nproc)
    else:
        trainer = Trainer(model, config, prepared.train, prepared.eval, checkpoint)
    if resume:
        trainer.resume()
        info(f"resumed from {checkpoint} at step {trainer.step}")
    if trainer_ready is not None:
        trainer_ready(trainer)
    result = trainer.run(on_step)
    trainable = sum(p.numel() for p in trainer.params.values())
    if result.interrupted:
        return TuneOutcome(name, None, result, checkpoint, prepared, trainable, warnings)
    if config.method == "full":
        # the trained weights as a plain model in the base's format, made through the merge
        # path (base + change), so a GGUF stays a GGUF with its metadata and license
        deltas = full_deltas(model, location.path)
        del trainer, model
        with tempfile.TemporaryDirectory(dir=settings.home) as tmp:
            path = write_with_deltas(location.path, record.format, deltas, Path(tmp), name)
            stored = store.import_path(
                path, name, accept_license=accept_license, source=f"tune:{record.name}"
            )
        shutil.rmtree(checkpoint.parent, ignore_errors=True)
        return TuneOutcome(name, stored, result, checkpoint, prepared, trainable, warnings)
    with tempfile.TemporaryDirectory(dir=settings.home) as tmp:
        folder = Path(tmp) / "adapter"
        save_adapter(model, config.lora, folder, record.name, record.digest,
                     {"method": config.method, "steps": result.steps})  # fmt: skip
        stored = add_adapter_model(store, base, name, folder)
    shutil.rmtree(checkpoint.parent, ignore_errors=True)  # the run is done and stored
    return TuneOutcome(name, stored, result, checkpoint, prepared, trainable, warnings)


def load_tuned(
    name: str, settings: Settings | None = None, dtype: torch.dtype = torch.float32
) -> tuple[torch.nn.Module, str, str]:
    """(the base model with the adapter of the tuned model `name` applied, base name, base
    digest). For export, merge and tests."""
    store = Store(settings or load_settings())
    where = locate_adapter_model(store, name)
    adapter = load_adapter(where.adapter_dir)
    weights = load_weights(where.base_path, dtype)
    model = build_model(weights.config, weights.tensors, dtype)
    apply_lora(model, adapter.lora)
    load_adapter_weights(model, adapter.weights)
    if not where.base_path.exists():
        raise UserInputError(f"the base files of {name} are missing; run `hearth verify {name}`")
    return model, where.base, where.base_digest


def merge(
    name: str, new_name: str | None = None, *, accept_license: bool = False,
    settings: Settings | None = None,
) -> ModelRecord:  # fmt: skip
    """Store the tuned model `name` with its adapter folded into the base's weights, as
    `new_name` (default: `<name>-merged`), a plain model run and serve can use."""
    settings = settings or load_settings()
    store = Store(settings)
    where = locate_adapter_model(store, name)
    model = ModelName.parse(name)
    target = new_name or f"{model.name}-merged:{model.tag}"
    with tempfile.TemporaryDirectory(dir=settings.home) as tmp:
        path = write_merged(
            where.base_path, where.base_format, load_adapter(where.adapter_dir), Path(tmp), target
        )
        return store.import_path(
            path, target, accept_license=accept_license, source=f"merge:{name}"
        )
