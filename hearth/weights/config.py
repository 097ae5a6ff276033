"""The frozen description of one decoder network: every family difference the generic decoder
honours is a field here. Built by `weights/families.py` (from an HF config.json dict, or from
GGUF metadata mapped to one); read by `model/`. Knows nothing of files, tensors or families'
names beyond the `architecture` string it records."""

from __future__ import annotations

from dataclasses import dataclass, field

ROPE_TYPES = ("default", "linear", "dynamic", "llama3", "yarn", "longrope")
ACTIVATIONS = ("silu", "gelu_tanh", "gelu")
LAYER_TYPES = ("full_attention", "sliding_attention", "chunked_attention")
ROUTER_SCORES = ("softmax", "sigmoid")


def _positive(name: str, value: float | int | None, allow_none: bool = False) -> None:
    if value is None and allow_none:
        return
    if value is None or value <= 0:
        raise ValueError(f"{name} must be > 0, got {value!r}")


@dataclass(frozen=True)
class RopeConfig:
    """Rotary position embedding of one kind of layer (global or sliding-window).

    rotary_dim: leading dims of each head that rotate (partial rotary: < head_dim).
    interleaved: rotate pairs (x0, x1), (x2, x3), ... (DeepSeek) instead of halves (Llama).
    The scaling fields are read only by the `type` that uses them (HF's names)."""

    theta: float
    rotary_dim: int
    type: str = "default"
    factor: float = 1.0
    interleaved: bool = False
    max_position_embeddings: int = 2048  # dynamic NTK grows past this
    original_max_position_embeddings: int | None = None  # llama3, yarn, longrope
    low_freq_factor: float = 1.0  # llama3
    high_freq_factor: float = 4.0  # llama3
    beta_fast: float = 32.0  # yarn
    beta_slow: float = 1.0  # yarn
    mscale: float | None = None  # yarn (DeepSeek)
    mscale_all_dim: float | None = None  # yarn (DeepSeek): also scales softmax
    attention_factor: float | None = None  # yarn, longrope: cos/sin multiplier
    truncate: bool = True  # yarn
    short_factor: tuple[float, ...] = ()  # longrope
    long_factor: tuple[float, ...] = ()  # longrope

    def __post_init__(self) -> None:
        if self.type not in ROPE_TYPES:
            raise ValueError(f"rope type must be one of {ROPE_TYPES}, got {self.type!r}")
        _positive("rope theta", self.theta)
        _positive("rotary_dim", self.rotary_dim)
        if self.rotary_dim % 2:
            raise ValueError(f"rotary_dim must be even, got {self.rotary_dim}")
        _positive("rope factor", self.factor)
        if (
            self.type in ("llama3", "yarn", "longrope")
            and not self.original_max_position_embeddings
        ):
            raise ValueError(f"rope type {self.type!r} needs original_max_position_embeddings")
        if self.type == "longrope":
            half = self.rotary_dim // 2
            if len(self.short_factor) != half or len(self.long_factor) != half:
                raise ValueError(f"longrope short_factor / long_factor must have {half} entries")


@dataclass(frozen=True)
class MoEConfig:
    """Sparse mixture of experts in the MLP of some layers.

    router_scores: softmax (Mixtral, Qwen, DeepSeek-V2) or sigmoid (DeepSeek-V3).
    num_groups/topk_groups: DeepSeek grouped top-k (experts split into groups; tokens pick
    experts only from their best `topk_groups` groups). group_score: how a group is ranked,
    "max" (V2 group_limited_greedy) or "top2_sum" (V3 noaux_tc).
    score_correction_bias: V3 adds a learned bias to scores for choosing, not for weighting.
    shared_intermediate_size: 0 when there is no shared expert; shared_expert_gate: Qwen2-MoE
    multiplies the shared expert's output by sigmoid(gate(x)).
    scale_expert_input: each chosen expert sees weight * x instead of its output being
    weighted (Llama 4); with a nonlinear expert the two differ."""

    num_experts: int
    num_experts_per_tok: int
    intermediate_size: int
    norm_topk_prob: bool = False
    router_scores: str = "softmax"
    routed_scaling_factor: float = 1.0
    num_groups: int = 1
    topk_groups: int = 1
    group_score: str = "max"
    score_correction_bias: bool = False
    shared_intermediate_size: int = 0
    shared_expert_gate: bool = False
    scale_expert_input: bool = False  # Llama 4: the routing weight scales the expert's input

    def __post_init__(self) -> None:
        _positive("num_experts", self.num_experts)
        _positive("num_experts_per_tok", self.num_experts_per_tok)
        _positive("moe intermediate_size", self.intermediate_size)
        if self.num_experts_per_tok > self.num_experts:
            raise ValueError("num_experts_per_tok must be <= num_experts")
        if self.router_scores not in ROUTER_SCORES:
            raise ValueError(f"router_scores must be one of {ROUTER_SCORES}")
        if self.group_score not in ("max", "top2_sum"):
            raise ValueError("group_score must be 'max' or 'top2_sum'")
        if self.num_experts % self.num_groups or self.topk_groups > self.num_groups:
            raise ValueError("num_groups must divide num_experts and be >= topk_groups")


@dataclass(frozen=True)
class MLAConfig:
    """DeepSeek Multi-head Latent Attention: queries through an optional low-rank bottleneck
    (q_lora_rank), keys/values from a shared latent of kv_lora_rank plus one rotary key of
    qk_rope_head_dim shared by all heads."""

    q_lora_rank: int | None
    kv_lora_rank: int
    qk_nope_head_dim: int
    qk_rope_head_dim: int
    v_head_dim: int

    def __post_init__(self) -> None:
        _positive("q_lora_rank", self.q_lora_rank, allow_none=True)
        for name in ("kv_lora_rank", "qk_nope_head_dim", "qk_rope_head_dim", "v_head_dim"):
            _positive(name, getattr(self, name))

    @property
    def qk_head_dim(self) -> int:
        return self.qk_nope_head_dim + self.qk_rope_head_dim


@dataclass(frozen=True)
class ModelConfig:
    """One decoder-only transformer. Per-layer facts are tuples of num_hidden_layers entries."""

    architecture: str  # the HF model_type it came from, for messages and the model card
    vocab_size: int
    hidden_size: int
    intermediate_size: int
    num_hidden_layers: int
    num_attention_heads: int
    num_key_value_heads: int
    head_dim: int
    rope: RopeConfig
    max_position_embeddings: int = 2048
    rms_norm_eps: float = 1e-6
    norm_unit_offset: bool = False  # Gemma: RMSNorm scales by (1 + w)
    hidden_act: str = "silu"
    tie_word_embeddings: bool = False
    qkv_bias: bool = False  # Qwen2: bias on q/k/v only
    o_bias: bool = False  # Llama attention_bias=True: bias on o_proj too
    mlp_bias: bool = False
    qk_norm: bool = False  # Qwen3, Gemma 3: RMSNorm over each head of q and k
    sandwich_norm: bool = False  # Gemma 2/3: norms after attention and around the MLP
    embedding_multiplier: float | None = None  # Gemma: sqrt(hidden_size)
    attention_scale: float | None = None  # None: head_dim ** -0.5
    attn_logit_softcapping: float | None = None
    final_logit_softcapping: float | None = None
    sliding_window: int | None = None
    # "full_attention" / "sliding_attention" / "chunked_attention"; () = all full
    layer_types: tuple[str, ...] = ()
    # chunked_attention layers (Llama 4): positions are cut into chunks of this many, and a
    # query sees only the keys of its own chunk (causally)
    attention_chunk_size: int | None = None
    no_rope_layers: tuple[bool, ...] = ()  # True: the layer skips rope (NoPE); () = none
    qk_l2_norm: bool = False  # Llama 4: weightless RMS norm of q and k after rope, rope layers
    # Llama 4 on NoPE layers: queries scaled by log(floor((pos + 1) / floor_scale) + 1) *
    # scale + 1, sharpening attention at long context
    attn_temperature_tuning: bool = False
    attn_temperature_floor_scale: float = 8192.0
    attn_temperature_scale: float = 0.1
    rope_local: RopeConfig | None = None  # rope of sliding layers when it differs (Gemma 3)
    moe: MoEConfig | None = None
    moe_layers: tuple[bool, ...] = ()  # which layers use `moe`; () = none
    mla: MLAConfig | None = None
    bos_token_id: int | None = None
    eos_token_ids: tuple[int, ...] = field(default=())

    def __post_init__(self) -> None:
        for name in (
            "vocab_size",
            "hidden_size",
            "intermediate_size",
            "num_hidden_layers",
            "num_attention_heads",
            "num_key_value_heads",
            "head_dim",
            "max_position_embeddings",
            "rms_norm_eps",
        ):
            _positive(name, getattr(self, name))
        if self.num_attention_heads % self.num_key_value_heads:
            raise ValueError(
                f"num_attention_heads ({self.num_attention_heads}) must be a multiple of "
                f"num_key_value_heads ({self.num_key_value_heads})"
            )
        if self.hidden_act not in ACTIVATIONS:
            raise ValueError(f"hidden_act must be one of {ACTIVATIONS}, got {self.hidden_act!r}")
        if self.layer_types:
            if len(self.layer_types) != self.num_hidden_layers:
                raise ValueError("layer_types must have num_hidden_layers entries")
            if any(t not in LAYER_TYPES for t in self.layer_types):
                raise ValueError(f"layer_types entries must be in {LAYER_TYPES}")
            if "sliding_attention" in self.layer_types and not self.sliding_window:
                raise ValueError("sliding_window must be set when a layer is sliding_attention")
            if "chunked_attention" in self.layer_types and not self.attention_chunk_size:
                raise ValueError(
                    "attention_chunk_size must be set when a layer is chunked_attention"
                )
        if self.no_rope_layers and len(self.no_rope_layers) != self.num_hidden_layers:
            raise ValueError("no_rope_layers must have num_hidden_layers entries")
        if self.moe_layers:
            if len(self.moe_layers) != self.num_hidden_layers:
                raise ValueError("moe_layers must have num_hidden_layers entries")
            if any(self.moe_layers) and self.moe is None:
                raise ValueError("moe must be set when moe_layers marks a layer")
        _positive("sliding_window", self.sliding_window, allow_none=True)
        _positive("attention_chunk_size", self.attention_chunk_size, allow_none=True)
        _positive("attn_temperature_floor_scale", self.attn_temperature_floor_scale)
        _positive("attn_logit_softcapping", self.attn_logit_softcapping, allow_none=True)
        _positive("final_logit_softcapping", self.final_logit_softcapping, allow_none=True)

    def is_sliding(self, layer: int) -> bool:
        return bool(self.layer_types) and self.layer_types[layer] == "sliding_attention"

    def chunk_for(self, layer: int) -> int | None:
        """The attention chunk of a chunked_attention layer, else None."""
        if self.layer_types and self.layer_types[layer] == "chunked_attention":
            return self.attention_chunk_size
        return None

    def uses_rope(self, layer: int) -> bool:
        return not (self.no_rope_layers and self.no_rope_layers[layer])

    def is_moe(self, layer: int) -> bool:
        return bool(self.moe_layers) and self.moe_layers[layer]

    def rope_for(self, layer: int) -> RopeConfig:
        if self.rope_local is not None and self.is_sliding(layer):
            return self.rope_local
        return self.rope

    @property
    def k_head_dim(self) -> int:
        """Per-head width of cached keys (MLA caches decompressed keys: nope + rope dims)."""
        return self.mla.qk_head_dim if self.mla else self.head_dim

    @property
    def v_head_dim(self) -> int:
        return self.mla.v_head_dim if self.mla else self.head_dim

    @property
    def num_kv_cache_heads(self) -> int:
        """Heads in the KV cache: MLA caches one decompressed K/V per query head."""
        return self.num_attention_heads if self.mla else self.num_key_value_heads
