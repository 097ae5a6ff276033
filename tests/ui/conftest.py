"""Browser fixtures: a real `hearth serve` (a subprocess, SmolLM2 imported into a temporary
HEARTH_HOME, pip pointed at the test cache's wheels so pulls stay offline) and Debian's
headless Chromium driven by Playwright (the Python package only; no browser download).
Tests skip with the reason when /usr/bin/chromium or playwright is missing; CI installs
both (.ci/run). Screenshots go to tests/ui/screenshots/ (ignored by git)."""

from __future__ import annotations

import importlib.util
import os
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest

CHROMIUM = Path(os.environ.get("HEARTH_TEST_CHROMIUM", "/usr/bin/chromium"))
SCREENSHOTS = Path(__file__).resolve().parent / "screenshots"
MODEL = "smollm2:135m"
REPO = Path(__file__).resolve().parents[2]


@dataclass
class Server:
    url: str
    home: Path
    env: dict[str, str]


def _offline_wheels() -> Path:
    """tests/conftest.py's find-links folder with SmolLM2's wheel (loaded by path: test
    folders are not packages)."""
    spec = importlib.util.spec_from_file_location("_root_conftest", REPO / "tests" / "conftest.py")
    assert spec is not None and spec.loader is not None
    root = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(root)
    folder: Path = root.pypi_wheels(root.SMOLLM2_PACKAGE)
    return folder


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def start_server(
    home: Path, *models: str, extra: tuple[str, ...] = ()
) -> tuple[subprocess.Popen[bytes], Server]:
    port = _free_port()
    env = {
        **os.environ,
        "HEARTH_HOME": str(home),
        "PIP_NO_INDEX": "1",
        "PIP_FIND_LINKS": str(_offline_wheels()),
        "PYTHONPATH": str(REPO),
        # the Leaderboard page's evaluation runs score the small fixture data
        "HEARTH_EVAL_DATA": str(REPO / "tests" / "eval" / "fixtures"),
    }
    cmd = [sys.executable, "-m", "hearth", "serve", "--port", str(port), "--kv-cache-gb", "0.15",
           "--ctx", "1024", *extra, *models]  # fmt: skip
    with (home / "serve.log").open("wb") as log:  # the child keeps its own descriptor
        proc = subprocess.Popen(cmd, env=env, stdout=log, stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 300
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"hearth serve exited: {(home / 'serve.log').read_text()[-2000:]}")
        try:
            health = httpx.get(f"{url}/health", timeout=2)
            # the models named at start load after the server is up: wait for them
            if health.status_code == 200 and len(health.json()["models_loaded"]) >= len(models):
                return proc, Server(url, home, env)
        except httpx.HTTPError:
            pass
        time.sleep(0.3)
    proc.kill()
    raise RuntimeError("hearth serve did not start in 300 s")


def stop_server(proc: subprocess.Popen[bytes]) -> None:
    proc.terminate()
    try:
        proc.wait(30)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()


@pytest.fixture(scope="session")
def ui_server(tmp_path_factory: pytest.TempPathFactory, smollm2_gguf: Path) -> Iterator[Server]:
    from hearth.config import load_settings
    from hearth.store import Store

    home = tmp_path_factory.mktemp("ui-home")
    Store(load_settings({"HEARTH_HOME": str(home)})).import_path(smollm2_gguf, MODEL)
    proc, server = start_server(home, MODEL)
    yield server
    stop_server(proc)


@pytest.fixture(scope="session")
def keyed_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Server, str]]:
    """A server whose database holds an API key (auth on), no models; and the key."""
    from hearth.config import load_settings
    from hearth.serve.keys import create_key

    home = tmp_path_factory.mktemp("ui-keyed-home")
    _, secret = create_key(load_settings({"HEARTH_HOME": str(home)}), "ui")
    proc, server = start_server(home)
    yield server, secret
    stop_server(proc)


@pytest.fixture(scope="session")
def browser() -> Iterator[object]:
    missing = ""
    if not CHROMIUM.exists():
        missing = f"no Chromium at {CHROMIUM}: apt-get install chromium (CI does)"
    elif importlib.util.find_spec("playwright") is None:
        missing = "no playwright: pip install -e '.[test]'"
    if missing and os.environ.get("HEARTH_REQUIRE_CHROMIUM"):
        pytest.fail(missing)  # CI promises the browser: its absence is a failure there
    if missing:
        pytest.skip(missing)
    from playwright import sync_api

    with sync_api.sync_playwright() as p:
        chromium = p.chromium.launch(executable_path=str(CHROMIUM), args=["--no-sandbox"])
        yield chromium
        chromium.close()


@pytest.fixture
def page(browser):  # type: ignore[no-untyped-def]
    context = browser.new_context(viewport={"width": 1280, "height": 860})
    page = context.new_page()
    errors: list[str] = []
    page.on("pageerror", lambda exc: errors.append(str(exc)))
    page.on(
        "console",
        lambda msg: errors.append(msg.text) if "Content Security Policy" in msg.text else None,
    )
    yield page
    context.close()
    assert not errors, f"errors in the page: {errors}"


@pytest.fixture
def shot():  # type: ignore[no-untyped-def]
    """shot(page, name): a full-page screenshot to tests/ui/screenshots/NAME.png."""

    def take(page, name: str) -> Path:  # type: ignore[no-untyped-def]
        SCREENSHOTS.mkdir(exist_ok=True)
        path = SCREENSHOTS / f"{name}.png"
        page.screenshot(path=str(path), full_page=True)
        return path

    return take
