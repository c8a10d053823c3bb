"""The coverage page in headless Chromium: the map's schools and the province table appear,
with no internet (the page loads nothing from outside the collector)."""

from __future__ import annotations

import re
import shutil
import subprocess
from collections.abc import Iterator
from html.parser import HTMLParser
from pathlib import Path

import pytest

from edugap.collector.model import IngestStats, Store
from edugap.collector.policy.snapshots import SnapshotHolder
from edugap.collector.serving.exposition import Exposition
from edugap.collector.serving.http import STATIC, HttpDeps, build_app
from edugap.collector.serving.speedtest import serve_in_thread
from edugap.collector.store import open_store
from tests import realparts
from tests.collector.sample import school, snapshot


def chromium() -> str:
    for name in ("chromium", "chromium-browser", "google-chrome"):
        path = shutil.which(name)
        if path:
            return path
    realparts.missing("chromium", "install the Debian package 'chromium'")
    raise AssertionError("unreachable")


def dump_dom(url: str, profile: Path) -> str:
    """The DOM after the page's scripts ran (virtual time lets its fetches finish)."""
    result = subprocess.run(
        [chromium(), "--headless", "--no-sandbox", "--disable-gpu",
         "--disable-background-networking", "--disable-component-update", "--disable-sync",
         "--no-first-run", f"--user-data-dir={profile}", "--virtual-time-budget=10000",
         "--dump-dom", url],
        capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr[-2000:]
    return result.stdout


class Page(HTMLParser):
    """Collects the map's circles and the province table's rows."""

    def __init__(self) -> None:
        super().__init__()
        self.circles: dict[str, str] = {}  # school_id -> class attribute
        self.rows: list[list[str]] = []
        self._row: list[str] | None = None
        self._cell = False
        self.status = ""
        self._in_status = False

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        a = dict(attrs)
        if tag == "circle" and a.get("data-school"):
            self.circles[a["data-school"] or ""] = a.get("class") or ""
        elif tag == "tr" and a.get("data-province") is not None:
            self._row = []
        elif tag == "td" and self._row is not None:
            self._cell = True
            self._row.append("")
        elif tag == "div" and a.get("id") == "status":
            self._in_status = True

    def handle_endtag(self, tag: str) -> None:
        if tag == "tr" and self._row is not None:
            self.rows.append(self._row)
            self._row = None
        elif tag == "td":
            self._cell = False
        elif tag == "div":
            self._in_status = False

    def handle_data(self, data: str) -> None:
        if self._cell and self._row is not None:
            self._row[-1] += data
        if self._in_status:
            self.status += data


@pytest.fixture
def store(tmp_path: Path) -> Iterator[Store]:
    s = open_store(str(tmp_path / "page.db"))
    yield s
    s.close()


def test_page_has_no_external_resources() -> None:
    html = (STATIC / "coverage.html").read_text(encoding="utf-8")
    # only the SVG namespace URI (an identifier, never fetched) may look like a URL
    urls = set(re.findall(r"https?://[^\s\"'<>)]+", html)) - {"http://www.w3.org/2000/svg"}
    assert urls == set()
    assert not re.search(r"<(script|link|img)[^>]+(src|href)=", html)


def test_map_and_province_table_in_chromium(store: Store, tmp_path: Path) -> None:
    snap = snapshot([
        school("HN-1", "Thành phố Hà Nội", download=12.5, connectivity="moderate"),
        school("HN-2", "Thành phố Hà Nội", download=48.0, connectivity="good", shortfalls=()),
        school("CB-1", "Cao Bằng", download=0.4, connectivity="bad"),
        school("CB-2", "Cao Bằng", download=None, connectivity="unknown", monitoring="never"),
        school("ZZ-9", registered=False),  # no coordinates: not on the map
    ])  # fmt: skip
    holder = SnapshotHolder()
    holder.publish(snap, 0.1)
    deps = HttpDeps(holder, Exposition(holder, IngestStats()), store, lambda: {"ok": True})
    with serve_in_thread(build_app(deps)) as url:
        page = Page()
        page.feed(dump_dom(url + "/", tmp_path / "profile"))
    assert page.circles == {
        "HN-1": "school moderate",
        "HN-2": "school good",
        "CB-1": "school bad",
        "CB-2": "school unknown",
    }
    table = {row[0]: row for row in page.rows}
    assert set(table) == {"Thành phố Hà Nội", "Cao Bằng"}
    # Province, Schools, Good, Moderate, Bad, Unknown, Live, Gap, Computers missing
    assert table["Cao Bằng"][:7] == ["Cao Bằng", "2", "0", "0", "1", "1", "1"]
    assert table["Thành phố Hà Nội"][1:4] == ["2", "1", "1"]
    assert "4 schools on the map" in page.status


def test_page_asks_for_the_token_when_the_api_needs_one(store: Store, tmp_path: Path) -> None:
    holder = SnapshotHolder()
    holder.publish(snapshot([school("HN-1", "Thành phố Hà Nội")]), 0.1)
    deps = HttpDeps(holder, Exposition(holder, IngestStats()), store, lambda: {"ok": True},
                    api_token="t0ken")  # fmt: skip
    with serve_in_thread(build_app(deps)) as url:
        page = Page()
        page.feed(dump_dom(url + "/", tmp_path / "profile"))
    assert page.circles == {}
    assert "bearer token is needed" in page.status
