"""The demo writes a self-contained report; headless Chromium loads every figure with no console error."""

import os
import shutil
from pathlib import Path

import pytest

from paramlens.demo import run_demo

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
FLAGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update",
         "--disable-sync", "--disable-quic", "--no-first-run"]


@pytest.fixture(scope="module")
def report(tmp_path_factory) -> Path:
    folder = run_demo(tmp_path_factory.mktemp("runs"), quick=True, progress=False)
    return folder / "index.html"


def test_report_is_self_contained(report):
    html = report.read_text()
    assert "http://" not in html and "https://" not in html and "<script" not in html
    for section in ("TMS 5-2", "TMS 40-10", "TMS 5-2 + identity", "Residual MLP", "Cross-layer MLP", "SPD of TMS 5-2"):
        assert f"<h2>{section}" in html
    assert (report.parent / "models" / "tms_5_2" / "model.safetensors").is_file()
    assert (report.parent / "spd_tms_5_2" / "result.json").is_file()
    assert 'href="spd_tms_5_2/components/browser/index.html"' in html  # the decomposition's browser
    assert (report.parent / "spd_tms_5_2" / "components" / "browser" / "data" / "units.js").is_file()
    for figure in ("spd_losses.png", "spd_ci_linear1.png", "spd_cos_linear1.png"):
        assert f'src="{figure}"' in html


def test_report_renders_in_headless_chromium(report, tmp_path):
    if CHROMIUM is None:
        if os.environ.get("CI"):
            pytest.fail("chromium is missing in CI; `make test` installs Debian's chromium package")
        pytest.skip("chromium not installed (make test installs it as root)")
    from playwright.sync_api import sync_playwright

    moved = tmp_path / "copied-report"  # the folder must work wherever it is copied
    shutil.copytree(report.parent, moved)
    messages, failed = [], []
    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=CHROMIUM, args=FLAGS)
        page = browser.new_page()
        page.on("console", lambda m: messages.append(f"{m.type}: {m.text}"))
        page.on("pageerror", lambda e: messages.append(f"pageerror: {e}"))
        page.on("requestfailed", lambda r: failed.append(r.url))
        page.goto((moved / "index.html").as_uri(), wait_until="load")
        images = page.evaluate("Array.from(document.images).map(i => [i.getAttribute('src'), i.naturalWidth])")
        rows = page.evaluate("document.querySelectorAll('table tbody tr').length")
        browser.close()
    assert len(images) >= 10
    assert [src for src, width in images if width == 0] == [], "figures that did not load"
    assert messages == [] and failed == []
    assert rows >= 6  # one summary row per model and one for the decomposition, plus the SPD metric table
