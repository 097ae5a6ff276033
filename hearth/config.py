"""Settings: every environment variable and `config.toml` key hearth reads, declared once.

Each field of `Settings` is one setting, with its type, default and one-line meaning (the
field's `about(...)`); like vLLM's `envs.py` and Ollama's `envconfig`, nothing else in
hearth reads `os.environ` (tests may set it). A value comes from, in order of precedence:
the environment (`HEARTH_<FIELD>`, or the variable the field names, e.g. `HF_ENDPOINT`),
`$HEARTH_HOME/config.toml`, the default. `hearth config` prints them with their sources.

A bad value (a port that is not a number, an unknown choice, an unknown key in the file)
is a `UserInputError` naming the setting, the value, what is allowed and where it came
from, so the CLI exits 2 with one line.

The one process-level side effect, OpenMP's wait policy set before torch loads, is also
here (`set_omp_wait_policy`), called once by the CLI. Knows nothing of the layers above."""

from __future__ import annotations

import os
import re
import tomllib
from collections.abc import Mapping, MutableMapping
from dataclasses import Field, dataclass, field, fields
from pathlib import Path
from typing import Any

from hearth.errors import UserInputError

DEFAULT_PORT = 11435
KERNEL_MODES = ("auto", "torch")  # Settings.kernels (hearth.model.cpu backend)
# Settings.cpu_isa: the C kernels' instruction-set level, best first (hearth.model.cpu.isa)
CPU_ISA_MODES = ("auto", "avx512", "avx2", "generic")
CONFIG_FILE = "config.toml"
# set by hearth beside OMP_WAIT_POLICY when hearth (not the user) chose PASSIVE, so that
# processes that are not hearth (the bench's peers) can be given their own default back
HEARTH_SET_WAIT_POLICY = "HEARTH_SET_OMP_WAIT_POLICY"
_TRUE = ("1", "true", "yes", "on")
_FALSE = ("0", "false", "no", "off")


def about(
    meaning: str,
    *,
    env: str = "",
    file: bool = True,
    choices: tuple[str, ...] = (),
    minimum: float | None = None,
    maximum: float | None = None,
) -> dict[str, Any]:
    """A setting's declaration, as dataclass field metadata. `env`: its variable when not
    `HEARTH_<FIELD>`; `file`: whether config.toml may set it (not for what must be known
    before the file is read, or before torch loads); `choices`: the allowed values of an
    enum setting; `minimum`/`maximum`: bounds of a number."""
    return {
        "meaning": meaning,
        "env": env,
        "file": file,
        "choices": choices,
        "minimum": minimum,
        "maximum": maximum,
    }


@dataclass(frozen=True)
class Settings:
    """Where hearth keeps things, how it serves and how it uses the CPU. Built by
    `load_settings()`; constructing one directly checks the same bounds."""

    home: Path = field(
        default_factory=lambda: Path.home() / ".hearth",
        metadata=about("the store, database and config.toml live here", file=False),
    )
    host: str = field(default="127.0.0.1", metadata=about("address `hearth serve` binds"))
    port: int = field(
        default=DEFAULT_PORT,
        metadata=about("port `hearth serve` listens on", minimum=1, maximum=65535),
    )
    database_url: str = field(
        default="", metadata=about("database URL; empty: SQLite at $HEARTH_HOME/hearth.db")
    )
    num_threads: int = field(
        default=0,
        metadata=about("CPU threads; 0: the cores available to this process", minimum=0),
    )
    kv_cache_gb: float = field(
        default=0.0, metadata=about("KV-cache pool in GB; 0: a fraction of free RAM", minimum=0)
    )
    keep_alive_s: float = field(
        default=300.0, metadata=about("seconds a served model stays loaded after its last use")
    )
    max_queue: int = field(
        default=256, metadata=about("requests a server queues before answering 503", minimum=1)
    )
    cors_origins: tuple[str, ...] = field(
        default=(), metadata=about("extra browser origins the server accepts (comma-separated)")
    )
    # browser pages (Origin header) allowed besides loopback ones, as Ollama's OLLAMA_ORIGINS
    origins: tuple[str, ...] = field(
        default=(),
        metadata=about("browser origins allowed besides loopback pages (comma-separated)"),
    )
    # Host header names accepted besides localhost/127.0.0.1/::1 on a loopback bind (DNS rebinding)
    allowed_hosts: tuple[str, ...] = field(
        default=(),
        metadata=about("Host names a loopback server answers besides localhost (comma-separated)"),
    )
    ollama_port: int = field(
        default=11434,
        metadata=about(
            "`hearth serve --ollama-port` also answers here when it is free",
            minimum=1,
            maximum=65535,
        ),
    )
    pip_index_url: str = field(
        default="", metadata=about("index for pypi:// pulls; empty: pip's own configuration")
    )
    # the CPU package's power with every core busy: the usage ledger's energy estimate
    cpu_watts: float = field(
        default=65.0,
        metadata=about("CPU package watts with every core busy (usage ledger energy)", minimum=0),
    )
    price_table: str = field(
        default="", metadata=about("hosted-API prices for the usage ledger; empty: hearth's own")
    )
    kernels: str = field(
        default="auto",
        metadata=about(
            "the model's fast operations: auto (C kernels where they run) or torch (the "
            "reference layers); chosen once at load",
            choices=KERNEL_MODES,
        ),
    )
    cpu_isa: str = field(
        default="auto",
        metadata=about(
            "instruction-set level the C kernels are built for: auto (the best this CPU "
            "runs; none: kernels=torch), avx512, avx2 or generic (docs/cpu-isa.md)",
            choices=CPU_ISA_MODES,
        ),
    )
    disabled_kernels: tuple[str, ...] = field(
        default=(),
        metadata=about(
            "kernels to leave off under auto, a debugging aid (comma-separated; names: "
            "hearth.model.cpu.backend)"
        ),
    )
    # an AVX2-only (or any other) llama.cpp build beside the environment's (docs/cpu-isa.md)
    bench_llama_cpp_path: str = field(
        default="",
        metadata=about(
            "folder holding a llama_cpp package (pip install --target) the bench's llama.cpp "
            "peer imports instead of the installed one; empty: the installed one"
        ),
    )
    hf_endpoint: str = field(
        default="",
        metadata=about(
            "Hugging Face Hub address for hf:// pulls; empty: huggingface.co", env="HF_ENDPOINT"
        ),
    )
    eval_data: str = field(
        default="",
        metadata=about(
            "evaluation data folder (<task>/<split>.jsonl); empty: $HEARTH_HOME/eval-data"
        ),
    )
    # the C toolchain's own conventions, declared here so that model/ reads no environment
    cc: str = field(
        default="cc",
        metadata=about("C compiler that builds hearth's kernels at first use", env="CC"),
    )
    xdg_cache_home: Path = field(
        default_factory=lambda: Path.home() / ".cache",
        metadata=about(
            "cache root: the built C kernels go to hearth/kernels under it", env="XDG_CACHE_HOME"
        ),
    )
    # torchrun's rendezvous pair: where tensor-parallel ranks meet (rank 0 listens)
    master_addr: str = field(
        default="127.0.0.1",
        metadata=about(
            "address tensor-parallel ranks meet at (rank 0's host)", env="MASTER_ADDR"
        ),
    )
    master_port: int = field(
        default=0,
        metadata=about(
            "port tensor-parallel ranks meet at; 0: a free one (single node only)",
            env="MASTER_PORT",
            minimum=0,
            maximum=65535,
        ),
    )
    # read before torch loads (set_omp_wait_policy), hence environment only
    dedicated_cpu: bool = field(
        default=False,
        metadata=about(
            "the cores are hearth's alone: every step on all threads, OpenMP workers spin "
            "(docs/threads.md)",
            file=False,
        ),
    )
    omp_wait_policy: str = field(
        default="",
        metadata=about(
            "how idle OpenMP workers wait; unset: hearth sets PASSIVE before torch loads",
            env="OMP_WAIT_POLICY",
            file=False,
        ),
    )
    gomp_spincount: str = field(
        default="",
        metadata=about(
            "how long idle OpenMP workers spin (set: hearth leaves OMP_WAIT_POLICY alone)",
            env="GOMP_SPINCOUNT",
            file=False,
        ),
    )

    def __post_init__(self) -> None:
        for f in fields(self):
            problem = _out_of_bounds(f, getattr(self, f.name))
            if problem:
                raise ValueError(f"{f.name} must be {problem}, got {getattr(self, f.name)!r}")

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
    def eval_data_dir(self) -> Path:
        return Path(self.eval_data).expanduser() if self.eval_data else self.home / "eval-data"

    @property
    def threads(self) -> int:
        if self.num_threads:
            return self.num_threads
        try:
            return len(os.sched_getaffinity(0))
        except AttributeError:  # not Linux
            return os.cpu_count() or 1

    @property
    def openmp_workers_sleep(self) -> bool:
        """Whether libgomp's idle workers sleep at once (OMP_WAIT_POLICY=PASSIVE, as the
        CLI sets it, or GOMP_SPINCOUNT=0) rather than spin (its default)."""
        return self.omp_wait_policy.upper() == "PASSIVE" or self.gomp_spincount == "0"


def env_name(f: Field[Any]) -> str:
    """The environment variable of a setting."""
    return str(f.metadata.get("env") or f"HEARTH_{f.name.upper()}")


def _out_of_bounds(f: Field[Any], value: Any) -> str:
    """'' if value is allowed, else what is allowed ("one of auto, torch", "in 1..65535")."""
    meta = f.metadata
    choices = meta.get("choices") or ()
    if choices and value not in choices:
        return "one of " + ", ".join(choices)
    low, high = meta.get("minimum"), meta.get("maximum")
    if not isinstance(value, (int, float)) or isinstance(value, bool):
        return ""
    if (low is not None and value < low) or (high is not None and value > high):
        if high is None:
            return f">= {low}"
        return f"in {low}..{high}" if low is not None else f"<= {high}"
    return ""


def _parse(f: Field[Any], raw: Any) -> Any:
    """raw (an environment string or a TOML value) as the field's type; ValueError says
    what is allowed."""
    kind = str(f.type)
    if kind == "bool":
        if isinstance(raw, bool):
            return raw
        text = str(raw).strip().lower()
        if text in _TRUE or text in _FALSE:
            return text in _TRUE
        raise ValueError("true or false (1/0, yes/no, on/off)")
    if kind in ("int", "float"):
        if isinstance(raw, bool) or not isinstance(raw, (int, float, str)):
            raise ValueError("a number")
        try:
            number = int(raw) if kind == "int" else float(raw)
        except ValueError:
            raise ValueError("a whole number" if kind == "int" else "a number") from None
        if kind == "int" and isinstance(raw, float) and raw != number:
            raise ValueError("a whole number")
        return number
    if kind == "Path":
        return Path(str(raw)).expanduser()
    if kind == "tuple[str, ...]":
        if isinstance(raw, str):
            return tuple(o.strip() for o in raw.split(",") if o.strip())
        if isinstance(raw, list) and all(isinstance(o, str) for o in raw):
            return tuple(raw)
        raise ValueError("a list of strings (or one comma-separated string)")
    if not isinstance(raw, str):
        raise ValueError("a string")
    return raw


def _checked(f: Field[Any], raw: Any, where: str) -> Any:
    try:
        value = _parse(f, raw)
    except ValueError as exc:
        allowed = str(exc)
    else:
        allowed = _out_of_bounds(f, value)
        if not allowed:
            return value
    raise UserInputError(f"setting {f.name} ({where}) must be {allowed}, got {raw!r}; fix {where}")


@dataclass(frozen=True)
class Resolved:
    """One setting as `hearth config` shows it."""

    name: str
    value: Any
    source: str  # "default", the config.toml path, or "environment (VAR)"
    env: str
    meaning: str


def resolve(env: Mapping[str, str] | None = None) -> tuple[Settings, list[Resolved]]:
    """The settings and, for each, its value and where it came from."""
    env = os.environ if env is None else env
    by_name = {f.name: f for f in fields(Settings)}
    values: dict[str, Any] = {}
    sources: dict[str, str] = {}
    home_raw = env.get(env_name(by_name["home"]), "")
    if home_raw:
        values["home"], sources["home"] = (
            Path(home_raw).expanduser(),
            f"environment ({env_name(by_name['home'])})",
        )
    home = values.get("home", Path.home() / ".hearth")
    config_file = home / CONFIG_FILE
    for key, raw in _read_file(config_file).items():
        f = by_name.get(key)
        if f is None or not f.metadata["file"]:
            known = sorted(n for n, g in by_name.items() if g.metadata["file"])
            raise UserInputError(
                f"{config_file}: unknown setting '{key}'; allowed keys: {', '.join(known)}"
                + (f" ({key} is set by {env_name(f)} only)" if f is not None else "")
            )
        values[key], sources[key] = _checked(f, raw, str(config_file)), str(config_file)
    for f in by_name.values():
        raw = env.get(env_name(f), "")
        if f.name != "home" and raw != "":
            where = f"environment ({env_name(f)})"
            values[f.name], sources[f.name] = _checked(f, raw, env_name(f)), where
    if env.get(HEARTH_SET_WAIT_POLICY) and "omp_wait_policy" in sources:
        sources["omp_wait_policy"] = "hearth (set before torch loads)"
    settings = Settings(**values)
    rows = [
        Resolved(
            f.name,
            getattr(settings, f.name),
            sources.get(f.name, "default"),
            env_name(f),
            str(f.metadata["meaning"]),
        )
        for f in fields(settings)
    ]
    return settings, rows


def _read_file(path: Path) -> dict[str, Any]:
    if not path.is_file():
        return {}
    try:
        return tomllib.loads(path.read_text(encoding="utf-8"))
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
        raise UserInputError(f"{path} is not valid TOML ({exc}); fix or remove the file") from exc
    except OSError as exc:
        raise UserInputError(f"cannot read {path} ({exc.strerror}); fix its permissions") from exc


def load_settings(env: Mapping[str, str] | None = None) -> Settings:
    """Settings from the environment (os.environ by default), then `config.toml` under
    HEARTH_HOME, then the defaults."""
    return resolve(env)[0]


def shown(value: Any) -> Any:
    """A value as `hearth config` prints it: paths as text, passwords in URLs masked."""
    if isinstance(value, Path):
        return str(value)
    if isinstance(value, tuple):
        return list(value)
    if isinstance(value, str):
        return re.sub(r"://([^:/@]+):[^@/]+@", r"://\1:***@", value)
    return value


# -- the process environment ---------------------------------------------------------
def quiet_ray_usage_stats(env: MutableMapping[str, str] | None = None) -> None:
    """No usage reports from an offline server: Ray reads RAY_USAGE_STATS_ENABLED when it
    starts (hearth/serve/replicas/); a value the user set wins."""
    env = os.environ if env is None else env
    env.setdefault("RAY_USAGE_STATS_ENABLED", "0")


def set_omp_wait_policy(env: MutableMapping[str, str] | None = None) -> bool:
    """Set OMP_WAIT_POLICY=PASSIVE in `env` (os.environ by default) unless the user chose
    how OpenMP workers wait (OMP_WAIT_POLICY, GOMP_SPINCOUNT) or said the cores are
    hearth's alone (HEARTH_DEDICATED_CPU). libgomp reads it when torch loads, so the CLI
    calls this first; hearth/engine/threads.py says why. Returns whether it set it."""
    env = os.environ if env is None else env
    by_name = {f.name: f for f in fields(Settings)}
    chosen = [
        _checked(by_name[name], env[env_name(by_name[name])], env_name(by_name[name]))
        for name in ("omp_wait_policy", "gomp_spincount", "dedicated_cpu")
        if env.get(env_name(by_name[name]), "")
    ]
    if any(chosen):
        return False
    env["OMP_WAIT_POLICY"] = "PASSIVE"
    env[HEARTH_SET_WAIT_POLICY] = "1"
    return True


def peer_environment(env: Mapping[str, str] | None = None) -> dict[str, str]:
    """`env` (os.environ by default) for a process that is not hearth: without the PASSIVE
    wait policy hearth chose for itself (a user's own choice stays). llama.cpp's OpenMP
    threads under PASSIVE: 2-thread decode 160 -> 45 tok/s on 2 quiet cores."""
    out = dict(os.environ if env is None else env)
    if out.pop(HEARTH_SET_WAIT_POLICY, None):
        out.pop("OMP_WAIT_POLICY", None)
    return out
