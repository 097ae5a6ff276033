"""LLM: the offline Python API (vLLM's `LLM`). `LLM("smollm2")` finds the model in the store
(pulling a catalog model first when missing) or opens a file path, loads the weights and
tokenizer, builds the decoder and the engine; `.generate()` and `.chat()` run batches to
completion. Knows nothing of HTTP or the CLI."""

from __future__ import annotations

import itertools
from collections.abc import Callable, Mapping, Sequence
from dataclasses import fields, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch

from hearth.config import Settings, load_settings
from hearth.engine.engine_config import EngineConfig, plan_kv_cache
from hearth.engine.generation_defaults import GenerationDefaults
from hearth.engine.llm_engine import LLMEngine
from hearth.engine.outputs import RequestOutput
from hearth.engine.pipeline_parallel import PPConfig
from hearth.engine.ranks import RankConfig
from hearth.engine.sampling_params import SamplingParams
from hearth.engine.tensor_parallel import TPConfig
from hearth.errors import ModelNotFoundError, UserInputError
from hearth.model.quant_modes import DEFAULT_QUANT

if TYPE_CHECKING:
    from hearth.engine.embedder import Embedder
    from hearth.engine.spec.draft_loading import LoadedDraft

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
    (({}, None) otherwise). An ADAPTER layer runs as the model's default LoRA adapter."""
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
    return layers, store.get(name).chat_template


def store_location(name: str | None, settings: Settings) -> Any:
    """The store's ModelLocation of `name` (its record, its adapter folder if it is a base +
    adapter model), or None for a name not stored."""
    if name is None:
        return None
    from hearth.store import Store

    try:
        return Store(settings).locate(name)
    except (ModelNotFoundError, UserInputError):
        return None


def _base_of(name: str, settings: Settings) -> tuple[str | None, str | None]:
    """(name, digest) of the base a tuned model was made from: what its adapter names."""
    from hearth.store import Store

    extra = Store(settings).manifest(name).extra
    base, digest = extra.get("base"), extra.get("base_digest")
    return (str(base) if base else None, str(digest) if digest else None)


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
    draft: LoadedDraft | None = None,
) -> LLMEngine:
    """Size the KV pool from the budget, allocate it and wire the engine (and its drafter:
    "self" builds one from `model`, "draft" from `draft`)."""
    from hearth.engine.ranks import RankDriver
    from hearth.model.kv_cache import allocate_kv_caches, kv_cache_bytes_per_block

    # a tensor-parallel rank holds its KV heads only, a pipeline stage its layers' only:
    # the budget is per rank, and every rank allocates the same number of blocks
    cache_config = model.config if isinstance(model, RankDriver) else loaded_config
    per_block = kv_cache_bytes_per_block(cache_config, config.block_size, dtype)
    plan = plan_kv_cache(config, per_block, loaded_config.max_position_embeddings)
    if isinstance(model, RankDriver):
        kv_caches = model.allocate_kv_caches(plan.num_blocks, config.block_size, dtype)
    else:
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
        new_drafter=_model_drafter(
            loaded_config, model, tokenizer, config, plan.max_model_len, dtype, draft
        ),
    )


def _model_drafter(
    loaded_config: Any,
    model: Any,
    tokenizer: Any,
    config: EngineConfig,
    max_model_len: int,
    dtype: torch.dtype,
    draft: LoadedDraft | None,
) -> Callable[[Any], Any] | None:
    """The drafter of "self" and "draft" speculation (one runner for every sequence);
    None for the others (prompt lookup)."""
    from hearth.engine.engine_config import self_draft_layers
    from hearth.engine.spec import model_drafter

    if config.speculative == "self":
        layers = self_draft_layers(loaded_config.num_hidden_layers, config.self_draft_layers)
        runner = model_drafter.self_drafter(
            model, loaded_config, tokenizer, config, max_model_len, dtype, layers
        )
    elif config.speculative == "draft":
        if draft is None:
            raise UserInputError(
                "--speculative draft needs a draft model: give --draft MODEL (a store name "
                "or a path)"
            )
        runner = model_drafter.draft_model_drafter(
            draft.decoder, draft.config, draft.tokenizer, config, max_model_len, draft.dtype
        )
    else:
        return None
    return lambda seq: runner


def _rank_config(
    tensor_parallel: int | TPConfig, pipeline_parallel: int | PPConfig, settings: Settings
) -> RankConfig | None:
    """How the model is split over processes (None: it is not). A size alone: ranks on
    this host, meeting at MASTER_ADDR / MASTER_PORT (settings). Tensor and pipeline
    parallel do not combine (each rank would need both a shard and a stage)."""
    host, port = settings.master_addr, settings.master_port
    tp, pp = tensor_parallel, pipeline_parallel
    tp = tp if isinstance(tp, TPConfig) else TPConfig(tp, host=host, port=port)
    pp = pp if isinstance(pp, PPConfig) else PPConfig(pp, host=host, port=port)
    if tp.size > 1 and pp.size > 1:
        raise UserInputError(
            "--tensor-parallel and --pipeline-parallel do not combine yet; split the model "
            "one way: --tensor-parallel N (heads) or --pipeline-parallel N (layers)"
        )
    return tp if tp.size > 1 else pp if pp.size > 1 else None


def _load_split(
    path: Path, ranks: RankConfig, quant: str, dtype: torch.dtype, threads: int
) -> tuple[Any, Any, str]:
    """(weights, the TPDriver or PPDriver, quant) for `ranks`; each rank gets an equal
    share of the threads. Dense weights only: the low-bit layers are single-process."""
    from hearth.engine import pipeline_parallel, tensor_parallel
    from hearth.weights.loader import load_weights

    if quant not in ("auto", "none"):
        raise UserInputError(
            f"{ranks.flag} runs dense weights; --quant {quant} is single-process: use "
            "--quant none (or auto)"
        )
    per_rank = max(1, threads // ranks.local_size)
    torch.set_num_threads(per_rank)
    weights = load_weights(path, dtype)
    if isinstance(ranks, TPConfig):
        return weights, tensor_parallel.start(path, weights, ranks, dtype, per_rank), "none"
    assert isinstance(ranks, PPConfig)
    return weights, pipeline_parallel.start(path, weights, ranks, dtype, per_rank), "none"


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
    speculative / draft_model (EngineConfig fields): "self" drafts with the model's own first
      layers; "draft" with `draft_model` (a store name or a path sharing this model's
      tokenizer, else UserInputError naming both); a created model's Modelfile DRAFT
      drafts under "auto" (engine/spec/draft_loading.py).
    tensor_parallel: ranks to split the weights over (an int: processes on this host; a
      TPConfig for several hosts); > 1 runs dense weights ("auto" becomes "none") on the
      reference layers, rank 0 in this process (hearth.engine.tensor_parallel).
    pipeline_parallel: processes to split the decoder layers over, in contiguous stages (an
      int: on this host; a PPConfig for several hosts); as tensor_parallel, dense weights on
      the reference layers, stage 0 in this process (hearth.engine.pipeline_parallel). The
      two do not combine.

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
        loras: Mapping[str, str | Path] | None = None,
        tensor_parallel: int | TPConfig = 1,
        pipeline_parallel: int | PPConfig = 1,
        **engine_options: Any,
    ) -> None:
        """`license_use`: the use checked against the license policy before loading ("run";
        the server checks "serve" itself and passes None). Its warnings end up in
        `self.license_warnings`; a refusal raises PolicyError. `name`: the store name the
        model goes by when `model` is its file (the catalog's defaults are found by name).
        `loras`: LoRA adapters to register, name -> PEFT folder or GGUF LoRA file (see load_lora)."""
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
        loaded, decoder, dtype = self._load_decoder(
            quant, dtype, _rank_config(tensor_parallel, pipeline_parallel, settings),
            num_threads or settings.threads, settings,
        )  # fmt: skip
        self.config = loaded.config
        self.generation_defaults = dict(loaded.generation_defaults)
        self.tokenizer = load_tokenizer(self.path)
        if layers:  # a created model's template, system prompt and few-shot messages
            self.tokenizer.chat_template = chat_template
        self.defaults = model_defaults(
            self.model_name, self.generation_defaults, self.tokenizer.has_chat_template, params
        )
        engine_config, draft = self._draft(engine_config, layers.get("draft"), quant, settings)
        self.engine = build_engine(
            loaded.config, decoder, self.tokenizer, engine_config, dtype, draft
        )
        if pooling is not None:
            self.engine.embedding_pooling = pooling
            self.engine.embedding_prompt = prompt
        self._ids = itertools.count()
        self.default_lora: str | None = None
        self._attach_adapters(record.name if record else name, settings, loras or {})

    def _load_decoder(
        self,
        quant: str,
        dtype: torch.dtype,
        ranks: RankConfig | None,
        threads: int,
        settings: Settings,
    ) -> tuple[Any, Any, torch.dtype]:
        """(loaded weights, decoder, activation dtype): on this process's backend, or split
        over tensor-parallel ranks or pipeline stages. Sets self.quant (what "auto" became
        for this file), self.tensor_parallel and self.pipeline_parallel."""
        from hearth.model.backend import BackendConfig
        from hearth.model.quant_load import load_decoder

        self.tensor_parallel = ranks.size if isinstance(ranks, TPConfig) else 1
        self.pipeline_parallel = ranks.size if isinstance(ranks, PPConfig) else 1
        self.split_flag = ranks.flag if ranks is not None else None
        if ranks is not None:
            loaded, decoder, self.quant = _load_split(self.path, ranks, quant, dtype, threads)
            return loaded, decoder, dtype
        built = load_decoder(self.path, quant, dtype, BackendConfig.of(settings))
        self.quant = built.quant
        return built.weights, built.decoder, built.dtype

    def _draft(
        self, config: EngineConfig, stored: str | None, quant: str, settings: Settings
    ) -> tuple[EngineConfig, LoadedDraft | None]:
        """The speculative mode this model runs with (a Modelfile's DRAFT drafts under
        "auto") and its draft model, loaded and checked against this one's vocabulary."""
        from hearth.engine.spec.draft_loading import load_draft, resolve_speculation

        mode, draft_name = resolve_speculation(config.speculative, config.draft_model, stored)
        config = replace(config, speculative=mode, draft_model=draft_name)
        if draft_name is None:
            return config, None
        dtype = torch.float32
        return config, load_draft(
            draft_name, self.model_name, self.tokenizer, quant, dtype, settings
        )

    def _attach_adapters(
        self, store_name: str | None, settings: Settings, loras: Mapping[str, str | Path]
    ) -> None:
        """Which base the engine's adapters must fit, and the adapters to load: a store model
        that is base + adapter runs on its base with the adapter by default."""
        location = store_location(store_name, settings)
        if location is not None:
            self.engine.base_name, self.engine.base_digest = store_name, location.record.digest
        if location is not None and location.adapter is not None:
            assert store_name is not None
            self.engine.base_name, self.engine.base_digest = _base_of(store_name, settings)
            self.load_lora(self.model_name, location.adapter)
            self.default_lora = self.model_name
        for lora_name, lora_path in loras.items():
            self.load_lora(lora_name, lora_path)

    @property
    def broken(self) -> str | None:
        """Why this model can no longer run (a tensor-parallel worker died), else None."""
        return getattr(self.engine.runner.model, "broken", None) if self.embedder is None else None

    def default_sampling_params(self, **overrides: Any) -> SamplingParams:
        """The model's generation defaults as SamplingParams; overrides that are not None
        win (vLLM's `get_default_sampling_params`). A base + adapter model's requests get
        its adapter unless they name another (`lora`)."""
        if overrides.get("lora") is None and getattr(self, "default_lora", None) is not None:
            overrides["lora"] = self.default_lora
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
        if self.split_flag is not None:
            raise UserInputError(
                f"embeddings run on one process: load the model without {self.split_flag}"
            )
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

    # -- LoRA adapters ---------------------------------------------------------------
    def load_lora(self, name: str, path: str | Path) -> None:
        """Register the LoRA adapter at `path` (a PEFT folder or a GGUF LoRA file) as `name`
        (generate(..., lora=name))."""
        self.require_generation()
        if self.split_flag is not None:
            raise UserInputError(
                f"LoRA adapters do not run with {self.split_flag} yet (the other ranks hold "
                "parts of the model the adapter's update does not reach); serve without it"
            )
        self.engine.add_lora(name, path)

    def unload_lora(self, name: str) -> None:
        self.engine.remove_lora(name)

    def list_loras(self) -> list[str]:
        return [a.name for a in self.engine.list_loras()]

    def generate(
        self,
        prompts: str | Sequence[str] | Sequence[Sequence[int]],
        params: SamplingParams | Sequence[SamplingParams] | None = None,
        *,
        lora: str | Sequence[str | None] | None = None,
    ) -> list[RequestOutput]:
        """Run every prompt (text, or token ids) to completion in one continuous batch;
        outputs come back in the prompts' order. lora: an adapter's name (see load_lora)
        for every prompt, or one per prompt (None: the base); without it, SamplingParams'
        own `lora`, else the model's default adapter (a store model made with one)."""
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
        if lora is None or isinstance(lora, str):
            loras: list[str | None] = [lora] * len(items)
        else:
            loras = list(lora)
        if len(loras) != len(items):
            raise UserInputError(
                f"got {len(items)} prompts but {len(loras)} lora names; give one, or one each"
            )
        plist = [
            replace(p, lora=name) if name is not None else self._with_default_lora(p)
            for p, name in zip(plist, loras, strict=True)
        ]
        return self._run(items, plist)

    def _with_default_lora(self, params: SamplingParams) -> SamplingParams:
        if params.lora is None and self.default_lora is not None:
            return replace(params, lora=self.default_lora)
        return params

    def chat(
        self,
        messages: Sequence[Message] | Sequence[Sequence[Message]],
        params: SamplingParams | Sequence[SamplingParams] | None = None,
        *,
        tools: Sequence[dict[str, Any]] | None = None,
        add_generation_prompt: bool = True,
        lora: str | Sequence[str | None] | None = None,
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
        return self.generate(prompts, params, lora=lora)

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
