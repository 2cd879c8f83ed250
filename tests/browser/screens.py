"""Screenshots of a page at desktop and phone width, for people to look at: test-output/screenshots/NAME-1280.png
and NAME-390.png (full page). The page's viewport is put back as it was afterwards."""

from __future__ import annotations

import os
from pathlib import Path

from tests.servers import ROOT

FOLDER = Path(os.environ.get("SCREENSHOTS", ROOT / "test-output" / "screenshots"))
WIDTHS = {1280: 800, 390: 844}  # width: height (a laptop, and a phone such as an iPhone 14)


def path(name: str, width: int) -> Path:
    FOLDER.mkdir(parents=True, exist_ok=True)
    return FOLDER / f"{name}-{width}.png"


def capture(page, name: str) -> list[Path]:
    """Full-page screenshots of the page as it is now, 1280 then 390 pixels wide."""
    before = page.viewport_size
    taken = []
    try:
        for width, height in WIDTHS.items():
            page.set_viewport_size({"width": width, "height": height})
            page.evaluate("() => new Promise(done => requestAnimationFrame(() => requestAnimationFrame(done)))")
            target = path(name, width)
            page.screenshot(path=str(target), full_page=True)
            taken.append(target)
    finally:
        if before:
            page.set_viewport_size(before)
    return taken
