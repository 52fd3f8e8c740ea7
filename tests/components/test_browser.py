"""The components browser in headless Chromium, opened from disk: every view loads without a console error, the
search finds a unit, a click opens its page, the graph renders."""

import os
import shutil

import pytest
import torch

from paramlens.components import HarvestConfig, Units, harvest_model
from paramlens.components.browser import DRAWN_INPUTS, drawn_edges, write_browser
from paramlens.components.known import known_mechanisms
from paramlens.decompose.spd import SPDMethod
from tests.report.test_demo_report import CHROMIUM, FLAGS


def _browser_of(cli, tmp_path, *decompose_args, harvest=()):
    code, _, err = cli("decompose", *decompose_args, "--out", tmp_path / "runs")
    assert code == 0, err
    (folder,) = (tmp_path / "runs").iterdir()
    code, out, err = cli("components", folder, *harvest)
    assert code == 0, err
    moved = tmp_path / "moved"  # the folder must work wherever it is copied
    shutil.copytree(folder / "components" / "browser", moved)
    return moved / "index.html"


@pytest.fixture
def chromium():
    if CHROMIUM is None:
        if os.environ.get("CI"):
            pytest.fail("chromium is missing in CI; `make test` installs Debian's chromium package")
        pytest.skip("chromium not installed (make test installs it as root)")
    from playwright.sync_api import sync_playwright

    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=CHROMIUM, args=FLAGS)
        yield browser
        browser.close()


def _check(page_path, chromium, query, expect_unit, prompt_graph=False):
    messages = []
    page = chromium.new_page()
    page.on("console", lambda m: messages.append(f"{m.type}: {m.text}"))
    page.on("pageerror", lambda e: messages.append(f"pageerror: {e}"))
    page.goto(page_path.as_uri(), wait_until="load")
    page.wait_for_selector("#units tbody tr")
    page.fill("#search", query)
    names = page.eval_on_selector_all("#units tbody tr td:first-child", "cells => cells.map(c => c.textContent)")
    assert names and all(query in n for n in names) and expect_unit in names
    page.click(f"#units a.unit:text-is('{expect_unit}')")
    page.wait_for_selector("#unit-title")
    assert page.text_content("#unit-title") == expect_unit
    assert page.locator(".context").count() > 0
    page.goto(page_path.as_uri() + "#/graph")
    page.wait_for_selector("#graph line", state="attached")
    assert page.locator("#graph line").count() > 0 and page.locator("#graph g.node").count() > 1
    page.click("#graph g.node[data-unit] >> nth=0")
    page.wait_for_selector("#unit-title")
    page.goto(page_path.as_uri() + "#/mechanisms")
    page.wait_for_selector(".mechanism, .empty")
    page.goto(page_path.as_uri() + "#/prompts")
    page.wait_for_selector(".prompt .tok")
    page.click(".prompt .tok >> nth=1")
    page.wait_for_selector(".fires table, .fires .empty")
    assert (page.locator(".prompt-graph").count() == 1) == prompt_graph  # only the given prompt has a graph of its own
    if prompt_graph:
        page.click(".prompt-graph")
        page.wait_for_selector("#graph line", state="attached")
        assert "prompt 1:" in page.text_content("#view p")
    assert messages == []


def test_a_toy_decomposition_s_browser(cli, tmp_path, chromium):
    page = _browser_of(cli, tmp_path, "tms", "-t", "linear1", "-t", "linear2", "--steps", 200, "--C", 6,
                       harvest=("--set", "n_inputs=2048"))
    _check(page, chromium, "linear2", "linear2:0")


def test_a_language_model_decomposition_s_browser(cli, tmp_path, chromium, lm_folder):
    page = _browser_of(cli, tmp_path, lm_folder, "-t", "model.layers.0.mlp.*", "--steps", 3, "--C", 4, "--context",
                       16, "--tokens", 1024, "--batch-size", 2, harvest=("--tokens", 512, "--prompt", "the cat sat"))
    _check(page, chromium, "up_proj", "model.layers.0.mlp.up_proj:0", prompt_graph=True)


def test_each_true_feature_s_unit_is_shown_with_its_feature(exact, tmp_path, chromium):
    model, targets, spd = exact
    x = model.source().sample(2048, torch.Generator().manual_seed(0))
    harvest = harvest_model(SPDMethod, spd, model, targets, x, HarvestConfig(top_k=4, effect_contexts=2),
                            progress=False)
    known = known_mechanisms(SPDMethod, spd, model, targets, Units.of(SPDMethod, targets, 5))
    page_path = write_browser(tmp_path / "browser", harvest, str, title="exact SPD of TMS 5-2", known=known)
    page = chromium.new_page()
    page.goto(page_path.as_uri(), wait_until="load")
    page.wait_for_selector("#units tbody tr")
    assert "known mechanism" in page.text_content("#units thead")
    for i in model.represented().nonzero().flatten().tolist():
        page.fill("#search", f"feature {i} (block")
        page.wait_for_function("document.querySelectorAll('#units tbody tr').length == 2")
        names = page.eval_on_selector_all("#units tbody tr td:first-child", "cells => cells.map(c => c.textContent)")
        assert sorted(names) == [f"linear1:{i}", f"linear2:{i}"]
        page.click(f"#units a.unit:text-is('linear1:{i}')")
        page.wait_for_selector("#unit-title")
        assert page.text_content("#known") == f"known mechanism: feature {i} (block 1.00)"
        page.go_back()
        page.wait_for_selector("#units tbody tr")


def test_the_graph_view_draws_only_the_inputs_that_feed_most():
    edges = [{"source": f"input:{k}", "target": f"a:{k % 3}", "weight": float(k)} for k in range(DRAWN_INPUTS + 10)]
    edges += [{"source": "a:0", "target": "output", "weight": 0.5}]
    drawn = drawn_edges(edges)
    assert {e["source"] for e in drawn if e["source"].startswith("input:")} == {
        f"input:{k}" for k in range(10, DRAWN_INPUTS + 10)}
    assert drawn[-1] == edges[-1]
