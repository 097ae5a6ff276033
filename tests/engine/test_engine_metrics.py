"""Engine metric snapshots: summing them (several replicas shown as one model)."""

from __future__ import annotations

from hearth.engine.metrics import EngineMetrics


def test_snapshots_add_field_by_field_and_counts_by_key() -> None:
    a = EngineMetrics(num_running=2, decode_tokens_per_s=10.0, lora_requests_total={"x": 1})
    b = EngineMetrics(num_running=3, decode_tokens_per_s=5.5, lora_requests_total={"x": 2, "y": 4})
    total = a + b
    assert total.num_running == 5 and total.decode_tokens_per_s == 15.5
    assert total.lora_requests_total == {"x": 3, "y": 4}
    assert a.lora_requests_total == {"x": 1}  # the operands are left as they were
