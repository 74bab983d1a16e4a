"""The search page in a real browser (issue 10, items 3 and 5): Debian's headless Chromium, driven by
Selenium, against the three services on loopback with a synthetic geo dataset indexed by
marsbench-tiny. It leaves a screenshot in test-artifacts/search-page.png.

Chromium and chromedriver come from the system (`bash scripts/bootstrap.sh test` installs them);
without them the test fails and says so, unless MARSBENCH_SKIP_BROWSER=1 asks to skip it.
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from marsbench.cli.stack import LocalStack, StackUrls
from marsbench.client import IndexerClient
from marsbench.datasets.synth import synthesize
from marsbench.encoder.settings import EncoderSettings
from marsbench.schemas.jobs import JobCreate, JobState, TaskName

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(120)]

CHROMIUM = os.environ.get("MARSBENCH_CHROMIUM", "/usr/bin/chromium")
CHROMEDRIVER = os.environ.get("MARSBENCH_CHROMEDRIVER", "/usr/bin/chromedriver")
SKIP_ENV = "MARSBENCH_SKIP_BROWSER"
ARTIFACTS = Path(__file__).resolve().parents[2] / "test-artifacts"
SCREENSHOT = ARTIFACTS / "search-page.png"  # the region search, map zoomed to the hits
PLANET_SCREENSHOT = ARTIFACTS / "search-page-planet.png"  # the first search, the whole planet
# Root, no network, no display: what Chromium needs to run headless here and in CI.
CHROMIUM_FLAGS = (
    "--headless=new",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--disable-dev-shm-usage",
    "--window-size=1440,1000",
)
WAIT_S = 20
MODEL = "marsbench-tiny"
REGION = (0.0, 0.0, 4.0, 2.0)  # lon_min, lat_min, lon_max, lat_max: a quarter of the synthetic tiles


def require_browser() -> None:
    """Fail (not skip) without a browser: a silently skipped UI test would hide a broken page."""
    if os.environ.get(SKIP_ENV) == "1":
        pytest.skip(f"{SKIP_ENV}=1: the browser test is skipped")
    missing = [path for path in (CHROMIUM, CHROMEDRIVER) if not Path(path).is_file()]
    try:
        import selenium  # noqa: F401
    except ImportError:
        missing.append("the selenium package")
    if missing:
        pytest.fail(
            f"the search-page browser test needs {', '.join(missing)}: run `bash scripts/bootstrap.sh test` "
            f"(it installs chromium, chromedriver and the test extras), or set {SKIP_ENV}=1 to skip it",
            pytrace=False,
        )


@dataclass(frozen=True)
class Indexed:
    urls: StackUrls
    collection: str
    dataset: Path
    sites: dict[str, int]  # ground-truth points per landform


@pytest.fixture(scope="module")
def indexed(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Indexed]:
    require_browser()
    data = synthesize(tmp_path_factory.mktemp("synth"), scale="small", seed=0, tasks=("geo",))
    assert data.geo is not None
    encoder = EncoderSettings(preload=[MODEL], max_wait_ms=1)
    with LocalStack(data_dir=tmp_path_factory.mktemp("state"), encoder_settings=encoder) as urls:
        with IndexerClient(urls.indexer, timeout=60) as indexer:
            job = indexer.create_job(
                JobCreate(task=TaskName.GEOLOCALIZATION, model=MODEL, dataset_dir=str(data.geo.dataset_dir))
            )
            job = indexer.wait(job.id, poll_s=0.1)
        assert job.state is JobState.SUCCEEDED and job.done == data.geo.tiles
        yield Indexed(urls, job.collection, data.geo.dataset_dir, dict(data.geo.points))


@pytest.fixture(scope="module")
def browser(indexed: Indexed) -> Iterator[Any]:
    os.environ.setdefault("SE_OFFLINE", "true")  # never let selenium-manager try the network
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for flag in CHROMIUM_FLAGS:
        options.add_argument(flag)
    with tempfile.TemporaryDirectory(prefix="marsbench-chromium-") as profile:
        options.add_argument(f"--user-data-dir={profile}")
        driver = webdriver.Chrome(service=Service(executable_path=CHROMEDRIVER), options=options)
        try:
            yield driver
        finally:
            driver.quit()


# ----------------------------------------------------------------------------- page helpers


def wait_until(driver: Any, condition: Any, what: str) -> Any:
    from selenium.webdriver.support.ui import WebDriverWait

    return WebDriverWait(driver, WAIT_S).until(condition, message=f"waited {WAIT_S} s for {what}")


def searches(driver: Any) -> int:
    return int(driver.execute_script("return Number(document.body.dataset.searches || 0)"))


def search(driver: Any) -> None:
    """Click Search and wait until the page has the answer (or an error) on screen."""
    from selenium.webdriver.common.by import By

    before = searches(driver)
    driver.find_element(By.ID, "search-button").click()
    wait_until(driver, lambda d: searches(d) > before, "the search to finish")


def cards(driver: Any) -> list[dict[str, Any]]:
    return driver.execute_script(
        """return [...document.querySelectorAll('#grid .card')].map(card => ({
            rank: Number(card.dataset.rank),
            id: card.dataset.id,
            score: Number(card.querySelector('.score').textContent),
            scoreText: card.querySelector('.score').textContent,
            lon: Number(card.dataset.lon),
            lat: Number(card.dataset.lat),
        }))"""
    )


def loaded_thumbnails(driver: Any) -> int:
    return int(
        driver.execute_script(
            "return [...document.querySelectorAll('#grid img.thumb-img')]"
            ".filter(img => img.complete && img.naturalWidth > 0).length"
        )
    )


def dots(driver: Any) -> int:
    return int(driver.execute_script("return document.querySelectorAll('#map .dot').length"))


def basemap(driver: Any) -> dict[str, Any]:
    """The map's image: decoded (naturalWidth), where from, and drawn in the SVG."""
    return driver.execute_script(
        """const img = document.getElementById('basemap');
        return {width: img.complete ? img.naturalWidth : 0, height: img.naturalHeight,
                source: img.dataset.source || null,
                drawn: document.querySelectorAll('#map image.basemap').length}"""
    )


def sites(driver: Any) -> int:
    return int(driver.execute_script("return document.querySelectorAll('#map .site').length"))


def open_link(driver: Any, url: str) -> None:
    """Load a shared link in a fresh page (not a same-document hash change) and wait for its search."""
    driver.get("about:blank")
    driver.get(url)
    wait_until(driver, lambda d: searches(d) >= 1, "the linked search to run")


def set_value(driver: Any, element_id: str, value: str) -> None:
    from selenium.webdriver.common.by import By

    field = driver.find_element(By.ID, element_id)
    field.clear()
    field.send_keys(value)


# ----------------------------------------------------------------------------- the test


def test_search_page_end_to_end(indexed: Indexed, browser: Any, record_property: Any) -> None:
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import Select

    driver = browser
    driver.get(f"{indexed.urls.evaluator}/ui/")
    wait_until(
        driver,
        lambda d: (
            indexed.collection
            in [o.get_attribute("value") for o in Select(d.find_element(By.ID, "collection")).options]
        ),
        "the collection picker to fill from GET /v1/collections",
    )
    Select(driver.find_element(By.ID, "collection")).select_by_value(indexed.collection)
    assert driver.find_element(By.ID, "model").get_attribute("value") == MODEL  # from the latest job

    # A text query: k cards, best first, thumbnails fetched through the API, one map dot per hit.
    set_value(driver, "text", "yardangs")
    Select(driver.find_element(By.ID, "k")).select_by_visible_text("20")
    search(driver)
    assert not driver.find_element(By.ID, "message").is_displayed(), driver.find_element(
        By.ID, "message"
    ).text
    found = cards(driver)
    assert [c["rank"] for c in found] == list(range(1, 21))
    scores = [c["score"] for c in found]
    assert scores == sorted(scores, reverse=True)
    assert all(len(c["scoreText"].split(".")[1]) == 4 for c in found)  # 4 decimals
    wait_until(driver, lambda d: loaded_thumbnails(d) >= 1, "a thumbnail to load")
    assert dots(driver) == 20

    # The basemap: the synthetic dataset has no mars_map/, so the bundled relief, decoded and drawn.
    wait_until(driver, lambda d: basemap(d)["drawn"] == 1, "the basemap to be drawn")
    shown = basemap(driver)
    assert shown["width"] > 0 and shown["width"] == 2 * shown["height"], shown
    assert shown["source"] == "bundled", shown
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    wait_until(driver, lambda d: loaded_thumbnails(d) == 20, "every thumbnail")
    assert driver.save_screenshot(str(PLANET_SCREENSHOT))

    # The next page continues the ranking (next_offset).
    driver.find_element(By.ID, "more").click()
    wait_until(driver, lambda d: len(cards(d)) == 40, "the second page")
    more = cards(driver)
    assert [c["rank"] for c in more] == list(range(1, 41)) and dots(driver) == 40
    assert more[20]["score"] <= more[19]["score"]
    # The link now holds the query and its two pages.
    paged_link = driver.current_url
    assert "#" in paged_link and "pages=2" in paged_link and "q=yardangs" in paged_link, paged_link

    # A region-restricted search: every hit inside the box, which the map draws.
    driver.find_element(By.CSS_SELECTOR, "input[name=region][value=bbox]").click()
    for element_id, value in zip(("lon-min", "lat-min", "lon-max", "lat-max"), REGION, strict=True):
        set_value(driver, element_id, str(value))
    search(driver)
    inside = cards(driver)
    assert len(inside) == 20 and dots(driver) == 20
    lon_min, lat_min, lon_max, lat_max = REGION
    assert all(lon_min <= c["lon"] <= lon_max and lat_min <= c["lat"] <= lat_max for c in inside), inside
    assert driver.find_elements(By.CSS_SELECTOR, "#map .region")
    wait_until(driver, lambda d: loaded_thumbnails(d) == 20, "every thumbnail of the region search")

    # Ground-truth sites of the landform picked: one dot per catalogue point, gone with "none".
    Select(driver.find_element(By.ID, "sites")).select_by_value("yardangs")
    wait_until(driver, lambda d: sites(d) == indexed.sites["yardangs"], "the yardang sites")
    Select(driver.find_element(By.ID, "sites")).select_by_value("pitted_cones")
    wait_until(driver, lambda d: sites(d) == indexed.sites["pitted_cones"], "the pitted-cone sites")
    Select(driver.find_element(By.ID, "sites")).select_by_value("yardangs")
    wait_until(driver, lambda d: sites(d) == indexed.sites["yardangs"], "the yardang sites again")

    # The zoomed map, then the screenshot a reviewer looks at.
    driver.find_element(By.ID, "map-view").click()
    assert driver.save_screenshot(str(SCREENSHOT))
    record_property("screenshot", str(SCREENSHOT))
    region_link = driver.current_url
    assert "bbox=" in region_link and "sites=yardangs" in region_link and "zoom=1" in region_link, region_link
    driver.find_element(By.ID, "copy-link").click()
    wait_until(driver, lambda d: d.find_element(By.ID, "share-link").is_displayed(), "the link to show")
    assert driver.find_element(By.ID, "share-link").get_attribute("value") == region_link
    print(f"search page screenshots: {SCREENSHOT}, {PLANET_SCREENSHOT}")

    # An image query: the upload goes out as a data: URI.
    driver.find_element(By.CSS_SELECTOR, "input[name=region][value=none]").click()
    driver.find_element(By.CSS_SELECTOR, ".tabs [data-mode=image]").click()
    query_image = sorted((indexed.dataset / "image_queries" / "yardangs").glob("*.png"))[0]
    driver.find_element(By.ID, "image").send_keys(str(query_image))
    wait_until(driver, lambda d: d.find_element(By.ID, "image-preview").is_displayed(), "the image preview")
    search(driver)
    by_image = cards(driver)
    assert len(by_image) == 20 and [c["score"] for c in by_image] == sorted(
        (c["score"] for c in by_image), reverse=True
    )
    assert "the query image" in driver.find_element(By.ID, "summary").text

    # An API error is shown in the message area, in the API's own words.
    set_value(driver, "model", "no-such-model")
    search(driver)
    message = driver.find_element(By.ID, "message")
    assert message.is_displayed() and "no-such-model" in message.text, message.text

    # Shared links: loading one runs its search and shows the same results (and pages, sites, zoom).
    open_link(driver, region_link)
    wait_until(driver, lambda d: len(cards(d)) == 20, "the region search from its link")
    assert [c["id"] for c in cards(driver)] == [c["id"] for c in inside]
    assert driver.find_element(By.ID, "text").get_attribute("value") == "yardangs"
    assert float(driver.find_element(By.ID, "lon-max").get_attribute("value")) == REGION[2]
    wait_until(driver, lambda d: sites(d) == indexed.sites["yardangs"], "the linked sites")
    assert driver.find_element(By.ID, "map-view").text == "Whole planet"  # zoomed, as shared
    open_link(driver, paged_link)
    wait_until(driver, lambda d: len(cards(d)) == 40, "both pages from the link")
    assert [c["id"] for c in cards(driver)] == [c["id"] for c in more]
