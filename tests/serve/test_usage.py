"""The usage ledger: spans, grouping and prices as units; CPU sharing between overlapping
requests; and through the real server, a streamed and a plain chat request each recorded
with their tokens, TTFT and CPU time and reported by GET /api/usage."""

from __future__ import annotations

import logging
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx
import pytest

from hearth.config import Settings
from hearth.errors import UserInputError
from hearth.serve.pricing import load_price_table
from hearth.serve.usage import UsageRecord, parse_since, record_usage, summarize, usage_records
from hearth.serve.usage_meter import CpuMeter

MODEL = "smollm2:135m"
NOW = datetime(2026, 12, 7, 12, 0, tzinfo=UTC)


def _record(model: str, key: str | None, when: datetime, prompt: int, output: int) -> UsageRecord:
    return UsageRecord(when, "r", key, model, "/v1/chat/completions", 200, prompt, output,
                       0.1, 1.0, 0.5, 0.01)  # fmt: skip


def test_parse_since() -> None:
    assert parse_since("24h", NOW) == NOW - timedelta(hours=24)
    assert parse_since("2w", NOW) == NOW - timedelta(weeks=2)
    assert parse_since("2026-12-01", NOW) == datetime(2026, 12, 1, tzinfo=UTC)
    assert parse_since(None) is None
    with pytest.raises(UserInputError, match="24h, 7d"):
        parse_since("yesterday")


def test_summarize_groups_and_costs() -> None:
    prices = load_price_table()
    records = [
        _record("a", "k1", NOW, 1_000_000, 0),
        _record("a", None, NOW - timedelta(days=1), 0, 1_000_000),
        _record("b", "k1", NOW, 10, 20),
    ]
    by_model = summarize(records, prices, "model")
    assert [g["group"] for g in by_model["groups"]] == ["a", "b"]
    a = by_model["groups"][0]
    mini = next(p for p in prices.prices if p.model == "gpt-4o-mini")
    assert a["hosted_cost_usd"]["gpt-4o-mini"] == pytest.approx(
        mini.input_per_mtok + mini.output_per_mtok
    )
    assert by_model["totals"]["requests"] == 3 and by_model["totals"]["output_tokens"] == 1_000_020
    assert {g["group"] for g in summarize(records, prices, "key")["groups"]} == {"k1", "(no key)"}
    assert [g["group"] for g in summarize(records, prices, "day")["groups"]] == [
        "2026-12-06",
        "2026-12-07",
    ]
    assert all(p["source"] and p["as_of"] for p in by_model["prices"])
    with pytest.raises(UserInputError, match="model, key, day"):
        summarize(records, prices, "week")


def test_price_table_file(tmp_path: Path) -> None:
    good = tmp_path / "prices.toml"
    good.write_text(
        '[[price]]\nprovider = "X"\nmodel = "x-1"\ninput_per_mtok = 1\noutput_per_mtok = 2\n'
        'source = "https://x.example/pricing"\nas_of = "2026-12-01"\n'
    )
    assert load_price_table(str(good)).costs(1_000_000, 1_000_000) == {"x-1": 3.0}
    bad = tmp_path / "bad.toml"
    bad.write_text('[[price]]\nmodel = "x-1"\n')
    with pytest.raises(UserInputError, match="needs provider, model"):
        load_price_table(str(bad))
    with pytest.raises(UserInputError, match="no such price table"):
        load_price_table(str(tmp_path / "missing.toml"))


def _burn(seconds: float) -> None:
    end = time.process_time() + seconds
    while time.process_time() < end:
        pass


def test_cpu_meter_shares_overlapping_time() -> None:
    meter = CpuMeter()
    first = meter.start()
    _burn(0.2)
    second = meter.start()
    _burn(0.2)  # shared by both
    one = meter.stop(first)
    two = meter.stop(second)
    assert one > two > 0.05
    assert one + two == pytest.approx(0.4, abs=0.1)
    _burn(0.05)  # nobody's
    assert meter.stop(meter.start()) < 0.05


def test_records_round_trip(tmp_path: Path) -> None:
    settings = Settings(home=tmp_path)
    record_usage(settings, _record("a", "k", NOW, 3, 4))
    record_usage(settings, _record("b", None, NOW - timedelta(days=3), 1, 1))
    assert [r.model for r in usage_records(settings)] == ["a", "b"]
    recent = usage_records(settings, NOW - timedelta(days=1))
    assert [(r.model, r.key, r.prompt_tokens, r.time) for r in recent] == [("a", "k", 3, NOW)]


def test_server_records_requests(served) -> None:  # type: ignore[no-untyped-def]
    url = served.main.url
    before = httpx.get(f"{url}/api/usage").json()["totals"]["requests"]
    body = {"model": MODEL, "messages": [{"role": "user", "content": "Hi"}], "max_tokens": 5}
    plain = httpx.post(f"{url}/v1/chat/completions", json=body, timeout=120)
    assert plain.status_code == 200
    with httpx.stream("POST", f"{url}/v1/chat/completions", json={**body, "stream": True},
                      timeout=120) as streamed:  # fmt: skip
        assert streamed.status_code == 200
        streamed.read()
    httpx.get(f"{url}/api/tags")  # names no model: not a usage row
    report = httpx.get(f"{url}/api/usage", params={"by": "model", "since": "1h"}).json()
    assert report["totals"]["requests"] == before + 2
    last = report["recent"][-2:]
    assert [r["model"] for r in last] == [MODEL, MODEL]
    for row in last:
        assert row["prompt_tokens"] > 0 and 0 < row["output_tokens"] <= 5
        assert row["ttft_s"] is not None and row["ttft_s"] <= row["duration_s"]
        assert row["cpu_s"] > 0 and row["energy_wh"] > 0
    assert report["groups"][0]["group"] == MODEL
    assert httpx.get(f"{url}/api/usage", params={"by": "week"}).status_code == 400


def test_usage_needs_the_key(served) -> None:  # type: ignore[no-untyped-def]
    assert httpx.get(f"{served.keyed.url}/api/usage").status_code == 401


def _usage_rows(url: str, count: int) -> list[dict[str, object]]:
    """The last `count` ledger rows, waiting a little: a stopped stream is recorded after
    the server noticed the hang-up."""
    deadline = time.monotonic() + 30
    while True:
        report = httpx.get(f"{url}/api/usage", params={"since": "1h"}).json()
        if report["totals"]["requests"] >= count or time.monotonic() > deadline:
            return list(report["recent"])
        time.sleep(0.2)


@pytest.mark.parametrize(
    ("path", "body", "chunk_has_text"),
    [
        (
            "/v1/chat/completions",
            {"messages": [{"role": "user", "content": "Count to one hundred."}]},
            lambda line: '"content": "' in line and '"content": ""' not in line,
        ),
        (
            "/api/generate",
            {"prompt": "Count to one hundred.", "options": {"num_predict": 200}},
            lambda line: '"response": "' in line and '"response": ""' not in line,
        ),
    ],
)
def test_stopped_stream_is_recorded(served, path, body, chunk_has_text, caplog) -> None:  # type: ignore[no-untyped-def]
    """The UI's Stop button hangs up mid-stream: the ledger and the access log keep what
    was generated until then (tokens and TTFT), not a zero row."""
    caplog.set_level(logging.INFO, logger="hearth.serve.access")
    url = served.main.url
    before = httpx.get(f"{url}/api/usage", params={"since": "1h"}).json()["totals"]["requests"]
    request = {"model": MODEL, "stream": True, "max_tokens": 200, **body}
    got = 0
    with httpx.stream("POST", f"{url}{path}", json=request, timeout=120) as streamed:
        assert streamed.status_code == 200
        for line in streamed.iter_lines():
            got += chunk_has_text(line)
            if got >= 3:
                break  # leaving the block closes the connection mid-stream
    assert got >= 3
    rows = _usage_rows(url, before + 1)
    row = rows[-1]
    assert row["path"] == path and row["model"] == MODEL
    assert isinstance(row["output_tokens"], int) and 3 <= row["output_tokens"] < 200
    assert row["ttft_s"] is not None and row["prompt_tokens"] > 0  # type: ignore[operator]
    rid = row["request_id"]
    deadline = time.monotonic() + 10
    while not [r for r in caplog.records if str(rid) in r.getMessage()]:
        assert time.monotonic() < deadline, "no access log line for the stopped request"
        time.sleep(0.1)
    (line,) = [r.getMessage() for r in caplog.records if str(rid) in r.getMessage()]
    assert f"output_tokens={row['output_tokens']} " in line and "ttft=-" not in line
