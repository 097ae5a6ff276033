"""Measures the issue's budget for the chat page (not a test: speed is never asserted):
bytes transferred (gzipped) for the page and its scripts and styles, and first paint /
first contentful paint from Chromium's performance timing, over loopback.

    python tests/ui/measure_budget.py http://127.0.0.1:11435   # a running `hearth serve`
"""

from __future__ import annotations

import json
import sys
from statistics import median

from playwright.sync_api import sync_playwright

MEASURE = """() => {
  const paint = Object.fromEntries(performance.getEntriesByType('paint').map((e) => [e.name, e.startTime]));
  const nav = performance.getEntriesByType('navigation')[0];
  const resources = performance.getEntriesByType('resource').filter((r) => r.name.includes('/ui/'));
  const bytes = nav.encodedBodySize + resources.reduce((n, r) => n + r.encodedBodySize, 0);
  return { paint, dom_content_loaded: nav.domContentLoadedEventEnd, bytes, files: resources.length + 1 };
}"""


def main(url: str, runs: int = 5) -> None:
    results = []
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path="/usr/bin/chromium", args=["--no-sandbox"])
        for _ in range(runs):
            context = browser.new_context()  # a cold cache each time
            page = context.new_page()
            page.goto(url + "/#/chat")
            page.get_by_role("textbox", name="Message").wait_for()
            results.append(page.evaluate(MEASURE))
            context.close()
        browser.close()
    summary = {
        "runs": runs,
        "first_paint_ms": median(r["paint"].get("first-paint", 0) for r in results),
        "first_contentful_paint_ms": median(
            r["paint"].get("first-contentful-paint", 0) for r in results
        ),
        "dom_content_loaded_ms": median(r["dom_content_loaded"] for r in results),
        "transferred_bytes_gzipped": results[-1]["bytes"],
        "files": results[-1]["files"],
    }
    print(json.dumps(summary, indent=2))


if __name__ == "__main__":
    main(sys.argv[1] if len(sys.argv) > 1 else "http://127.0.0.1:11435")
