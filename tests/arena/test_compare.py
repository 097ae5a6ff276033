"""`hearth compare` on two stored models (SmolLM2 under two names) with stored eval runs,
arena battles and judge scores: all four formats carry the same facts; the speed is
measured for real once (no number asserted); the HTML is one self-contained file whose
chart a headless Chromium renders (skipped, with the reason, where Chromium or Playwright
is not installed)."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
from cli_runner import Cli

from hearth.arena.battles import BattleStore, NewBattle
from hearth.arena.judge_scores import JudgeScore, ScoreStore
from hearth.config import load_settings
from hearth.eval.results import ResultStore, RunSpec
from hearth.eval.tasks import LEADERBOARD, TASKS
from hearth.eval.tasks.base import MetricResult

MODELS = ("smollm2:135m", "twin:135m")


@pytest.fixture
def stored(hearth_home: Path, smollm2_gguf: Path) -> None:
    from hearth.store import Store

    settings = load_settings()
    store = Store(settings)
    for name in MODELS:
        store.import_path(smollm2_gguf, name)
    results = ResultStore(settings.db_url)
    for task in LEADERBOARD:
        t = TASKS[task]
        run = results.start(RunSpec(MODELS[0], task, t.num_fewshot, 1234), 10)
        results.finish(run, [MetricResult(t.primary_metric, 0.40, 0.01, 10, t.primary_subtask)])
    conv = [{"role": "user", "content": "q"}, {"role": "assistant", "content": "x"}]
    winners = ["model_a"] * 14 + ["model_b"] * 6 + ["tie"] * 4
    BattleStore(settings.db_url).add_many(
        NewBattle(MODELS[0], MODELS[1], w, conv, conv, voter="t") for w in winners
    )
    scores = ScoreStore(settings.db_url)
    for s in (6.0, 8.0, None):
        scores.add(JudgeScore(MODELS[0], "81", 1, "big-judge", s, "..."))


@pytest.mark.usefixtures("stored")
def test_compare_formats(cli: Cli, tmp_path: Path) -> None:
    code, out, err = cli("compare", *MODELS, "--format", "json", "--no-measure")
    assert code == 0, err
    doc = json.loads(out)
    first, second = doc["models"]
    assert first["model"] == MODELS[0] and first["eval"]["average"] == pytest.approx(40.0)
    assert second["eval"]["average"] is None
    assert first["arena"]["battles"] == 24 and first["arena"]["rating"] > second["arena"]["rating"]
    assert first["arena"]["ci_low"] < first["arena"]["rating"] < first["arena"]["ci_high"]
    assert first["judge"] == {"score": 7.0, "judge": "big-judge", "num_scored": 2}
    assert first["speed"] is None and first["cost_per_mtok_usd"] is None
    assert first["license"]["id"] == "apache-2.0" and first["license"]["commercial_use"] == "yes"
    assert all(p["source"].startswith("https://") and p["as_of"] for p in doc["api_prices"])

    code, table, _ = cli("compare", *MODELS, "--no-measure")
    assert code == 0 and "arena (95% CI)" in table and "apache-2.0" in table
    assert "source https://openai.com/api/pricing/" in table

    code, md, _ = cli("compare", *MODELS, "--format", "markdown", "--no-measure")
    assert code == 0 and md.startswith("| model |") and f"| {MODELS[1]} |" in md

    page = tmp_path / "compare.html"
    code, _, err = cli("compare", *MODELS, "--format", "html", "--measure", "-o", str(page))
    assert code == 0, err
    text = page.read_text()
    assert "<svg" in text and "Arena rating (95% CI)" in text and "Decode tokens/s" in text
    assert "http://" not in text.replace('xmlns="http://www.w3.org/2000/svg"', "")
    assert "<script" not in text and "<link" not in text  # nothing fetched


@pytest.mark.usefixtures("stored")
def test_compare_html_in_chromium(cli: Cli, tmp_path: Path) -> None:
    page = tmp_path / "compare.html"
    code, _, err = cli("compare", *MODELS, "--format", "html", "--no-measure", "-o", str(page))
    assert code == 0, err
    chromium = shutil.which("chromium") or shutil.which("chromium-browser")
    if chromium is None:
        pytest.skip(
            "Chromium is not installed (apt-get install chromium); the HTML was checked as text"
        )
    playwright = pytest.importorskip("playwright.sync_api", reason="Playwright is not installed")
    with playwright.sync_playwright() as p:
        browser = p.chromium.launch(executable_path=chromium, args=["--no-sandbox"])
        try:
            tab = browser.new_page()
            tab.goto(page.as_uri())
            assert tab.locator("table#models tbody tr").count() == 2
            charts = tab.locator("svg.chart")
            assert charts.count() == 2  # arena ratings and eval averages (speed not measured)
            box = charts.first.bounding_box()
            assert box is not None and box["width"] > 100 and box["height"] > 40
            assert tab.locator("svg.chart rect.bar").count() == 3  # 2 ratings + 1 eval average
        finally:
            browser.close()


def test_compare_bad_input(cli: Cli, hearth_home: Path, tmp_path: Path) -> None:
    code, _, err = cli("compare", "nope:1b", "--no-measure")
    assert code == 1 and "not found" in err
    code, _, err = cli("compare", "x", "--format", "pdf")
    assert code == 2 and "--format" in err
    bad = tmp_path / "prices.toml"
    bad.write_text('[[price]]\nprovider = "X"\n')
    code, _, err = cli("compare", "x", "--prices", str(bad), "--no-measure")
    assert code == 2 and "needs provider" in err
