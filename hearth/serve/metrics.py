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


class _EngineCollector(Collector):
    def __init__(self, snapshots: Snapshots) -> None:
        self.snapshots = snapshots

    def collect(self) -> Iterator[Metric]:
        running = GaugeMetricFamily(
            "hearth_num_requests_running", "Sequences running", labels=["model"]
        )
        waiting = GaugeMetricFamily(
            "hearth_num_requests_waiting", "Sequences waiting", labels=["model"]
        )
        preempted = CounterMetricFamily(
            "hearth_num_preemptions", "Sequences preempted (lifetime)", labels=["model"]
        )
        kv = GaugeMetricFamily(
            "hearth_kv_cache_usage_ratio", "Share of KV blocks held by sequences", labels=["model"]
        )
        kv_used = GaugeMetricFamily(
            "hearth_kv_cache_blocks_used", "KV blocks held", labels=["model"]
        )
        hit = GaugeMetricFamily(
            "hearth_prefix_cache_hit_rate",
            "Prompt tokens served from the prefix cache / all prompt tokens (lifetime)",
            labels=["model"],
        )
        constrained = CounterMetricFamily(
            "hearth_structured_requests",
            "Sequences decoded under a grammar (JSON schema, regex, tool call)",
            labels=["model"],
        )
        compile_s = CounterMetricFamily(
            "hearth_grammar_compile_seconds", "Time spent compiling grammars", labels=["model"]
        )
        mask_s = CounterMetricFamily(
            "hearth_grammar_mask_seconds",
            "Time spent computing and applying grammar masks",
            labels=["model"],
        )
        mask_steps = CounterMetricFamily(
            "hearth_grammar_mask_steps",
            "Grammar masks applied (one per sequence per step)",
            labels=["model"],
        )
        drafted = CounterMetricFamily(
            "hearth_spec_draft_tokens", "Tokens drafted by speculative decoding",
            labels=["model"],
        )
        accepted = CounterMetricFamily(
            "hearth_spec_accepted_tokens", "Drafted tokens the model accepted (verified)",
            labels=["model"],
        )
        adapters = GaugeMetricFamily(
            "hearth_lora_adapters_loaded",
            "LoRA adapters registered on the model",
            labels=["model"],
        )
        adapter_requests = CounterMetricFamily(
            "hearth_lora_requests",
            "Requests per LoRA adapter (lifetime)",
            labels=["model", "adapter"],
        )
        loaded = GaugeMetricFamily("hearth_models_loaded", "Models loaded")
        count = 0
        for name, m in self.snapshots():
            count += 1
            running.add_metric([name], m.num_running)
            waiting.add_metric([name], m.num_waiting)
            preempted.add_metric([name], m.num_preemptions)
            kv.add_metric(
                [name], m.num_blocks_used / m.num_blocks_total if m.num_blocks_total else 0
            )
            kv_used.add_metric([name], m.num_blocks_used)
            seen = m.prefix_cache_hit_tokens + m.prompt_tokens_total
            hit.add_metric([name], m.prefix_cache_hit_tokens / seen if seen else 0.0)
            constrained.add_metric([name], m.constrained_requests)
            compile_s.add_metric([name], m.grammar_compile_seconds)
            mask_s.add_metric([name], m.grammar_mask_seconds)
            mask_steps.add_metric([name], m.grammar_mask_steps)
            drafted.add_metric([name], m.spec_draft_tokens_total)
            accepted.add_metric([name], m.spec_accepted_tokens_total)
            adapters.add_metric([name], m.lora_adapters_loaded)
            for adapter, num in sorted(m.lora_requests_total.items()):
                adapter_requests.add_metric([name, adapter], num)
        loaded.add_metric([], count)
        yield from (running, waiting, preempted, kv, kv_used, hit, loaded)
        yield from (constrained, compile_s, mask_s, mask_steps, drafted, accepted)
        yield from (adapters, adapter_requests)


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
