"""ServeOptions: the server's knobs (limits, pool, safety), checked when built. Settings
carries the user-level defaults (host, port, keep_alive, max_queue, CORS); `from_settings`
starts from them. Knows nothing of FastAPI or the engine."""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass
from pathlib import Path

from hearth.config import DEFAULT_PORT, Settings
from hearth.engine.engine_config import SPECULATIVE_MODES
from hearth.model.quant_modes import DEFAULT_QUANT, QUANT_MODES

MIB = 1024 * 1024


@dataclass(frozen=True)
class ServeOptions:
    """host / port: where to listen (anything but a loopback address needs an API key).
    max_body_bytes: larger request bodies get 413.
    rate_limit_per_minute: requests per minute per API key (or per client address when
        auth is off); 0 = no limit.
    max_running: generation requests the engines work on at once; max_queue: how many more
        may wait; beyond that, 503 with Retry-After.
    keep_alive_s: idle time before a model unloads (negative = never; 0 = right away).
    max_loaded_models / memory_budget_gb: LRU-unload idle models to stay under these
        (0 = no limit). kv_cache_gb / max_model_len / dtype: how each model is loaded.
    origins: browser pages (Origin header) allowed besides loopback ones and cors_origins;
        any other Origin gets 403. allowed_hosts: Host header names accepted besides
        localhost / 127.0.0.1 / ::1 on a loopback bind (others get 403: DNS rebinding).
    ollama_port: also listen here (Ollama's 11434) when it is free; None = don't.
    max_auth_failures_per_minute: requests with a missing or wrong key per client address
        before 429 (key guessing), whatever rate_limit_per_minute says.
    staging_dir: where the store stages pip installs for pulls (None: under HEARTH_HOME).
    loras: LoRA adapters served by name, (name, PEFT folder or GGUF LoRA file, base model
        name) each;
        max_loras / max_lora_rank: adapters resident per model at once, their largest rank.
    tensor_parallel / pipeline_parallel / nnodes: each model split over this many processes
        (by heads, hearth.engine.tensor_parallel; or by layers, in stages,
        hearth.engine.pipeline_parallel; not both) on this many hosts."""

    host: str = "127.0.0.1"
    port: int = DEFAULT_PORT
    max_body_bytes: int = 4 * MIB
    rate_limit_per_minute: int = 0
    max_running: int = 64
    max_queue: int = 256
    keep_alive_s: float = 300.0
    max_loaded_models: int = 3
    memory_budget_gb: float = 0.0
    kv_cache_gb: float | None = None
    max_model_len: int | None = None
    # "auto": float32 for generation models, bfloat16 for embedding models where it keeps
    # their vectors' bar (LLM's default; hearth.engine.embedder.auto_dtype)
    dtype: str = "auto"
    quant: str = DEFAULT_QUANT  # one of QUANT_MODES; auto: the file's own quantization
    speculative: str = "off"  # EngineConfig.speculative of every model loaded
    draft_model: str | None = None  # EngineConfig.draft_model of every model loaded (--draft)
    cors_origins: tuple[str, ...] = ()
    origins: tuple[str, ...] = ()
    allowed_hosts: tuple[str, ...] = ()
    ollama_port: int | None = None
    max_auth_failures_per_minute: int = 30
    staging_dir: Path | None = None
    access_log: bool = True
    loras: tuple[tuple[str, str, str], ...] = ()
    max_loras: int = 4
    max_lora_rank: int = 16
    tensor_parallel: int = 1  # ranks each model's weights are split over
    pipeline_parallel: int = 1  # stages each model's layers are split over
    nnodes: int = 1  # hosts those ranks run on (the others start `hearth tp-worker`)

    def __post_init__(self) -> None:
        if not 0 <= self.port < 65536:  # 0: let the OS pick (tests)
            raise ValueError(f"port must be in 0..65535, got {self.port}")
        if self.ollama_port is not None and not 0 <= self.ollama_port < 65536:
            raise ValueError(f"ollama_port must be in 0..65535, got {self.ollama_port}")
        for name in (
            "max_body_bytes", "max_running", "max_auth_failures_per_minute", "tensor_parallel",
            "pipeline_parallel", "nnodes", "max_loras", "max_lora_rank",
        ):  # fmt: skip
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be >= 1, got {getattr(self, name)}")
        if self.tensor_parallel > 1 and self.pipeline_parallel > 1:
            raise ValueError(
                "tensor_parallel and pipeline_parallel do not combine yet: split each model "
                "one way (--tensor-parallel N or --pipeline-parallel N)"
            )
        for name in ("rate_limit_per_minute", "max_queue", "max_loaded_models"):
            if getattr(self, name) < 0:
                raise ValueError(f"{name} must be >= 0, got {getattr(self, name)}")
        if self.memory_budget_gb < 0:
            raise ValueError(f"memory_budget_gb must be >= 0, got {self.memory_budget_gb}")
        if self.kv_cache_gb is not None and self.kv_cache_gb <= 0:
            raise ValueError(f"kv_cache_gb must be > 0, got {self.kv_cache_gb}")
        if self.dtype not in ("auto", "float32", "bfloat16", "float16"):
            raise ValueError(
                f"dtype must be auto, float32, bfloat16 or float16, got {self.dtype!r}"
            )
        if self.quant not in QUANT_MODES:
            raise ValueError(f"quant must be one of {', '.join(QUANT_MODES)}, got {self.quant!r}")
        if self.speculative not in SPECULATIVE_MODES:
            raise ValueError(
                f"speculative must be one of {', '.join(SPECULATIVE_MODES)}, "
                f"got {self.speculative!r}"
            )
        if "*" in self.cors_origins and len(self.cors_origins) > 1:
            raise ValueError("cors_origins: '*' must be the only origin when given")

    @classmethod
    def from_settings(cls, settings: Settings, **overrides: object) -> ServeOptions:
        values: dict[str, object] = {
            "host": settings.host,
            "port": settings.port,
            "keep_alive_s": settings.keep_alive_s,
            "max_queue": settings.max_queue,
            "cors_origins": settings.cors_origins,
            "origins": settings.origins,
            "allowed_hosts": settings.allowed_hosts,
            "kv_cache_gb": settings.kv_cache_gb or None,
        }
        values.update({k: v for k, v in overrides.items() if v is not None})
        return cls(**values)  # type: ignore[arg-type]

    @property
    def is_loopback(self) -> bool:
        return is_loopback(self.host)

    @property
    def allowed_origins(self) -> tuple[str, ...]:
        """Origins allowed besides loopback pages: CORS-enabled ones and HEARTH_ORIGINS."""
        return tuple(dict.fromkeys((*self.cors_origins, *self.origins)))


def is_loopback(host: str) -> bool:
    """Whether binding `host` only accepts connections from this machine."""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False  # a host name: it may resolve to anything
