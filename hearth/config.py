"""Settings: one object, read from `HEARTH_*` environment variables and an optional
`$HEARTH_HOME/config.toml` (environment wins). Knows nothing of the layers that use it."""

from __future__ import annotations

import os
import tomllib
from dataclasses import dataclass, field, fields, replace
from pathlib import Path
from typing import Any

from hearth.errors import InvalidParameterError

DEFAULT_PORT = 11435
KERNEL_MODES = ("auto", "torch")  # Settings.kernels (hearth.model.backend)


@dataclass(frozen=True)
class Settings:
    """Where hearth keeps things and how it serves. Built by `load_settings()`."""

    home: Path = field(default_factory=lambda: Path.home() / ".hearth")
    host: str = "127.0.0.1"
    port: int = DEFAULT_PORT
    database_url: str = ""  # empty: SQLite at $HEARTH_HOME/hearth.db
    num_threads: int = 0  # 0: follow the cores available to this process
    kv_cache_gb: float = 0.0  # 0: a fraction of free RAM
    keep_alive_s: float = 300.0
    max_queue: int = 256
    cors_origins: tuple[str, ...] = ()
    # browser pages (Origin header) allowed besides loopback ones, as Ollama's OLLAMA_ORIGINS
    origins: tuple[str, ...] = ()
    # Host header names accepted besides localhost/127.0.0.1/::1 on a loopback bind (DNS rebinding)
    allowed_hosts: tuple[str, ...] = ()
    ollama_port: int = 11434  # `hearth serve --ollama-port` also answers here when it is free
    pip_index_url: str = ""  # empty: pip's own configuration decides
    # the CPU package's power with every core busy: the usage ledger's energy estimate
    cpu_watts: float = 65.0
    price_table: str = ""  # hosted-API prices for the usage ledger; empty: hearth's own
    # the model's fast operations: "auto" (C kernels where they run) or "torch" (reference)
    kernels: str = "auto"
    # kernels to leave off under "auto", a debugging aid (names: hearth.model.cpu.backend)
    disabled_kernels: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        if not 0 < self.port < 65536:
            raise ValueError(f"port must be in 1..65535, got {self.port}")
        if not 0 < self.ollama_port < 65536:
            raise ValueError(f"ollama_port must be in 1..65535, got {self.ollama_port}")
        if self.num_threads < 0:
            raise ValueError(f"num_threads must be >= 0, got {self.num_threads}")
        if self.cpu_watts < 0:
            raise ValueError(f"cpu_watts must be >= 0, got {self.cpu_watts}")
        if self.kv_cache_gb < 0:
            raise ValueError(f"kv_cache_gb must be >= 0, got {self.kv_cache_gb}")
        if self.kernels not in KERNEL_MODES:
            raise InvalidParameterError(
                "kernels",
                f"setting kernels (HEARTH_KERNELS) must be one of {', '.join(KERNEL_MODES)}, "
                f"got {self.kernels!r}",
            )

    @property
    def blobs_dir(self) -> Path:
        return self.home / "blobs"

    @property
    def manifests_dir(self) -> Path:
        return self.home / "manifests"

    @property
    def db_url(self) -> str:
        return self.database_url or f"sqlite:///{self.home / 'hearth.db'}"

    @property
    def threads(self) -> int:
        if self.num_threads:
            return self.num_threads
        try:
            return len(os.sched_getaffinity(0))
        except AttributeError:  # not Linux
            return os.cpu_count() or 1


def _coerce(name: str, raw: Any) -> Any:
    kinds = {f.name: f.type for f in fields(Settings)}
    kind = kinds[name]
    if name == "home":
        return Path(str(raw)).expanduser()
    if kind == "int":
        return int(raw)
    if kind == "float":
        return float(raw)
    if name in ("cors_origins", "origins", "allowed_hosts", "disabled_kernels"):
        if isinstance(raw, str):
            return tuple(o.strip() for o in raw.split(",") if o.strip())
        return tuple(raw)
    return str(raw)


def load_settings(env: dict[str, str] | None = None) -> Settings:
    """Settings from `config.toml` under HEARTH_HOME, then `HEARTH_<FIELD>` env vars."""
    env = dict(os.environ if env is None else env)
    home = Path(env.get("HEARTH_HOME", str(Path.home() / ".hearth"))).expanduser()
    values: dict[str, Any] = {"home": home}
    config_file = home / "config.toml"
    names = {f.name for f in fields(Settings)}
    if config_file.is_file():
        try:
            data = tomllib.loads(config_file.read_text())
        except tomllib.TOMLDecodeError as exc:
            raise ValueError(f"{config_file}: {exc}; fix or remove the file") from exc
        for key, raw in data.items():
            if key not in names or key == "home":
                raise ValueError(
                    f"{config_file}: unknown setting '{key}'; known: {', '.join(sorted(names - {'home'}))}"
                )
            values[key] = _coerce(key, raw)
    for name in names - {"home"}:
        raw = env.get(f"HEARTH_{name.upper()}")
        if raw is not None and raw != "":
            values[name] = _coerce(name, raw)
    return Settings(**values)


def with_home(settings: Settings, home: Path) -> Settings:
    return replace(settings, home=home)
