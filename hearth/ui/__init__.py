"""The web UI: plain JavaScript modules, CSS and one HTML page under `static/`, shipped as
package data and served by `hearth serve` (hearth/serve/ui_routes.py). No build step, no
framework, no network: everything the page loads comes from the server that served it."""

from __future__ import annotations

from pathlib import Path

STATIC_DIR = Path(__file__).resolve().parent / "static"
