"""The Chat page in real headless Chromium against a real `hearth serve` with SmolLM2:
a streamed answer with its stats, Stop mid-answer, the conversation found again after a
reload, keyboard use, and model output that tries markup, scripts and remote images
rendered as inert text."""

from __future__ import annotations

import json
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
    loaded = httpx.get(ui_server.url + "/api/ps").json()["models"]
    (served,) = [m for m in loaded if m["name"] == MODEL]
    expect(page.locator("#context")).to_have_attribute("max", str(served["context_length"]))
    shot(page, "chat")
    page.reload()
    item = page.get_by_role("button", name="Name three colours.")
    expect(item).to_be_visible()
    item.click()
    expect(page.locator("article.msg.user")).to_contain_text("Name three colours.")
    expect(page.locator("article.msg.assistant .stats")).to_contain_text("tokens")


def test_stop_mid_answer(ui_server, page) -> None:  # type: ignore[no-untyped-def]
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
    page.keyboard.press("Escape")  # Esc stops, like the Stop button
    expect(answer.locator(".stats")).to_contain_text("stopped", timeout=30_000)
    expect(page.get_by_role("button", name="Send")).to_be_visible()
    tokens = int(re.search(r"(\d+) tokens", answer.locator(".stats").inner_text()).group(1))
    assert tokens < 400
    box.fill("Write another long story.")
    page.get_by_role("button", name="Send").click()
    expect(page.locator("article.msg.assistant").last.locator(".body")).not_to_be_empty(
        timeout=120_000
    )
    page.get_by_role("button", name="Stop").click()
    expect(page.locator("article.msg.assistant").last.locator(".stats")).to_contain_text(
        "stopped", timeout=30_000
    )
    box.fill("one\n")
    box.press("Shift+Enter")  # a new line, not a send
    assert page.locator("article.msg.user").count() == 2


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


# what the model is made to stream (a regex constraint added to the page's own request)
STREAMED = r'<script>window\.__pwned=5</script><img src=x onerror="window\.__pwned=6"> !\[t\]\(http://127\.0\.0\.1:9/streamed\.png\)'


def test_streamed_markup_is_inert(ui_server, page) -> None:  # type: ignore[no-untyped-def]
    """The real model streams `<script>`, an onerror image and a remote Markdown image
    (its output forced by a regex on the request the page sends): all shown as text."""

    def constrain(route):  # type: ignore[no-untyped-def]
        body = json.loads(route.request.post_data or "{}")
        route.continue_(post_data=json.dumps({**body, "regex": STREAMED, "max_tokens": 200}))

    page.route("**/v1/chat/completions", constrain)
    requests: list[str] = []
    page.on("request", lambda r: requests.append(r.url))
    page.goto(ui_server.url + "/#/chat")
    page.get_by_role("textbox", name="Message").fill("Say anything.")
    page.get_by_role("button", name="Send").click()
    answer = page.locator("article.msg.assistant").last
    expect(answer.locator(".stats")).to_contain_text("tokens", timeout=120_000)
    expect(answer.locator(".body")).to_contain_text("<script>window.__pwned=5</script>")
    assert page.evaluate("window.__pwned") is None
    assert answer.locator("script, img").count() == 0
    expect(answer.get_by_role("link", name="image: t")).to_be_visible()
    assert not [u for u in requests if "streamed.png" in u]


def test_regenerate_and_edit(ui_server, page) -> None:  # type: ignore[no-untyped-def]
    page.goto(ui_server.url + "/#/chat")
    page.locator("details.settings summary").click()
    page.get_by_label("Max tokens").fill("8")
    box = page.get_by_role("textbox", name="Message")
    box.fill("Count to five.")
    box.press("Enter")
    answers = page.locator("article.msg.assistant")
    expect(answers.last.locator(".stats")).to_contain_text("tokens", timeout=120_000)
    page.get_by_role("button", name="Regenerate").click()
    expect(page.get_by_role("button", name="Stop")).to_be_hidden(timeout=120_000)
    expect(answers).to_have_count(1)  # replaced, not added
    expect(answers.last.locator(".stats")).to_contain_text("tokens")
    page.locator("article.msg.user").get_by_role("button", name="Edit").click()
    expect(box).to_have_value("Count to five.")
    expect(page.locator("article.msg")).to_have_count(0)
    box.fill("Count to three.")
    box.press("Enter")
    expect(answers.last.locator(".stats")).to_contain_text("tokens", timeout=120_000)
    expect(page.locator("article.msg.user")).to_have_text(re.compile("Count to three"))
    cid = page.evaluate("location.hash").rsplit("/", 1)[-1]
    stored = httpx.get(f"{ui_server.url}/api/conversations/{cid}").json()
    assert [m["role"] for m in stored["messages"]] == ["user", "assistant"]
    assert stored["messages"][0]["content"] == "Count to three."
    assert stored["params"]["max_tokens"] == 8
