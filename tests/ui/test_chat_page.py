"""The Chat page in real headless Chromium against a real `hearth serve` with SmolLM2:
a streamed answer with its stats, Stop mid-answer, the conversation found again after a
reload, keyboard use, and model output that tries markup, scripts and remote images
rendered as inert text."""

from __future__ import annotations

import re

import httpx
from playwright.sync_api import expect

MODEL = "smollm2:135m"


def test_send_stream_reload(ui_server, page, shot) -> None:  # type: ignore[no-untyped-def]
    page.goto(ui_server.url + "/")
    expect(page.get_by_role("combobox", name="Model")).to_have_value(MODEL)
    for name in ("Chat", "Library", "Arena", "Leaderboard", "Usage"):
        expect(page.get_by_role("link", name=name)).to_be_visible()
    box = page.get_by_role("textbox", name="Message")
    box.fill("Name three colours.")
    page.get_by_role("button", name="Send").click()
    answer = page.locator("article.msg.assistant").last
    expect(answer.locator(".stats")).to_contain_text("tokens/s", timeout=120_000)
    expect(answer.locator(".stats")).to_contain_text("TTFT")
    assert answer.locator(".body").inner_text().strip()
    (served,) = httpx.get(ui_server.url + "/api/ps").json()["models"]
    expect(page.locator("#context")).to_have_attribute("max", str(served["context_length"]))
    shot(page, "chat")
    page.reload()
    item = page.get_by_role("button", name="Name three colours.")
    expect(item).to_be_visible()
    item.click()
    expect(page.locator("article.msg.user")).to_contain_text("Name three colours.")
    expect(page.locator("article.msg.assistant .stats")).to_contain_text("tokens")


def test_stop_mid_answer_with_escape(ui_server, page) -> None:  # type: ignore[no-untyped-def]
    page.goto(ui_server.url + "/#/chat")
    page.locator("details.settings summary").click()
    page.get_by_label("Max tokens").fill("400")
    page.get_by_label("Temperature").fill("1")
    box = page.get_by_role("textbox", name="Message")
    box.fill("Write a long story about a lighthouse keeper.")
    box.press("Enter")  # Enter sends
    stop = page.get_by_role("button", name="Stop")
    expect(stop).to_be_visible()
    answer = page.locator("article.msg.assistant").last
    expect(answer.locator(".body")).not_to_be_empty(timeout=120_000)
    stop.click()
    expect(answer.locator(".stats")).to_contain_text("stopped", timeout=30_000)
    expect(page.get_by_role("button", name="Send")).to_be_visible()
    tokens = int(re.search(r"(\d+) tokens", answer.locator(".stats").inner_text()).group(1))
    assert tokens < 400
    box.fill("one\n")
    box.press("Shift+Enter")  # a new line, not a send
    assert page.locator("article.msg.user").count() == 1


def test_model_output_is_inert(ui_server, page, shot) -> None:  # type: ignore[no-untyped-def]
    hostile = (
        '<script>window.__pwned = 1</script><img src=x onerror="window.__pwned=2">\n\n'
        "![tracker](http://127.0.0.1:9/pixel.png) [click](javascript:window.__pwned=3)\n\n"
        "```html\n<script>window.__pwned = 4</script>\n```"
    )
    body = {
        "title": "hostile",
        "model": MODEL,
        "messages": [
            {"role": "user", "content": "<b>bold?</b>"},
            {"role": "assistant", "content": hostile},
        ],
    }
    made = httpx.post(f"{ui_server.url}/api/conversations", json=body).json()
    requests: list[str] = []
    page.on("request", lambda r: requests.append(r.url))
    page.goto(f"{ui_server.url}/#/chat/{made['id']}")
    answer = page.locator("article.msg.assistant")
    expect(answer).to_contain_text("<script>window.__pwned = 1</script>")
    expect(page.locator("article.msg.user")).to_contain_text("<b>bold?</b>")
    assert page.evaluate("window.__pwned") is None
    assert answer.locator("script, img, iframe").count() == 0
    assert answer.get_by_role("link", name="image: tracker").count() == 1
    assert answer.locator("a[href^='javascript']").count() == 0
    assert not [u for u in requests if "pixel.png" in u or ":9/" in u]
    csp = httpx.get(ui_server.url + "/", headers={"Accept": "text/html"}).headers
    assert "script-src 'self'" in csp["content-security-policy"]
    shot(page, "chat-xss")
