"""Per-replica engine gauges for /metrics: the model-level series (hearth.serve.metrics)
sum the replicas; these label each one (`replica`), as the replicas last reported them."""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator

from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from hearth.engine.metrics import EngineMetrics

# () -> [(model, replica, that replica's counters)]
ReplicaSnapshots = Callable[[], Iterable[tuple[str, str, EngineMetrics]]]


class ReplicaCollector(Collector):
    def __init__(self, snapshots: ReplicaSnapshots) -> None:
        self.snapshots = snapshots

    def collect(self) -> Iterator[Metric]:
        labels = ["model", "replica"]
        running = GaugeMetricFamily(
            "hearth_replica_requests_running", "Sequences running on a replica", labels=labels
        )
        kv = GaugeMetricFamily(
            "hearth_replica_kv_cache_usage_ratio", "Share of a replica's KV blocks held",
            labels=labels,
        )
        hit = GaugeMetricFamily(
            "hearth_replica_prefix_cache_hit_rate",
            "Prompt tokens a replica served from its prefix cache / all its prompt tokens",
            labels=labels,
        )
        prompt = GaugeMetricFamily(
            "hearth_replica_prompt_tokens", "Prompt tokens a replica computed (lifetime)",
            labels=labels,
        )
        generated = GaugeMetricFamily(
            "hearth_replica_generation_tokens", "Tokens a replica generated (lifetime)",
            labels=labels,
        )
        replicas = GaugeMetricFamily("hearth_replicas", "Replicas that reported", labels=["model"])
        counts: dict[str, int] = {}
        for model, replica, m in self.snapshots():
            counts[model] = counts.get(model, 0) + 1
            key = [model, replica]
            running.add_metric(key, m.num_running)
            kv.add_metric(key, m.num_blocks_used / m.num_blocks_total if m.num_blocks_total else 0)
            seen = m.prefix_cache_hit_tokens + m.prompt_tokens_total
            hit.add_metric(key, m.prefix_cache_hit_tokens / seen if seen else 0.0)
            prompt.add_metric(key, m.prompt_tokens_total)
            generated.add_metric(key, m.generation_tokens_total)
        for model, count in counts.items():
            replicas.add_metric([model], count)
        yield from (running, kv, hit, prompt, generated, replicas)
