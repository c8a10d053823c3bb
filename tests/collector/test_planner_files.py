"""Files planners open: a filter naming no known place is an error that says so (CLI and API),
the XLSX reads as a Vietnamese office expects, the CSV has an Excel-on-Vietnamese dialect, and
a download's name says what it holds."""

from __future__ import annotations

import csv
import io
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import openpyxl
import pytest
from starlette.testclient import TestClient

from edugap.collector.cli import main
from edugap.collector.export import ExportOptions, write_shortages
from edugap.collector.model import BandwidthRow, IngestStats, School, Snapshot
from edugap.collector.policy.evaluate import compute
from edugap.collector.policy.rules import load_policy
from edugap.collector.policy.snapshots import SnapshotHolder
from edugap.collector.serving.exposition import Exposition
from edugap.collector.serving.http import HttpDeps, build_app
from edugap.collector.store import open_store
from tests.collector import reports

NOW = datetime(2026, 11, 25, 17, 30, tzinfo=UTC)  # 00:30 on the 26th in Hà Nội
PLACES = [
    ("DN-1", "Đồng Nai", "Phường Trấn Biên"),
    ("VL-1", "Vĩnh Long", "Phường Long Châu"),
    ("DL-1", "Đắk Lắk", "Phường Buôn Ma Thuột"),
    ("DB-1", "Điện Biên", "Phường Điện Biên Phủ"),
    ("HN-1", "Thành phố Hà Nội", "Phường Ba Đình"),
    ("AG-1", "An Giang", "Phường Long Xuyên"),
]
LONG_NAME = "Trường Phổ thông Dân tộc Nội trú Trung học cơ sở và Trung học phổ thông huyện"


def _schools() -> list[School]:
    return [
        School(sid, LONG_NAME if sid == "HN-1" else f"Trường {sid}", province, commune,
               "primary", 15.0, 106.0, 420)
        for sid, province, commune in PLACES
    ]  # fmt: skip


@pytest.fixture
def snap() -> Snapshot:
    tests = [BandwidthRow("HN-1", "d", NOW - timedelta(hours=1), 5.126, 1.0, 30.0, None, False)]
    last = {"HN-1": NOW - timedelta(hours=1)}
    return compute(_schools(), last, tests, [], [], load_policy(), NOW)


# --- unknown places --------------------------------------------------------------------------


@pytest.fixture
def db(tmp_path: Path) -> Iterator[str]:
    url = str(tmp_path / "p.db")
    store = open_store(url)
    try:
        store.upsert_schools(_schools())
        store.save_batch([reports.received(reports.bandwidth("HN-1", at=datetime.now(UTC)))])
    finally:
        store.close()
    yield url


@pytest.mark.parametrize(
    ("flag", "value", "said"),
    [
        ("--province", "Hà Giang", "Hà Giang is part of Tuyên Quang since 2025-07-01"),
        ("--province", "Atlantis", "unknown province 'Atlantis' (no known name is close)"),
        ("--province", "Dong Nay", "unknown province 'Dong Nay' (closest: 'Đồng Nai'"),
        ("--commune", "Phường Ba Đinh Cũ", "unknown commune 'Phường Ba Đinh Cũ'"),
        ("--level", "kindergarten", "unknown level 'kindergarten': no school has it (levels: "
         "primary)"),
    ],
)  # fmt: skip
def test_the_cli_says_when_a_filter_names_no_known_place(
    db: str, tmp_path: Path, capsys: pytest.CaptureFixture[str], flag: str, value: str, said: str
) -> None:
    out = tmp_path / "hg.csv"
    assert main(["export", "shortages", "--db", db, flag, value, "-o", str(out)]) == 2
    err = capsys.readouterr().err
    assert said in err and "wrote" not in err
    assert not out.exists() and not (tmp_path / "hg.csv.partial").exists()


def test_a_known_place_with_nothing_to_list_gives_an_empty_file_and_says_so(
    db: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "cb.csv"
    assert main(["export", "shortages", "--db", db, "--province", "Cao Bằng", "-o", str(out)]) == 0
    assert out.read_text(encoding="utf-8-sig").splitlines()[0].startswith("school_id,")
    assert len(out.read_text(encoding="utf-8-sig").splitlines()) == 1
    err = capsys.readouterr().err
    assert "wrote 0 schools" in err and "no school matches province 'Cao Bằng'" in err


def test_the_default_file_name_carries_the_filters_and_the_date(
    db: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.chdir(tmp_path)
    args = ["export", "shortages", "--db", db, "--format", "xlsx", "--province", "ha noi"]
    assert main([*args, "--need", "measured"]) == 0
    (made,) = tmp_path.glob("shortages_*.xlsx")
    assert made.name.startswith("shortages_ha-noi_measured_20")
    assert str(made.name) in capsys.readouterr().err


def _client(snapshot: Snapshot) -> TestClient:
    holder = SnapshotHolder()
    holder.publish(snapshot, 0.01)
    deps = HttpDeps(holder=holder, exposition=Exposition(holder, IngestStats()),
                    rejects=_NoRejects(), readiness=lambda: {"store": True})  # fmt: skip
    return TestClient(build_app(deps))


class _NoRejects:
    def recent_rejects(self, limit: int = 100) -> list[object]:
        return []


def test_the_api_answers_404_with_the_same_message(snap: Snapshot) -> None:
    client = _client(snap)
    for path in ("/api/v1/shortages", "/api/v1/schools"):
        gone = client.get(path, params={"province": "Hà Giang"})
        assert gone.status_code == 404
        assert "Hà Giang is part of Tuyên Quang" in gone.json()["error"]
        assert client.get(path, params={"province": "Atlantis"}).status_code == 404
    empty = client.get("/api/v1/schools", params={"province": "Cao Bằng"})
    assert empty.status_code == 200 and empty.json()["total"] == 0
    named = client.get("/api/v1/shortages", params={"format": "xlsx", "province": "TP HCM",
                                                   "kind": "computers"})  # fmt: skip
    assert named.status_code == 200  # known, and empty
    disposition = named.headers["content-disposition"]
    assert disposition == 'attachment; filename="shortages_ho-chi-minh_computers_2026-11-26.xlsx"'


def test_api_and_export_agree_on_rounding_and_shapes(snap: Snapshot) -> None:
    client = _client(snap)
    api = client.get("/api/v1/schools/HN-1").json()
    exported = client.get("/api/v1/shortages", params={"format": "json"}).json()
    (row,) = [r for r in exported if r["school_id"] == "HN-1"]
    assert api == row
    assert api["download_mbps"] == 5.13 and api["bandwidth_gap_mbps"] == 15.87  # 21 - 5.126
    assert api["shortfalls"] == ["bandwidth"] and api["last_report"] == "2026-11-25T16:30:00Z"


# --- the XLSX and the CSV dialect -------------------------------------------------------------


def test_xlsx_in_vietnamese_with_widths_collation_and_local_time(snap: Snapshot) -> None:
    out = io.BytesIO()
    write_shortages(snap, "xlsx", out)
    book = openpyxl.load_workbook(out)
    assert book.sheetnames == ["Trường học", "Ngân sách (đo được)", "Cần khảo sát", "Tỉnh"]
    sheet = book["Trường học"]
    header = next(sheet.iter_rows(max_row=1, values_only=True))
    assert header[:3] == ("Mã trường", "Tên trường", "Tỉnh/thành phố")
    assert header[22] == "Báo cáo gần nhất (giờ Asia/Ho_Chi_Minh)"
    first = next(sheet.iter_rows(min_row=2, max_row=2, values_only=True))
    assert first[0] == "HN-1" and first[22] == datetime(2026, 11, 25, 23, 30)  # Hà Nội time
    # the name column is as wide as the longest name (up to 60 characters); a code column
    # stays narrow
    assert sheet.column_dimensions["B"].width >= min(len(LONG_NAME), 60)
    assert sheet.column_dimensions["A"].width < 20
    provinces = [r[0] for r in book["Tỉnh"].iter_rows(min_row=2, values_only=True)]
    assert provinces == ["An Giang", "Đắk Lắk", "Điện Biên", "Đồng Nai", "Thành phố Hà Nội",
                         "Vĩnh Long", "Tổng cộng"]  # fmt: skip
    assert next(book["Tỉnh"].iter_rows(max_row=1, values_only=True))[1] == "Số trường"


def test_english_headers_on_request(snap: Snapshot) -> None:
    out = io.BytesIO()
    write_shortages(snap, "xlsx", out, options=ExportOptions(lang="en"))
    sheet = openpyxl.load_workbook(out)["Schools"]
    assert next(sheet.iter_rows(max_row=1, values_only=True))[:2] == ("school_id", "name")


def test_csv_for_excel_on_vietnamese_settings(snap: Snapshot) -> None:
    out = io.BytesIO()
    write_shortages(snap, "csv", out, options=ExportOptions(dialect="excel-vn"))
    text = out.getvalue().decode("utf-8-sig")
    assert text.startswith("school_id;name;province;")
    rows = {r["school_id"]: r for r in csv.DictReader(io.StringIO(text), delimiter=";")}
    hn = rows["HN-1"]
    assert (hn["download_mbps"], hn["bandwidth_gap_mbps"], hn["lat"]) == ("5,13", "15,87", "15,0")
    assert (hn["students"], hn["shortfalls"]) == ("420", "bandwidth")
