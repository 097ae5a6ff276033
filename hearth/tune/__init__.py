"""Fine-tuning on the user's own machine: LoRA (and DPO) over the one decoder, data as people
have it, checkpoints, adapters other runtimes load. For scripts:

    from hearth.tune import LoraConfig, TrainConfig, tune
    outcome = tune("smollm2:135m", "notes.jsonl", "smollm2-notes", TrainConfig(max_steps=100))

Talks to model/ for training, store/ for the base and the result; never to serve/."""

from hearth.model.layers.lora import LoraConfig
from hearth.tune.api import TuneOutcome, load_tuned, tune
from hearth.tune.train_config import TrainConfig
from hearth.tune.trainer import StepReport, Trainer, TrainResult

__all__ = [
    "LoraConfig",
    "StepReport",
    "TrainConfig",
    "TrainResult",
    "Trainer",
    "TuneOutcome",
    "load_tuned",
    "tune",
]
