"""EngineConfig (the engine's knobs) and the KV-cache sizing that turns a memory budget into
a number of blocks and a max_model_len. Knows nothing of the model's code: it is given the
bytes one block takes."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from hearth.errors import CapacityError, InvalidParameterError, UserInputError

GIB = 1024**3
# share of available RAM the KV cache takes when no budget is given: the weights, the
# activations and the rest of the machine need the remainder
DEFAULT_KV_FRACTION = 0.25
# full contexts the default pool holds (Ollama's OLLAMA_NUM_PARALLEL default of 4 slots of
# num_ctx each). Sized from what the model needs, not from the machine: a share of RAM gave
# a 98 MB model a 5.3 GB pool. Shorter requests fit many more; past it, preemption.
DEFAULT_KV_CONTEXTS = 4
# speculative decoding (engine/spec/): "ngram" drafts by prompt lookup whenever the text
# repeats; "auto", "self" and "draft" draft only where measured costs say it pays
SPECULATIVE_MODES = ("off", "auto", "ngram", "self", "draft")
MAX_SPECULATIVE_TOKENS = 16  # drafts per sequence and step; more never pays on a CPU
# self-speculation's draft: the first num_hidden_layers // SELF_DRAFT_LAYER_DIVISOR layers
# (at least one). A quarter: drafting a token then costs about a quarter of a target step
# (k=5 drafts ~1.25 steps), so it pays from about 60% acceptance per token; LayerSkip
# (Elhoushi et al. 2024) exits early around this depth for models trained for it. A model
# not trained for early exit accepts far less, and the pays-or-stops policy turns it off.
SELF_DRAFT_LAYER_DIVISOR = 4
SPECULATIVE_HELP = (
    "Speculative decoding: auto (prompt lookup, where measured step costs say it pays), "
    "ngram (prompt lookup whenever the text repeats), self (the model's own first layers "
    "draft), draft (a smaller model with the same tokenizer drafts: --draft MODEL), off."
)


def check_speculative(mode: str) -> str:
    """A surface's speculative mode, refused with the modes there are."""
    if mode not in SPECULATIVE_MODES:
        raise UserInputError(
            f"--speculative {mode!r} is not a mode; use one of {', '.join(SPECULATIVE_MODES)}"
        )
    return mode


def request_speculation(asked: str, engine_mode: str) -> bool:
    """A request's `speculative` mode as SamplingParams.speculate. "off" turns drafting off
    for it; "auto" or the mode the model runs with keep it; the drafter is the model's (it
    holds the draft model or the draft layers' cache), so a request cannot pick another."""
    if asked == "off":
        return False
    if asked in ("auto", engine_mode):
        return True
    modes = "off" if engine_mode == "off" else f"off, auto or {engine_mode}"
    raise InvalidParameterError(
        "speculative",
        f"speculative: {asked!r} is not a mode this model runs with (it runs "
        f"{engine_mode!r}); a request may ask for {modes}, or true / false",
    )


def self_draft_layers(num_hidden_layers: int, wanted: int | None) -> int:
    """The layers self-speculation drafts with: `wanted`, or the default share; a count
    the model does not have is refused with the range there is."""
    if wanted is None:
        return max(1, num_hidden_layers // SELF_DRAFT_LAYER_DIVISOR)
    if not 1 <= wanted < num_hidden_layers:
        raise UserInputError(
            f"self_draft_layers {wanted} does not fit a model of {num_hidden_layers} layers; "
            f"give 1..{num_hidden_layers - 1} (fewer than all: the draft must be cheaper)"
        )
    return wanted


# LoRA adapters resident at once by default (their slots take memory only once one loads)
DEFAULT_MAX_LORAS = 4


@dataclass(frozen=True)
class EngineConfig:
    """block_size: tokens per KV block. kv_cache_gb: None = what min(max_num_seqs,
    DEFAULT_KV_CONTEXTS) full contexts need, never more than DEFAULT_KV_FRACTION of free
    RAM. max_model_len: None = the model's context, capped by what the KV pool holds.
    max_loras: LoRA adapters resident at once (slots; more may be registered, they take
    turns, least recently used out); None = min(DEFAULT_MAX_LORAS, max_num_seqs). max_lora_rank: the largest adapter rank they take."""

    block_size: int = 16
    kv_cache_gb: float | None = None
    max_num_batched_tokens: int = 512
    max_num_seqs: int = 64
    max_model_len: int | None = None
    enable_prefix_caching: bool = True
    seed: int | None = None  # the shared generator of unseeded requests
    # speculative decoding (engine/spec/): "off", "ngram" (prompt lookup whenever it
    # matches), "auto" (prompt lookup where measured step costs say it pays), "self" (the
    # first self_draft_layers layers draft; None = SELF_DRAFT_LAYER_DIVISOR's share) or
    # "draft" (draft_model, a store name or a path, drafts); up to num_speculative_tokens
    # drafted tokens per sequence and step
    speculative: str = "off"
    num_speculative_tokens: int = 5
    draft_model: str | None = None
    self_draft_layers: int | None = None
    max_loras: int | None = None
    max_lora_rank: int = 16

    def __post_init__(self) -> None:
        if self.block_size < 1:
            raise ValueError(f"block_size must be >= 1, got {self.block_size}")
        if self.kv_cache_gb is not None and self.kv_cache_gb <= 0:
            raise ValueError(f"kv_cache_gb must be > 0, got {self.kv_cache_gb}")
        if self.max_num_batched_tokens < 1:
            raise ValueError(
                f"max_num_batched_tokens must be >= 1, got {self.max_num_batched_tokens}"
            )
        if self.max_num_seqs < 1:
            raise ValueError(f"max_num_seqs must be >= 1, got {self.max_num_seqs}")
        if self.speculative not in SPECULATIVE_MODES:
            raise ValueError(
                f"speculative must be one of {', '.join(SPECULATIVE_MODES)}, "
                f"got {self.speculative!r}"
            )
        if not 1 <= self.num_speculative_tokens <= MAX_SPECULATIVE_TOKENS:
            raise ValueError(
                f"num_speculative_tokens must be in 1..{MAX_SPECULATIVE_TOKENS}, "
                f"got {self.num_speculative_tokens}"
            )
        if self.self_draft_layers is not None and self.self_draft_layers < 1:
            raise ValueError(f"self_draft_layers must be >= 1, got {self.self_draft_layers}")
        if self.max_loras is not None and self.max_loras < 1:
            raise ValueError(f"max_loras must be >= 1, got {self.max_loras}")
        if self.max_loras is not None and self.max_loras > self.max_num_seqs:
            raise ValueError(
                f"max_loras {self.max_loras} is more than max_num_seqs {self.max_num_seqs}: "
                "a slot no sequence could use; give at most max_num_seqs"
            )
        if self.max_lora_rank < 1:
            raise ValueError(f"max_lora_rank must be >= 1, got {self.max_lora_rank}")
        if self.max_model_len is not None and self.max_model_len < 2:
            raise ValueError(f"max_model_len must be >= 2, got {self.max_model_len}")

    @property
    def num_lora_slots(self) -> int:
        """max_loras, or its default for this many sequences."""
        if self.max_loras is not None:
            return self.max_loras
        return min(DEFAULT_MAX_LORAS, self.max_num_seqs)


def available_memory_bytes() -> int:
    """MemAvailable from /proc/meminfo; elsewhere a conservative 4 GiB."""
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemAvailable:"):
                return int(line.split()[1]) * 1024
    except OSError:
        pass
    return 4 * GIB


@dataclass(frozen=True)
class KVPlan:
    num_blocks: int
    max_model_len: int


def plan_kv_cache(config: EngineConfig, bytes_per_block: int, model_context: int) -> KVPlan:
    """How many blocks to allocate and the context the engine then honours."""
    bs = config.block_size
    if config.max_model_len is not None and config.max_model_len > model_context:
        raise UserInputError(
            f"max_model_len {config.max_model_len} is longer than the model's context "
            f"({model_context} tokens); use at most {model_context}"
        )
    wanted_len = config.max_model_len or model_context
    if config.kv_cache_gb is not None:
        budget = int(config.kv_cache_gb * GIB)
    else:
        contexts = min(config.max_num_seqs, DEFAULT_KV_CONTEXTS)
        blocks_for_all = contexts * -(-wanted_len // bs)
        budget = min(
            int(available_memory_bytes() * DEFAULT_KV_FRACTION), blocks_for_all * bytes_per_block
        )
    num_blocks = budget // bytes_per_block
    if num_blocks < 1:
        raise CapacityError(
            f"a KV-cache budget of {budget / GIB:.4g} GB is too small for one block of this "
            f"model: one block of {bs} tokens needs {bytes_per_block} bytes "
            f"({bytes_per_block / GIB:.4g} GB); raise kv_cache_gb (--kv-cache-gb)"
        )
    capacity = num_blocks * bs
    if config.max_model_len is not None and config.max_model_len > capacity:
        needed = -(-config.max_model_len // bs) * bytes_per_block
        raise CapacityError(
            f"max_model_len {config.max_model_len} needs {needed / GIB:.4g} GB of KV cache but "
            f"the budget of {budget / GIB:.4g} GB holds {capacity} tokens; raise kv_cache_gb "
            "or lower max_model_len (--ctx)"
        )
    return KVPlan(num_blocks=num_blocks, max_model_len=min(wanted_len, capacity))
