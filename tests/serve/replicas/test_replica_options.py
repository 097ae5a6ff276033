"""ReplicaOptions are checked when built; the error names the field."""

from __future__ import annotations

import pytest

from hearth.serve.replicas.options import ReplicaOptions


@pytest.mark.parametrize(
    ("values", "needle"),
    [
        ({"num_replicas": 0}, "replicas must be >= 1"),
        ({"num_replicas": 3, "max_replicas": 2}, "between min_replicas (3) and max_replicas (2)"),
        ({"num_replicas": 1, "min_replicas": 0, "max_replicas": 2}, "min_replicas must be >= 1"),
        ({"routing": "round-robin"}, "routing must be one of prefix, random"),
        ({"threads_per_replica": 0}, "threads_per_replica must be >= 1"),
    ],
)
def test_bad_values_name_the_field(values: dict[str, object], needle: str) -> None:
    with pytest.raises(ValueError, match=None) as info:
        ReplicaOptions(**values)  # type: ignore[arg-type]
    assert needle in str(info.value)


def test_autoscaling_bounds() -> None:
    fixed = ReplicaOptions(num_replicas=2)
    assert not fixed.autoscales and (fixed.lowest, fixed.highest) == (2, 2)
    scaled = ReplicaOptions(num_replicas=1, min_replicas=1, max_replicas=4)
    assert scaled.autoscales and scaled.highest == 4


def test_banner_line_says_how_many_where_and_how_routed() -> None:
    line = ReplicaOptions(num_replicas=2, min_replicas=1, max_replicas=4).describe()
    assert "2 (autoscaling 1-4)" in line and "local Ray on 127.0.0.1" in line
    assert "routing: prefix" in ReplicaOptions(ray_address="head:6379").describe()
