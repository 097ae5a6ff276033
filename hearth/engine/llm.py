"""LLM: the offline Python API (vLLM's `LLM`). `LLM("smollm2")` finds the model in the store
(pulling a catalog model first when missing) or opens a file path, loads the weights and
tokenizer, builds the decoder and the engine; `.generate()` and `.chat()` run batches to
completion. Knows nothing of HTTP or the CLI."""

from __future__ import annotations

import itertools
from collections.abc import Callable, Sequence
from dataclasses import fields, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch

from hearth.config import Settings, load_settings
from hearth.engine.engine_config import EngineConfig, plan_kv_cache
from hearth.engine.generation_defaults import GenerationDefaults
from hearth.engine.llm_engine import LLMEngine
from hearth.engine.outputs import RequestOutput
from hearth.engine.sampling_params import SamplingParams
from hearth.errors import ModelNotFoundError, UserInputError
from hearth.model.quant_modes import DEFAULT_QUANT

if TYPE_CHECKING:
    from hearth.engine.embedder import Embedder

# (label, bytes done, bytes total; 0 = unknown) -> None, as the store reports it
Progress = Callable[[str, int, int], None]
Message = dict[str, Any]


def resolve_model(
    model: str | Path, settings: Settings, progress: Progress | None = None
) -> tuple[Path, Any]:
    """(path, the store's ModelRecord or None for a path given directly)."""
    path = Path(model).expanduser()
    if path.exists():
        return path, None
    from hearth.store import Store
    from hearth.store.catalog import lookup

    store = Store(settings)
    name = str(model)
    try:
        location = store.locate(name)
    except ModelNotFoundError:
        if lookup(name) is None:
            raise
        store.pull(name, progress=progress)
        location = store.locate(name)
    return location.path, location.record


def detect_model_license(path: Path, record: Any) -> Any:
    """The LicenseDetection of a model: the store's stored one, or for a path given
    directly, what its own files say."""
    from hearth.licenses import detect_license, detection_from_stored

    if record is not None:
        return detection_from_stored(record.license_id, record.license_signals)
    if path.is_dir():
        card, text = path / "README.md", path / "LICENSE"
        return detect_license(
            card_text=card.read_text(errors="replace") if card.is_file() else None,
            license_text=text.read_text(errors="replace") if text.is_file() else None,
        )
    from hearth.weights.gguf_metadata import read_gguf_metadata

    return detect_license(gguf_metadata=read_gguf_metadata(path))


def check_license(
    path: Path, record: Any, use: str, settings: Settings, accept_license: bool
) -> list[str]:
    """The license gate for `use` of this model. Returns warnings; raises PolicyError."""
    from hearth.licenses import enforce

    detection = detect_model_license(path, record)
    # a file outside the store has no digest yet: acceptances are keyed by its location
    digest = record.digest if record is not None else f"file:{path.resolve()}"
    return enforce(detection, use, settings, digest, accept_license)


def model_defaults(
    name: str,
    model_file: dict[str, Any],
    has_chat_template: bool,
    modelfile: dict[str, Any] | None = None,
) -> GenerationDefaults:
    """The generation defaults of the model opened as `name`: its file's, then the catalog's
    parameters when `name` is a catalog name, then its Modelfile's PARAMETERs."""
    from hearth.store.catalog import lookup

    entry = lookup(name)
    catalog = dict(entry.parameters) if entry else None
    return GenerationDefaults.resolve(
        model_file, catalog, chat=has_chat_template, modelfile=modelfile
    )


def store_layers(name: str | None, settings: Settings) -> tuple[dict[str, Any], str | None]:
    """The Modelfile layers of a created store model and the chat template they make
    (({}, None) otherwise); an ADAPTER layer is refused until the engine applies adapters."""
    if name is None:
        return {}, None
    from hearth.store import Store

    store = Store(settings)
    try:
        layers = store.layers(name)
    except (ModelNotFoundError, UserInputError):  # a path, or a name not stored
        return {}, None
    if not layers:
        return {}, None
    if layers.get("adapters"):
        raise UserInputError(
            f"{name} carries an ADAPTER ({layers['adapters'][0]}); hearth stores it but cannot "
            "run adapters yet: merge the adapter into the base and create from that"
        )
    return layers, store.get(name).chat_template


def _engine_config(
    config: EngineConfig | None, options: dict[str, Any], settings: Settings
) -> EngineConfig:
    """`config` with the keyword options forwarded onto it; an unknown keyword is an error
    that names the fields there are."""
    config = config or EngineConfig()
    unknown = sorted(set(options) - {f.name for f in fields(EngineConfig)})
    if unknown:
        raise TypeError(
            f"LLM() got unexpected keyword argument(s) {', '.join(unknown)}; EngineConfig "
            f"fields are {', '.join(f.name for f in fields(EngineConfig))}"
        )
    config = replace(config, **options)
    if config.kv_cache_gb is None and settings.kv_cache_gb > 0:
        config = replace(config, kv_cache_gb=settings.kv_cache_gb)
    return config


def build_engine(
    loaded_config: Any,
    model: Any,
    tokenizer: Any,
    config: EngineConfig,
    dtype: torch.dtype,
) -> LLMEngine:
    """Size the KV pool from the budget, allocate it and wire the engine."""
    from hearth.model.kv_cache import allocate_kv_caches, kv_cache_bytes_per_block

    per_block = kv_cache_bytes_per_block(loaded_config, config.block_size, dtype)
    plan = plan_kv_cache(config, per_block, loaded_config.max_position_embeddings)
    kv_caches = allocate_kv_caches(loaded_config, plan.num_blocks, config.block_size, dtype)
    eos = set(getattr(tokenizer, "eos_ids", ())) | set(loaded_config.eos_token_ids)
    return LLMEngine(
        model,
        kv_caches,
        tokenizer,
        config,
        num_blocks=plan.num_blocks,
        max_model_len=plan.max_model_len,
        vocab_size=loaded_config.vocab_size,
        eos_token_ids=eos,
    )


class LLM:
    """An open-weight model ready to generate.

    model: a store name ("smollm2", "smollm2:135m"), a .gguf file or an HF folder.
    config: the engine's knobs (EngineConfig: kv_cache_gb, max_model_len, max_num_seqs, ...);
      keyword arguments named after its fields are forwarded to it
      (`LLM("smollm2", max_model_len=2048)` is `LLM("smollm2", EngineConfig(max_model_len=2048))`).
      kv_cache_gb None = Settings.kv_cache_gb, else a share of free RAM.
    num_threads: torch CPU threads; None = Settings.threads.
    quant: "auto" (the default: the file's own quantization; GGUF Q4_0/Q4_1/Q4_K run as int4,
      other quant types int8; HF float weights stay dense), "none" (dense weights in `dtype`,
      the reference eval uses), "int8" or "int4" (also quantize HF safetensors at load).
      Quantized modes run bf16 activations (hearth.model.quant_build).
    dtype: None = float32 for generation models and auto for embedding models (bfloat16
      where it keeps their vectors' bar, hearth.engine.embedder.auto_dtype).

    `.defaults` holds the model's generation defaults (hearth.engine.generation_defaults:
    its generation_config.json / GGUF sampling keys, the catalog's parameters, a bounded
    output limit); `.generate()` / `.chat()` without SamplingParams use them, as vLLM does
    with `generation_config="auto"`. SamplingParams given explicitly are taken as they are.
    """

    def __init__(
        self,
        model: str | Path,
        config: EngineConfig | None = None,
        *,
        dtype: torch.dtype | None = None,
        num_threads: int | None = None,
        settings: Settings | None = None,
        progress: Progress | None = None,
        quant: str = DEFAULT_QUANT,
        license_use: str | None = "run",
        accept_license: bool = False,
        name: str | None = None,
        **engine_options: Any,
    ) -> None:
        """`license_use`: the use checked against the license policy before loading ("run";
        the server checks "serve" itself and passes None). Its warnings end up in
        `self.license_warnings`; a refusal raises PolicyError. `name`: the store name the
        model goes by when `model` is its file (the catalog's defaults are found by name)."""
        from hearth.model.backend import BackendConfig
        from hearth.model.quant_load import load_decoder
        from hearth.tokenizer.loading import load_tokenizer

        settings = settings or load_settings()
        engine_config = _engine_config(config, engine_options, settings)
        torch.set_num_threads(num_threads or settings.threads)
        self.path, record = resolve_model(model, settings, progress)
        self.model_name = name or str(model)
        self.license_id: str | None = detect_model_license(self.path, record).license_id
        self.license_warnings: list[str] = []
        if license_use is not None:
            self.license_warnings = check_license(
                self.path, record, license_use, settings, accept_license
            )
        from hearth.store.hf_folder import model_kind

        # embedding and rerank models run on the encoder (embedder.py), not the engine
        self.kind = model_kind(self.path) if self.path.is_dir() else "generation"
        self.embedder: Embedder | None = None
        pooling = None
        prompt = ""
        if self.kind != "generation":
            from hearth.engine.embedder import Embedder
            from hearth.weights.sentence_transformers import read_embedding_folder

            spec = read_embedding_folder(self.path)
            if spec.encoder is not None:
                self.embedder = Embedder.load(self.path, dtype)
                return
            pooling = spec.pooling  # an embedding model built on a decoder: the engine runs it
            prompt = spec.default_prompt
        dtype = torch.float32 if dtype is None else dtype
        layers, chat_template = store_layers(record.name if record else name, settings)
        params = dict(layers.get("parameters", {}))
        if params.get("num_ctx") and engine_config.max_model_len is None:
            engine_config = replace(engine_config, max_model_len=int(params["num_ctx"]))
        backend = BackendConfig(settings.kernels, settings.disabled_kernels)
        built = load_decoder(self.path, quant, dtype, backend)
        loaded, decoder, dtype = built.weights, built.decoder, built.dtype
        self.quant = built.quant  # what "auto" became for this file
        self.config = loaded.config
        self.generation_defaults = dict(loaded.generation_defaults)
        self.tokenizer = load_tokenizer(self.path)
        if layers:  # a created model's template, system prompt and few-shot messages
            self.tokenizer.chat_template = chat_template
        self.defaults = model_defaults(
            self.model_name, self.generation_defaults, self.tokenizer.has_chat_template, params
        )
        self.engine = build_engine(loaded.config, decoder, self.tokenizer, engine_config, dtype)
        if pooling is not None:
            self.engine.embedding_pooling = pooling
            self.engine.embedding_prompt = prompt
        self._ids = itertools.count()

    def default_sampling_params(self, **overrides: Any) -> SamplingParams:
        """The model's generation defaults as SamplingParams; overrides that are not None
        win (vLLM's `get_default_sampling_params`)."""
        return self.defaults.sampling_params(**overrides)

    @property
    def max_model_len(self) -> int:
        if self.embedder is not None:
            return self.embedder.max_len
        return self.engine.max_model_len

    def embed(
        self,
        inputs: str | Sequence[str],
        *,
        truncate: bool = False,
        dimensions: int | None = None,
    ) -> list[list[float]]:
        """One embedding per text, as the model's sentence-transformers folder defines it
        (pooling, normalization). An input over the model's limit raises
        ContextLengthError unless `truncate`."""
        texts = [inputs] if isinstance(inputs, str) else list(inputs)
        if self.kind == "rerank":
            raise UserInputError(
                f"{self.model_name} is a rerank model; .embed() needs an embedding model"
            )
        if self.embedder is not None:
            vectors, _ = self.embedder.embed(texts, truncate=truncate, dimensions=dimensions)
            return [row.tolist() for row in vectors]
        return self._decoder_embed(texts, truncate, dimensions)

    def _decoder_embed(
        self, texts: list[str], truncate: bool, dimensions: int | None
    ) -> list[list[float]]:
        """Pooled decoder states: an embedding model built on a decoder, or a chat model."""
        from hearth.engine.embeddings import pooled_embeddings
        from hearth.errors import ContextLengthError, InvalidParameterError
        from hearth.model.layers.pooling import truncate_dimensions

        if not texts:
            raise InvalidParameterError("input", "input: give at least one text")
        limit = self.max_model_len
        ids = []
        for i, text in enumerate(texts):
            text = self.engine.embedding_prompt + text
            one = list(self.tokenizer.encode(text)) or [*self.tokenizer.eos_ids][:1]
            if len(one) > limit and not truncate:
                raise ContextLengthError(
                    len(one),
                    limit,
                    f"input [{i}] is {len(one)} tokens but the model takes at most {limit}; "
                    "shorten it, or pass truncate=True to cut it to fit",
                )
            ids.append(one[:limit])
        pooling = self.engine.embedding_pooling
        out = pooled_embeddings(
            self.engine.runner.model, ids, self.engine.config.block_size, pooling
        )
        size = len(out[0])
        if dimensions is not None and not 1 <= dimensions <= size:
            raise InvalidParameterError(
                "dimensions", f"dimensions must be between 1 and {size} for this model"
            )
        if dimensions is None:
            return out
        vectors = truncate_dimensions(torch.tensor(out), dimensions, pooling.normalize)
        return vectors.tolist()

    def rerank(
        self, query: str, documents: Sequence[str], *, truncate: bool = False
    ) -> list[float]:
        """The cross-encoder's relevance score of each document for the query, in order."""
        embedder = self._embedder("rerank", ".rerank() needs a rerank (cross-encoder) model")
        scores, _ = embedder.rerank(query, list(documents), truncate=truncate)
        return scores

    def _embedder(self, kind: str, why: str) -> Embedder:
        if self.embedder is None or self.kind != kind:
            raise UserInputError(f"{self.model_name} is a {self.kind} model; {why}")
        return self.embedder

    def require_generation(self) -> None:
        """Raise UserInputError (saying what to use) unless this model generates text."""
        if self.kind != "generation":
            uses = {
                "embedding": "embeddings (.embed(), hearth embed, /v1/embeddings)",
                "rerank": "reranking (.rerank(), /v1/rerank)",
            }
            article = "an" if self.kind == "embedding" else "a"
            raise UserInputError(
                f"{self.model_name} is {article} {self.kind} model: it does not generate text; "
                f"use it for {uses.get(self.kind, self.kind)}, or load a generation model"
            )

    def generate(
        self,
        prompts: str | Sequence[str] | Sequence[Sequence[int]],
        params: SamplingParams | Sequence[SamplingParams] | None = None,
    ) -> list[RequestOutput]:
        """Run every prompt (text, or token ids) to completion in one continuous batch;
        outputs come back in the prompts' order."""
        self.require_generation()
        if isinstance(prompts, str):
            prompts = [prompts]
        items: list[str | list[int]] = [p if isinstance(p, str) else list(p) for p in prompts]
        if params is None:
            params = self.defaults.sampling_params()
        plist = [params] * len(items) if isinstance(params, SamplingParams) else list(params)
        if len(plist) != len(items):
            raise UserInputError(
                f"got {len(items)} prompts but {len(plist)} SamplingParams; give one, or one each"
            )
        return self._run(items, plist)

    def chat(
        self,
        messages: Sequence[Message] | Sequence[Sequence[Message]],
        params: SamplingParams | Sequence[SamplingParams] | None = None,
        *,
        tools: Sequence[dict[str, Any]] | None = None,
        add_generation_prompt: bool = True,
    ) -> list[RequestOutput]:
        """Chat completion of one conversation (a list of {"role", "content"} messages) or
        several, rendered by the model's chat template. A model without a template raises
        UserInputError (use `.generate` for plain completion)."""
        self.require_generation()
        if not messages:
            raise UserInputError("chat needs at least one message")
        one = isinstance(messages[0], dict)
        conversations: list[Any] = [messages] if one else list(messages)
        prompts = [
            self.tokenizer.encode_chat(c, add_generation_prompt=add_generation_prompt, tools=tools)
            for c in conversations
        ]
        return self.generate(prompts, params)

    def _run(
        self, prompts: list[str | list[int]], params: list[SamplingParams]
    ) -> list[RequestOutput]:
        engine = self.engine
        ids = [f"llm-{next(self._ids)}" for _ in prompts]
        final: dict[str, RequestOutput] = {}
        try:
            for rid, prompt, p in zip(ids, prompts, params, strict=True):
                engine.add_request(rid, prompt, p)
            while len(final) < len(ids):
                for out in engine.step():
                    if out.error is not None:
                        raise out.error
                    if out.finished:
                        final[out.request_id] = out
        finally:
            for rid in ids:  # on an error, nothing of this batch stays in the engine
                if rid not in final:
                    engine.abort(rid)
        return [final[rid] for rid in ids]
