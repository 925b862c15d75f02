"""`skitflow docs` in a real headless browser (Debian's chromium driven by Selenium).

The site must open from file:// with no server and no network: every page renders, every link
resolves to a page of the site or an anchor on it, each recipe's DAG is a visible SVG, nothing is
fetched from anywhere else, and a screenshot is taken for a person to look at.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path
from urllib.parse import urlsplit

import pytest

REPO = Path(__file__).resolve().parent.parent
CHROMIUM, CHROMEDRIVER = "/usr/bin/chromium", "/usr/bin/chromedriver"
if not os.environ.get("CI") and not (Path(CHROMIUM).exists() and shutil.which("dot")):
    pytest.skip("chromium and graphviz are installed by .ci/run", allow_module_level=True)


@pytest.fixture(scope="module")
def site(tmp_path_factory) -> Path:
    """The site of recipes/ and examples/, with one real local run of a recipe to show."""
    work = tmp_path_factory.mktemp("docs")
    for folder in ("recipes", "examples"):
        shutil.copytree(REPO / folder, work / folder)
    runs = work / "runs" / "tickets-classifier-20260101-000000"
    runs.mkdir(parents=True)
    (runs / "summary.json").write_text(json.dumps({
        "recipe": "tickets-classifier", "succeeded": True, "started": "2026-01-01T00:00:00Z",
        "seconds": 5.5, "metrics": {"f1_macro": 0.8712}, "gate": {"passed": True}}))
    out = work / "site"
    done = subprocess.run([sys.executable, "-m", "skitflow", "docs", ".", "-o", str(out)], cwd=work,
                          capture_output=True, text=True, timeout=120,
                          env={**os.environ, "PYTHONPATH": str(REPO)})
    assert done.returncode == 0, done.stderr
    return out


@pytest.fixture(scope="module")
def browser(tmp_path_factory):
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for flag in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-quic",
                 "--no-first-run", "--disable-background-networking", "--disable-component-update",
                 "--disable-sync", "--disable-dev-shm-usage", "--window-size=1280,1600",
                 f"--user-data-dir={tmp_path_factory.mktemp('chromium-profile')}"):
        options.add_argument(flag)
    driver = webdriver.Chrome(service=Service(CHROMEDRIVER), options=options)
    driver.set_page_load_timeout(30)
    yield driver
    driver.quit()


def _resources(driver) -> list[str]:
    return driver.execute_script(
        "return performance.getEntriesByType('resource').map(e => e.name)")


def test_every_page_renders_and_every_link_resolves(site, browser) -> None:
    pages = sorted(p.name for p in site.glob("*.html"))
    assert "index.html" in pages and "steps.html" in pages
    assert "recipe-seed-workflow.html" in pages and "recipe-tickets-classifier.html" in pages
    for page in pages:
        browser.get((site / page).as_uri())
        assert browser.find_element("tag name", "h1").text, page
        assert _resources(browser) == [], f"{page} fetched {_resources(browser)}"
        for link in browser.find_elements("css selector", "a[href]"):
            href = link.get_attribute("href")
            parts = urlsplit(href)
            assert parts.scheme == "file", f"{page}: link leaves the site: {href}"
            target = Path(parts.path)
            assert target.is_file(), f"{page}: broken link {href}"
            if parts.fragment:
                assert f'id="{parts.fragment}"' in target.read_text(), f"{page}: no anchor {href}"


def test_recipe_page_shows_a_visible_dag_parameters_steps_and_runs(site, browser) -> None:
    browser.get((site / "recipe-tickets-classifier.html").as_uri())
    svg = browser.find_element("css selector", "#dag svg")
    size = svg.size
    assert size["width"] > 200 and size["height"] > 200 and svg.is_displayed()
    assert "train-xgboost" in svg.text and "gate f1_macro passed" in svg.text
    params = browser.find_element("id", "parameters").text
    assert "test_size" in params and "float" in params and "0.2" in params
    steps = browser.find_element("id", "steps").text
    assert "drop_duplicates" in steps and "one_hot" in steps and "ticket_id" in steps
    assert "f1_macro" in browser.find_element("id", "gate").text
    runs = browser.find_element("id", "runs").text
    assert "tickets-classifier-20260101-000000" in runs and "f1_macro=0.8712" in runs
    browser.save_screenshot(str(site / "recipe-tickets-classifier.png"))
    assert (site / "recipe-tickets-classifier.png").stat().st_size > 10_000


def test_step_catalogue_lists_every_registered_step(site, browser) -> None:
    from skitflow.steps.registry import default_registry

    browser.get((site / "steps.html").as_uri())
    sections = {s.get_attribute("id") for s in browser.find_elements("css selector", "section")}
    assert sections == {f"{e.kind.value}-{e.name}" for e in default_registry()}
    dropna = browser.find_element("id", "transform-dropna").text
    assert "Drop rows with missing values." in dropna and "columns" in dropna


def test_an_invalid_recipe_writes_no_site(tmp_path) -> None:
    shutil.copy(REPO / "tests" / "recipes" / "invalid" / "unknown-step.yaml", tmp_path)
    done = subprocess.run([sys.executable, "-m", "skitflow", "docs", str(tmp_path), "-o",
                           str(tmp_path / "site")], capture_output=True, text=True, timeout=60,
                          env={**os.environ, "PYTHONPATH": str(REPO)})
    assert done.returncode == 2 and "unknown-step.yaml:6:5" in done.stderr
    assert not (tmp_path / "site").exists()
