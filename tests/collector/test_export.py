"""Shortage exports as planners open them: CSV in a spreadsheet, XLSX, GeoJSON, JSON; filters."""

from __future__ import annotations

import csv
import io
import json
from datetime import UTC, datetime, timedelta
from pathlib import Path

import openpyxl
import pytest

from edugap.collector.cli import main
from edugap.collector.export import (
    COLUMNS,
    FORMATS,
    ExportError,
    ExportOptions,
    Filters,
    filter_schools,
    write_shortages,
)
from edugap.collector.model import BandwidthRow, School, Snapshot
from edugap.collector.policy.evaluate import compute
from edugap.collector.policy.rules import load_policy
from edugap.collector.store import open_store
from tests.collector import reports

NOW = datetime(2026, 11, 25, 12, 0, tzinfo=UTC)
HN, HCM = "Thành phố Hà Nội", "Thành phố Hồ Chí Minh"


def school(sid: str, name: str, province: str, commune: str, level: str, students: int) -> School:
    return School(sid, name, province, commune, level, 21.0, 105.8, students, 1, None)


SCHOOLS = [
    school("HN-1", "Trường Tiểu học Ba Đình", HN, "Phường Ba Đình", "primary", 900),
    school("HN-2", '=HYPERLINK("http://x","click")', HN, "Phường Ngọc Hà", "primary", 100),
    school("HN-3", "@SUM(A1)", HN, "Phường Ba Đình", "upper_secondary", 400),
    school("HCM-1", "-2+3", HCM, "Phường Sài Gòn", "primary", 400),
    school("HCM-2", "Trường đủ cả", HCM, "Phường Sài Gòn", "primary", 100),
]


def speed(sid: str, down: float) -> BandwidthRow:
    return BandwidthRow(sid, "d", NOW - timedelta(hours=1), down, 5.0, 30.0, None, False)


@pytest.fixture
def snap() -> Snapshot:
    bandwidth = [speed("HN-1", 5.0), speed("HN-3", 50.0), speed("HCM-1", 0.5),
                 speed("HCM-2", 80.0), speed("GHOST", 3.0)]  # fmt: skip
    last = {r.school_id: r.measured_at for r in bandwidth}
    return compute(SCHOOLS, last, bandwidth, [], [], load_policy(), NOW)


def export(snap: Snapshot, fmt: str, **filters: str) -> tuple[int, bytes]:
    out = io.BytesIO()
    count = write_shortages(snap, fmt, out, Filters(**filters))
    return count, out.getvalue()


def csv_rows(data: bytes) -> list[dict[str, str]]:
    assert data.startswith(b"\xef\xbb\xbf")  # BOM: Excel then reads the Vietnamese right
    return list(csv.DictReader(io.StringIO(data.decode("utf-8-sig"), newline="")))


def test_csv_ranks_measured_need_first_and_neutralises_formulas(snap: Snapshot) -> None:
    count, data = export(snap, "csv")
    rows = csv_rows(data)
    assert count == len(rows) == 6 and list(rows[0]) == list(COLUMNS)
    needs = [r["need"] for r in rows]
    assert needs == sorted(needs, key=["measured", "assumed", "none"].index)
    measured = [float(r["priority"]) for r in rows if r["need"] == "measured"]
    assert measured == sorted(measured, reverse=True) and len(measured) == 3
    names = {r["school_id"]: r["name"] for r in rows}
    assert names["HN-2"] == '\'=HYPERLINK("http://x","click")'
    assert names["HN-3"] == "'@SUM(A1)" and names["HCM-1"] == "'-2+3"
    assert names["HN-1"] == "Trường Tiểu học Ba Đình"
    hn1 = next(r for r in rows if r["school_id"] == "HN-1")
    # numbers stay numbers: 900 students need 45 Mbps, 5 measured
    assert (hn1["students"], hn1["download_mbps"], hn1["bandwidth_gap_mbps"]) == (
        "900",
        "5.0",
        "40.0",
    )
    assert (hn1["connectivity"], hn1["bandwidth_evidence"]) == ("moderate", "measured")
    # no inventory: its one computer is an assumed gap, not a 'computers' shortfall
    assert (hn1["computers_gap"], hn1["computers_evidence"]) == ("1", "assumed")
    assert (hn1["shortfalls"], hn1["need"]) == ("bandwidth", "measured")
    assert hn1["last_report"] == "2026-11-25T11:00:00Z"
    hn2 = next(r for r in rows if r["school_id"] == "HN-2")  # never reported
    assert (hn2["shortfalls"], hn2["need"], hn2["priority"]) == ("not_monitored", "assumed", "0.0")


def test_xlsx_has_province_totals_and_safe_cells(snap: Snapshot, tmp_path: Path) -> None:
    out = io.BytesIO()
    count = write_shortages(snap, "xlsx", out, options=ExportOptions(lang="en"))
    book = openpyxl.load_workbook(io.BytesIO(out.getvalue()))
    assert book.sheetnames == ["Schools", "Budget", "Survey", "Provinces"]
    sheet = book["Schools"]
    rows = list(sheet.iter_rows(values_only=True))
    header = (*COLUMNS[:22], "last_report (Asia/Ho_Chi_Minh)", *COLUMNS[23:])
    assert rows[0] == header and len(rows) == count + 1 == 7
    by_id = {r[0]: dict(zip(COLUMNS, r, strict=True)) for r in rows[1:]}
    # a text cell is text: no formula runs, and no visible quote is needed
    assert by_id["HN-2"]["name"] == '=HYPERLINK("http://x","click")'
    for cell in sheet["B"]:
        assert cell.data_type == "s"
    hn1 = by_id["HN-1"]
    assert hn1["students"] == 900 and hn1["download_mbps"] == 5.0 and hn1["registered"] is True
    assert hn1["last_report"] == datetime(2026, 11, 25, 18, 0)  # 11:00 UTC in Hà Nội
    assert hn1["shortfalls"] == "bandwidth"
    budget = [r[0] for r in book["Budget"].iter_rows(min_row=2, values_only=True)]
    survey = [r[0] for r in book["Survey"].iter_rows(min_row=2, values_only=True)]
    assert set(budget) == {"HN-1", "HCM-1", "GHOST"} and set(survey) == {"HN-2", "HN-3", "HCM-2"}
    totals = list(book["Provinces"].iter_rows(values_only=True))
    head = totals[0]
    table = {r[0]: dict(zip(head, r, strict=True)) for r in totals[1:]}
    assert set(table) == {HN, HCM, "(unregistered)", "All provinces"}
    assert table[HN]["schools"] == 3 and table[HN]["students"] == 1400
    # HN-1 measured 45 - 5 = 40, HN-3 measured 0; HN-2 never measured: the full 20, assumed
    assert (table[HN]["bandwidth_gap_measured_mbps"], table[HN]["bandwidth_gap_assumed_mbps"]) == (
        40.0,
        20.0,
    )
    assert (table[HN]["schools_need_measured"], table[HN]["schools_need_assumed"]) == (1, 2)
    assert table[HCM]["shortfall_bandwidth"] == 1
    assert (table[HCM]["computers_gap_measured"], table[HCM]["computers_gap_assumed"]) == (0, 2)
    assert table["All provinces"]["schools"] == 6


def test_geojson_points(snap: Snapshot) -> None:
    count, data = export(snap, "geojson")
    doc = json.loads(data)
    assert doc["type"] == "FeatureCollection" and len(doc["features"]) == count == 6
    feature = next(f for f in doc["features"] if f["properties"]["school_id"] == "HN-1")
    assert feature["geometry"] == {"type": "Point", "coordinates": [105.8, 21.0]}
    assert feature["properties"]["name"] == "Trường Tiểu học Ba Đình"
    ghost = next(f for f in doc["features"] if f["properties"]["school_id"] == "GHOST")
    assert ghost["geometry"] is None and ghost["properties"]["registered"] is False


def test_json_rows(snap: Snapshot) -> None:
    _, data = export(snap, "json", province="ho chi minh")
    rows = json.loads(data)
    assert [r["school_id"] for r in rows] == ["HCM-1", "HCM-2"]
    assert rows[0]["connectivity"] == "bad" and rows[0]["last_report"] == "2026-11-25T11:00:00Z"


@pytest.mark.parametrize(
    ("filters", "expected"),
    [
        ({"province": "Hà Nội"}, {"HN-1", "HN-2", "HN-3"}),
        ({"province": "ha noi", "commune": "ba dinh"}, {"HN-1", "HN-3"}),
        ({"level": "Upper_Secondary"}, {"HN-3"}),
        ({"kind": "bandwidth"}, {"HN-1", "HCM-1", "GHOST"}),
        ({"kind": "not_monitored"}, {"HN-2"}),
        ({"kind": "any", "province": "TP HCM"}, {"HCM-1"}),  # HCM-2: computers only assumed
        ({"province": "Đà Nẵng"}, set()),  # a province of 2025 with no school: nothing
        ({"need": "measured"}, {"HN-1", "HCM-1", "GHOST"}),  # the budget list
        ({"need": "assumed", "province": "Hà Nội"}, {"HN-2", "HN-3"}),  # survey or enrol
    ],
)
def test_filters(snap: Snapshot, filters: dict[str, str], expected: set[str]) -> None:
    assert {s.school_id for s in filter_schools(snap, Filters(**filters))} == expected


def test_unknown_kind_and_format_are_named(snap: Snapshot) -> None:
    with pytest.raises(ExportError, match="'speed'"):
        filter_schools(snap, Filters(kind="speed"))
    with pytest.raises(ExportError, match="'budget'"):
        filter_schools(snap, Filters(need="budget"))
    with pytest.raises(ExportError, match="'pdf'"):
        export(snap, "pdf")
    assert set(FORMATS) == {"csv", "xlsx", "geojson", "json"}


REGISTRY = (
    "school_id,name,province,commune,level,lat,lon,students\n"
    "QN-1,Trường Mầm non Hạ Long – Điểm Bãi Cháy,Quảng Ninh,Phường Bãi Cháy,preschool,"
    "20.95,107.05,120\n"
    'DN-1,"Trường THPT Lê Quý Đôn, Đà Nẵng",Đà Nẵng,Phường Hải Châu,upper_secondary,'
    "16.06,108.22,1500\n"
)


def test_vietnamese_round_trip_through_import_and_export(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    db = str(tmp_path / "rt.db")
    src = tmp_path / "schools.csv"
    src.write_bytes(b"\xef\xbb\xbf" + REGISTRY.encode("utf-8"))
    assert main(["schools", "import", str(src), "--db", db]) == 0
    store = open_store(db)
    try:
        store.save_batch([reports.received(reports.bandwidth("DN-1", at=datetime.now(UTC)))])
    finally:
        store.close()
    expected = {"QN-1": "Trường Mầm non Hạ Long – Điểm Bãi Cháy",
                "DN-1": "Trường THPT Lê Quý Đôn, Đà Nẵng"}  # fmt: skip
    for fmt in ("csv", "json", "xlsx", "geojson"):
        out = tmp_path / f"short.{fmt}"
        assert main(["export", "shortages", "--db", db, "-o", str(out)]) == 0
        data = out.read_bytes()
        if fmt == "csv":
            rows = csv_rows(data)
        elif fmt == "json":
            rows = json.loads(data)
        elif fmt == "geojson":
            rows = [f["properties"] for f in json.loads(data)["features"]]
        else:
            sheet = list(openpyxl.load_workbook(out).worksheets[0].iter_rows(values_only=True))
            rows = [dict(zip(COLUMNS, r, strict=True)) for r in sheet[1:]]
        assert {r["school_id"]: r["name"] for r in rows} == expected, fmt
        places = {r["school_id"]: (r["province"], r["commune"]) for r in rows}
        assert places["DN-1"] == ("Thành phố Đà Nẵng", "Phường Hải Châu"), fmt
        assert rows[0]["school_id"] == "DN-1"  # 1500 students and no computers: first
    err = capsys.readouterr().err
    assert "wrote 2 schools as xlsx" in err and "exported 2/2 schools" in err


def test_export_command_filters_and_errors(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    db = str(tmp_path / "f.db")
    src = tmp_path / "schools.csv"
    src.write_text(REGISTRY, encoding="utf-8")
    assert main(["schools", "import", str(src), "--db", db]) == 0
    out = tmp_path / "qn.json"
    args = ["export", "shortages", "--db", db, "-o", str(out)]
    assert main([*args, "--province", "quang ninh", "--level", "preschool"]) == 0
    assert [r["school_id"] for r in json.loads(out.read_text())] == ["QN-1"]
    bad = tmp_path / "bad.toml"
    bad.write_text("[computers]\nstudents_per_computer = 0\n")
    assert main([*args, "--policy", str(bad)]) == 2
    assert "'computers.students_per_computer' has value 0" in capsys.readouterr().err
    assert not (tmp_path / "qn.json.partial").exists()


def test_every_column_format_and_command_is_documented() -> None:
    doc = (Path(__file__).parents[2] / "docs" / "exports.md").read_text(encoding="utf-8")
    missing = [c for c in COLUMNS if f"`{c}`" not in doc]
    missing += [f for f in FORMATS if f"**{f}**" not in doc]
    commands = ("edugap schools import", "edugap schools list", "edugap export shortages")
    missing += [c for c in commands if c not in doc]
    assert missing == [], f"docs/exports.md lacks {missing}"


def test_every_free_text_column_is_neutralised() -> None:
    evil = School("-1", "+name", "=province", "@commune", "-level", 21.0, 105.8, 10, 0, None)
    snap = compute([evil], {}, [], [], [], load_policy(), NOW)
    _, data = export(snap, "csv")
    (only,) = csv_rows(data)
    assert [only[c] for c in ("school_id", "name", "province", "commune", "level")] == [
        "'-1",
        "'+name",
        "'=province",
        "'@commune",
        "'-level",
    ]


def test_export_to_stdout(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    db = str(tmp_path / "o.db")
    src = tmp_path / "schools.csv"
    src.write_text(REGISTRY, encoding="utf-8")
    assert main(["schools", "import", str(src), "--db", db]) == 0
    capsys.readouterr()
    code = main(["export", "shortages", "--db", db, "--format", "csv", "--kind", "any", "-o", "-"])
    out = capsys.readouterr().out.lstrip("\ufeff")
    assert code == 0
    assert [r["school_id"] for r in csv.DictReader(io.StringIO(out))] == ["DN-1", "QN-1"]
