"""Prometheus metrics on a registry of the server's own (never the process-global one, so
two apps in one process do not collide): requests by route and status, request duration,
TTFT and inter-token latency, tokens in and out; and, read at scrape time from each loaded
model's engine, running / waiting / preempted sequences, KV-cache usage and the prefix-cache
hit rate. Knows nothing of routes; the pool is read through `engine_snapshots`."""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator

from prometheus_client import CollectorRegistry, Counter, Histogram, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from hearth.engine.metrics import EngineMetrics

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"

_LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60)

# () -> [(model name, engine snapshot)] of the models loaded now
Snapshots = Callable[[], Iterable[tuple[str, EngineMetrics]]]


def _kv_usage(m: EngineMetrics) -> float:
    return m.num_blocks_used / m.num_blocks_total if m.num_blocks_total else 0.0


def _prefix_hit_rate(m: EngineMetrics) -> float:
    seen = m.prefix_cache_hit_tokens + m.prompt_tokens_total
    return m.prefix_cache_hit_tokens / seen if seen else 0.0


_Family = type[GaugeMetricFamily] | type[CounterMetricFamily]
# each loaded model's row: (family, name, help, its value in a snapshot); the models-loaded
# gauge goes after the first SCHEDULER_FAMILIES of them
_PER_MODEL: tuple[tuple[_Family, str, str, Callable[[EngineMetrics], float]], ...] = (
    (GaugeMetricFamily, "hearth_num_requests_running", "Sequences running",
     lambda m: m.num_running),
    (GaugeMetricFamily, "hearth_num_requests_waiting", "Sequences waiting",
     lambda m: m.num_waiting),
    (CounterMetricFamily, "hearth_num_preemptions", "Sequences preempted (lifetime)",
     lambda m: m.num_preemptions),
    (GaugeMetricFamily, "hearth_kv_cache_usage_ratio", "Share of KV blocks held by sequences",
     _kv_usage),
    (GaugeMetricFamily, "hearth_kv_cache_blocks_used", "KV blocks held",
     lambda m: m.num_blocks_used),
    (GaugeMetricFamily, "hearth_prefix_cache_hit_rate",
     "Prompt tokens served from the prefix cache / all prompt tokens (lifetime)",
     _prefix_hit_rate),
    (CounterMetricFamily, "hearth_structured_requests",
     "Sequences decoded under a grammar (JSON schema, regex, tool call)",
     lambda m: m.constrained_requests),
    (CounterMetricFamily, "hearth_grammar_compile_seconds", "Time spent compiling grammars",
     lambda m: m.grammar_compile_seconds),
    (CounterMetricFamily, "hearth_grammar_mask_seconds",
     "Time spent computing and applying grammar masks", lambda m: m.grammar_mask_seconds),
    (CounterMetricFamily, "hearth_grammar_mask_steps",
     "Grammar masks applied (one per sequence per step)", lambda m: m.grammar_mask_steps),
    (CounterMetricFamily, "hearth_spec_draft_tokens", "Tokens drafted by speculative decoding",
     lambda m: m.spec_draft_tokens_total),
    (CounterMetricFamily, "hearth_spec_accepted_tokens",
     "Drafted tokens the model accepted (verified)", lambda m: m.spec_accepted_tokens_total),
    (GaugeMetricFamily, "hearth_lora_adapters_loaded", "LoRA adapters registered on the model",
     lambda m: m.lora_adapters_loaded),
)  # fmt: skip
SCHEDULER_FAMILIES = 6


class _EngineCollector(Collector):
    def __init__(self, snapshots: Snapshots) -> None:
        self.snapshots = snapshots

    def collect(self) -> Iterator[Metric]:
        families = [
            (kind(name, text, labels=["model"]), value) for kind, name, text, value in _PER_MODEL
        ]
        adapter_requests = CounterMetricFamily(
            "hearth_lora_requests",
            "Requests per LoRA adapter (lifetime)",
            labels=["model", "adapter"],
        )
        count = 0
        for name, m in self.snapshots():
            count += 1
            for family, value in families:
                family.add_metric([name], value(m))
            for adapter, num in sorted(m.lora_requests_total.items()):
                adapter_requests.add_metric([name, adapter], num)
        loaded = GaugeMetricFamily("hearth_models_loaded", "Models loaded")
        loaded.add_metric([], count)
        yield from (family for family, _ in families[:SCHEDULER_FAMILIES])
        yield loaded
        yield from (family for family, _ in families[SCHEDULER_FAMILIES:])
        yield adapter_requests


class ServerMetrics:
    def __init__(self, snapshots: Snapshots) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        r = self.registry
        self.requests = Counter(
            "hearth_requests", "HTTP requests", ["route", "method", "status"], registry=r
        )
        self.duration = Histogram(
            "hearth_request_duration_seconds",
            "HTTP request duration",
            ["route"],
            buckets=_LATENCY_BUCKETS,
            registry=r,
        )
        self.ttft = Histogram(
            "hearth_time_to_first_token_seconds",
            "Time to first token",
            ["model"],
            buckets=_LATENCY_BUCKETS,
            registry=r,
        )
        self.itl = Histogram(
            "hearth_inter_token_latency_seconds",
            "Time between streamed tokens",
            ["model"],
            buckets=_LATENCY_BUCKETS,
            registry=r,
        )
        self.prompt_tokens = Counter(
            "hearth_prompt_tokens", "Prompt tokens received", ["model"], registry=r
        )
        self.generation_tokens = Counter(
            "hearth_generation_tokens", "Tokens generated", ["model"], registry=r
        )
        r.register(_EngineCollector(snapshots))

    def render(self) -> bytes:
        return generate_latest(self.registry)
