"""The demo's report in a real headless browser: it renders, every image loads, no console errors.

Needs Debian's Chromium (``apt-get install chromium``) and Playwright's Python driver
(``pip install -e .[browser]``); without them the tests are skipped with that advice. Marked
``slow``: the second test runs the whole quick demo first.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from diffusion_reward import cli
from diffusion_reward.evaluation.report import Report

pytestmark = pytest.mark.slow

CHROMIUM_FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                  "--disable-background-networking", "--disable-component-update", "--disable-sync"]


def chromium() -> str:
    path = shutil.which("chromium") or shutil.which("chromium-browser")
    if path is None:
        pytest.skip("Chromium is not installed (Debian: apt-get install chromium)")
    return path


def open_in_browser(html: Path, screenshot: Path) -> dict:
    """Load ``html`` in headless Chromium; returns console errors, page errors and image states."""
    sync_api = pytest.importorskip("playwright.sync_api", reason="pip install -e .[browser] for the browser tests")
    errors: list[str] = []
    with sync_api.sync_playwright() as p:
        browser = p.chromium.launch(executable_path=chromium(), args=CHROMIUM_FLAGS)
        page = browser.new_page(viewport={"width": 1200, "height": 900})
        page.on("console", lambda msg: errors.append(msg.text) if msg.type == "error" else None)
        page.on("pageerror", lambda exc: errors.append(str(exc)))
        failed: list[str] = []
        page.on("requestfailed", lambda req: failed.append(req.url))
        page.goto(html.resolve().as_uri(), wait_until="load")
        images = page.evaluate("""() => Array.from(document.images).map(img => ({
            src: img.src.slice(0, 40), complete: img.complete, width: img.naturalWidth, height: img.naturalHeight}))""")
        title = page.title()
        text = page.inner_text("body")
        page.screenshot(path=str(screenshot), full_page=True)
        browser.close()
    return {"errors": errors, "failed": failed, "images": images, "title": title, "text": text}


def assert_renders(html: Path, tmp_path: Path, min_images: int) -> dict:
    shot = tmp_path / "screenshot.png"
    seen = open_in_browser(html, shot)
    assert seen["errors"] == [] and seen["failed"] == [], seen
    assert len(seen["images"]) >= min_images, seen["images"]
    broken = [img for img in seen["images"] if not img["complete"] or img["width"] == 0]
    assert broken == [], broken
    assert all(img["src"].startswith("data:image/png;base64,") for img in seen["images"])  # self-contained
    page = np.asarray(Image.open(shot).convert("L"))
    assert page.shape[0] >= 900 and page.std() > 5  # a real page, not a blank one
    return seen


def test_report_page_renders_its_embedded_images(tmp_path) -> None:
    figure = np.zeros((40, 60, 3), np.uint8)
    figure[:, :30] = (200, 30, 30)
    Image.fromarray(figure).save(tmp_path / "fig.png")
    report = Report("A report")
    report.heading("Results")
    report.text("the **reward** prefers `expert` behaviour")
    report.image(tmp_path / "fig.png", "a figure")
    report.table(["model", "auroc"], [["diffusion", 0.93]])
    _, html = report.write(tmp_path / "out")
    seen = assert_renders(html, tmp_path, min_images=1)
    assert seen["images"][0]["width"] == 60 and "prefers expert behaviour" in seen["text"]


def test_quick_demo_report_in_a_browser(tmp_path) -> None:
    chromium()
    out = tmp_path / "demo"
    assert cli.main(["demo", "--quick", "--out", str(out)]) == 0
    html = out / "report.html"
    assert html.is_file() and (out / "report.md").is_file()
    seen = assert_renders(html, tmp_path, min_images=4)
    assert "Diffusion Reward" in seen["title"] + seen["text"]
    # a second run reuses every stage
    assert cli.main(["demo", "--quick", "--out", str(out)]) == 0
