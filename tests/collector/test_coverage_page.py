"""The coverage page in real headless Chromium (the machine's, driven by Playwright) on a
populated collector: counts and colours per class, filters in the URL, drill-down, a school's
details, downloads, Vietnamese and English, and nothing loaded from outside the collector."""

from __future__ import annotations

import csv
import io
import re
import shutil
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import pytest

from edugap.collector.model import IngestStats, SchoolStatus, Store
from edugap.collector.policy.snapshots import SnapshotHolder
from edugap.collector.registry.outlines import Outlines, country_outline
from edugap.collector.serving.exposition import Exposition
from edugap.collector.serving.http import HttpDeps, build_app
from edugap.collector.serving.page import STATIC
from edugap.collector.serving.speedtest import serve_in_thread
from edugap.collector.store import open_store
from tests import realparts
from tests.collector.sample import school, snapshot

CLASS_RGB = {"good": (26, 152, 80), "moderate": (244, 163, 0), "bad": (215, 48, 39)}
SCRIPT_NAME = "<script>window.pwned = 1</script><img src=x onerror='window.pwned = 2'>"


def chromium() -> str:
    for name in ("chromium", "chromium-browser", "google-chrome"):
        path = shutil.which(name)
        if path:
            return path
    realparts.missing("chromium", "install the Debian package 'chromium'")
    raise AssertionError("unreachable")


def at(s: SchoolStatus, lat: float, lon: float, **changes: Any) -> SchoolStatus:
    return replace(s, lat=lat, lon=lon, **changes)


def schools() -> list[SchoolStatus]:
    return [
        at(school("CB-1", "Cao Bằng", commune="Xã Bảo Lâm", name="Trường Tiểu học Bảo Lâm",
                  download=0.4, connectivity="bad", shortfalls=("bandwidth", "computers")),
           22.85, 105.45),
        at(school("CB-2", "Cao Bằng", commune="Xã Quảng Lâm", download=48.0,
                  connectivity="good", shortfalls=()), 22.95, 106.45),
        at(school("CB-3", "Cao Bằng", commune="Xã Bảo Lâm", download=None, connectivity="unknown",
                  monitoring="never", shortfalls=("not_monitored",), last_report=None),
           22.45, 106.05),
        at(school("HN-1", "Thành phố Hà Nội", name="Trường THCS Ba Đình", download=12.5,
                  connectivity="moderate"), 21.03, 105.83),
        at(school("HN-2", "Thành phố Hà Nội", name=SCRIPT_NAME, download=30.0,
                  connectivity="good", shortfalls=()), 21.25, 105.45),
        at(school("HCM-1", "Thành phố Hồ Chí Minh", download=0.8, connectivity="bad",
                  monitoring="at_risk"), 10.78, 106.70),
        school("ZZ-1", registered=False, download=None, connectivity="unknown"),
    ]  # fmt: skip


def box(province: str, lon0: float, lat0: float, lon1: float, lat1: float) -> dict[str, Any]:
    ring = [[lon0, lat0], [lon1, lat0], [lon1, lat1], [lon0, lat1], [lon0, lat0]]
    return {"type": "Feature", "properties": {"province": province, "commune": None},
            "geometry": {"type": "Polygon", "coordinates": [ring]}}  # fmt: skip


AREAS = {"type": "FeatureCollection", "features": [
    box("Cao Bằng", 105.2, 22.2, 106.8, 23.2),
    box("Thành phố Hà Nội", 105.3, 20.6, 106.0, 21.4),
    box("Thành phố Hồ Chí Minh", 106.3, 10.4, 107.0, 11.2),
]}  # fmt: skip


@pytest.fixture
def store(tmp_path: Path) -> Iterator[Store]:
    s = open_store(str(tmp_path / "page.db"))
    yield s
    s.close()


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    exe = chromium()
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        realparts.missing("playwright", "pip install 'edugap[dev]' (drives the machine's Chromium)")
        raise
    with sync_playwright() as p:
        b = p.chromium.launch(executable_path=exe, args=["--no-sandbox", "--disable-gpu"])
        yield b
        b.close()


def collector(store: Store, api_token: str | None = None) -> Any:
    holder = SnapshotHolder()
    holder.publish(snapshot(schools()), 0.1)
    country = country_outline()
    if country is None and realparts.REQUIRE:
        realparts.missing("country outline", "make install builds it from npm world-atlas")
    deps = HttpDeps(holder, Exposition(holder, IngestStats()), store, lambda: {"ok": True},
                    api_token=api_token, outlines=Outlines(country, AREAS))  # fmt: skip
    return serve_in_thread(build_app(deps))


@pytest.fixture
def site(store: Store) -> Iterator[str]:
    with collector(store) as url:
        yield url


@pytest.fixture
def page(browser: Any, site: str) -> Iterator[Any]:
    context = browser.new_context(viewport={"width": 1280, "height": 900}, accept_downloads=True)
    pg = context.new_page()
    pg.requests = []  # type: ignore[attr-defined]
    pg.on("request", lambda r: pg.requests.append(r.url))  # type: ignore[attr-defined]
    yield pg
    context.close()


def open_page(page: Any, url: str) -> None:
    page.goto(url)
    page.wait_for_function("() => document.getElementById('map').dataset.drawn")


def legend(page: Any) -> dict[str, int]:
    counts = page.eval_on_selector_all(
        "#legend .legend-item",
        "els => els.map(e => [e.dataset.class, e.querySelector('b').textContent])",
    )
    return {c: int(n) for c, n in counts}


def drawn(page: Any) -> dict[str, int]:
    found: dict[str, int] = page.evaluate(
        "() => JSON.parse(document.getElementById('map').dataset.drawn)"
    )
    return found


def pixel(page: Any, lat: float, lon: float) -> tuple[int, int, int]:
    rgb = page.evaluate(
        """([lat, lon]) => {
            const c = document.getElementById('map'), r = window.devicePixelRatio || 1;
            const [x, y] = window.edugapMap.project(lat, lon);
            const ctx = c.getContext('2d');
            const d = ctx.getImageData(Math.floor(x * r), Math.floor(y * r), 1, 1).data;
            return [d[0], d[1], d[2]];
        }""",
        [lat, lon],
    )
    return (rgb[0], rgb[1], rgb[2])


def click_at(page: Any, lat: float, lon: float) -> None:
    x, y = page.evaluate("([lat, lon]) => window.edugapMap.project(lat, lon)", [lat, lon])
    page.locator("#map").click(position={"x": x, "y": y})


def url_query(page: Any) -> dict[str, list[str]]:
    return parse_qs(urlsplit(page.url).query)


def table(page: Any) -> dict[str, list[str]]:
    rows = page.eval_on_selector_all(
        "#area-rows tr", "trs => trs.map(tr => [...tr.children].map(c => c.textContent))"
    )
    return {r[0]: r[1:] for r in rows}


def test_page_shows_every_class_in_its_colour_from_the_collector_alone(
    page: Any, site: str, tmp_path: Path
) -> None:
    open_page(page, site + "/")
    # Vietnamese by default
    assert page.evaluate("document.documentElement.lang") == "vi"
    assert page.locator("h1").text_content() == "Kết nối và thiết bị của các trường"
    # the legend counts every school of the filter; the map draws those with coordinates
    assert legend(page) == {"good": 2, "moderate": 1, "bad": 2, "unknown": 2}
    assert drawn(page) == {"good": 2, "moderate": 1, "bad": 2, "unknown": 1}
    assert "6 trường trên bản đồ, 7 trường theo bộ lọc" in page.locator("#status").text_content()
    for lat, lon, klass in ((22.85, 105.45, "bad"), (22.95, 106.45, "good"),
                            (21.03, 105.83, "moderate")):  # fmt: skip
        assert pixel(page, lat, lon) == CLASS_RGB[klass], klass
    # a school that does not report (never, at risk) is a ring: white in the middle
    assert pixel(page, 22.45, 106.05) == pixel(page, 10.78, 106.70) == (255, 255, 255)
    # the province table, with a total
    rows = table(page)
    assert rows["Cao Bằng"][:4] == ["3", "1 (33,3 %)", "0 (0 %)", "1 (33,3 %)"]
    assert rows["(chưa có trong danh sách trường)"][0] == "1"
    total = page.eval_on_selector_all("#area-total td", "tds => tds.map(t => t.textContent)")
    assert total[:2] == ["7", "2 (28,6 %)"]
    # the snapshot time is local (Asia/Ho_Chi_Minh), to the minute
    status = page.locator("#status").text_content()
    assert "16:00" in status and "09:00" not in status and ".000" not in status
    # nothing but the collector was asked for anything: it works with no internet
    assert page.requests and all(u.startswith(site + "/") for u in page.requests), page.requests
    shot = tmp_path / "coverage-page.png"
    page.screenshot(path=str(shot), full_page=True)
    assert shot.stat().st_size > 10_000
    print(f"screenshot: {shot}")


def test_a_filter_changes_the_map_the_table_and_the_url(page: Any, site: str) -> None:
    open_page(page, site + "/")
    page.select_option("#f-connectivity", "bad")
    assert url_query(page)["connectivity"] == ["bad"]
    assert legend(page) == {"good": 0, "moderate": 0, "bad": 2, "unknown": 0}
    assert drawn(page) == {"good": 0, "moderate": 0, "bad": 2, "unknown": 0}
    assert set(table(page)) == {"Cao Bằng", "Thành phố Hồ Chí Minh"}
    assert pixel(page, 22.95, 106.45) != CLASS_RGB["good"]  # the good school is gone
    # the URL is the view: opened elsewhere (names written any way), it shows the same
    page.goto(site + "/?province=cao%20bang&monitoring=live")
    page.wait_for_function("() => document.getElementById('map').dataset.drawn")
    assert page.locator("#f-province").input_value() == "Cao Bằng"
    assert legend(page) == {"good": 1, "moderate": 0, "bad": 1, "unknown": 0}
    assert set(table(page)) == {"Xã Bảo Lâm", "Xã Quảng Lâm"}  # drilled down to communes


def test_a_click_on_a_province_filters_to_it_and_drills_down(page: Any, site: str) -> None:
    open_page(page, site + "/")
    click_at(page, 22.3, 106.7)  # inside Cao Bằng's outline, away from its schools
    assert url_query(page)["province"] == ["Cao Bằng"]
    assert legend(page) == {"good": 1, "moderate": 0, "bad": 1, "unknown": 1}
    page.locator("#area-rows tr", has_text="Xã Bảo Lâm").click()
    assert url_query(page)["commune"] == ["Xã Bảo Lâm"]
    assert sum(legend(page).values()) == 2
    page.locator("#crumbs a", has_text="Cả nước").click()
    assert "province" not in url_query(page) and sum(legend(page).values()) == 7


def test_a_click_on_a_school_shows_its_details(page: Any, site: str) -> None:
    open_page(page, site + "/")
    click_at(page, 21.03, 105.83)
    details = page.locator("#details")
    details.wait_for(state="visible")
    assert details.locator("h2").text_content() == "Trường THCS Ba Đình"
    field = {k: details.locator(f'dd[data-field="{k}"]').text_content()
             for k in ("school_id", "download_mbps", "required_mbps", "uptime_pct",
                       "devices_reporting", "computers", "shortfalls", "last_report")}  # fmt: skip
    assert field["school_id"] == "HN-1"
    assert field["download_mbps"] == "12,5" and field["required_mbps"] == "20"
    assert field["uptime_pct"] == "99,5" and field["devices_reporting"] == "3"
    assert field["computers"] == "10 / 25" and field["shortfalls"] == "Băng thông"
    assert "15:00" in field["last_report"]  # 08:00 UTC in Hà Nội's time


def test_a_school_named_like_markup_shows_as_text(page: Any, site: str) -> None:
    open_page(page, site + "/")
    click_at(page, 21.25, 105.45)
    page.locator("#details h2").wait_for()
    assert page.locator("#details h2").text_content() == SCRIPT_NAME
    assert page.evaluate("window.pwned") is None
    assert page.locator("#details script, #details img").count() == 0


def test_the_download_link_of_the_filter_is_a_valid_file(page: Any, site: str) -> None:
    open_page(page, site + "/?province=Cao%20B%E1%BA%B1ng")
    with page.expect_download() as info:
        page.locator('#downloads a[data-format="csv"]').click()
    path = info.value.path()
    rows = list(csv.DictReader(io.StringIO(Path(path).read_text(encoding="utf-8-sig"))))
    assert sorted(r["school_id"] for r in rows) == ["CB-1", "CB-2", "CB-3"]
    with page.expect_download() as info:
        page.locator('#downloads a[data-format="xlsx"]').click()
    assert Path(info.value.path()).read_bytes()[:2] == b"PK"  # a zip: the XLSX container


def test_english_switch(page: Any, site: str) -> None:
    open_page(page, site + "/?connectivity=good")
    page.locator('#lang button[data-lang="en"]').click()
    assert page.evaluate("document.documentElement.lang") == "en"
    assert page.locator("h1").text_content() == "School connectivity and equipment"
    assert url_query(page)["lang"] == ["en"] and url_query(page)["connectivity"] == ["good"]
    assert "2 schools on the map" in page.locator("#status").text_content()
    assert page.locator('#legend [data-class="good"] span').text_content() == "Good"


def test_with_an_api_token_the_page_asks_for_it_and_downloads_with_it(
    browser: Any, store: Store
) -> None:
    context = browser.new_context(accept_downloads=True)
    page = context.new_page()
    try:
        with collector(store, api_token="t0ken") as url:
            page.goto(url + "/?province=Cao%20B%E1%BA%B1ng")
            page.locator("#token-form").wait_for(state="visible")
            assert "Cần mã truy cập" in page.locator("#status").text_content()
            page.fill("#token", "t0ken")
            page.locator("#token-form button").click()
            page.wait_for_function("() => document.getElementById('map').dataset.drawn")
            assert sum(legend(page).values()) == 3
            with page.expect_download() as info:
                page.locator('#downloads a[data-format="json"]').click()
            assert re.search(rb'"school_id":\s*"CB-1"', Path(info.value.path()).read_bytes())
    finally:
        context.close()


def test_page_files_name_nothing_outside_the_collector() -> None:
    for path in STATIC.iterdir():
        text = path.read_text(encoding="utf-8")
        assert not re.findall(r"https?://[^\s\"'<>)]+", text), path.name
        assert not re.search(r"""(src|href)=["'](https?:)?//""", text), path.name
