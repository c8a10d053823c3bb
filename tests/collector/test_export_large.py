"""Large shortage lists as planners open them: the XLSX written row by row and the CSV written
line by line hold exactly what the per-cell writers (xlsxwriter's, csv.writer) would."""

from __future__ import annotations

import csv
import io
import random
import re
from datetime import UTC, datetime, timedelta
from pathlib import Path

import openpyxl
import pytest
import xlsxwriter

from edugap.collector.export import (
    COLUMN,
    COLUMNS,
    ExportOptions,
    filter_schools,
    row,
    write_shortages,
)
from edugap.collector.export.columns import _r2
from edugap.collector.export.csv_format import _cells
from edugap.collector.export.xlsx_rows import RowBuilder, RowSheet, RowWriter
from edugap.collector.model import BandwidthRow, DeviceRow, School, Snapshot
from edugap.collector.policy.evaluate import compute
from edugap.collector.policy.rules import load_policy

NOW = datetime(2026, 11, 25, 12, 0, tzinfo=UTC)
# text a spreadsheet or a CSV reader could take for something else
AWKWARD = [
    '=HYPERLINK("http://x","click")',
    "+1",
    "-2+3",
    "@SUM(A1)",
    "\tTab first",
    'Trường "Hoa Mai", cơ sở 2',
    "Dòng một\nDòng hai",
    "A & B <C>",
    "_x0041_ is not A",
    " leading and trailing ",
    "bell\x07 inside",
    "Trường Tiểu học Lê Lợi",
]

# written as Excel's _xHHHH_ escapes, which Excel decodes and openpyxl leaves as they are
EXCEL_ESCAPES = {"_x0041_ is not A", "bell\x07 inside"}


def big_snapshot(n: int) -> Snapshot:
    """n schools, every twelfth with an awkward name; most measured, some with devices."""
    rng = random.Random(5)
    schools = [
        School(f"S-{i:05d}", AWKWARD[i % 12] if i % 12 == 0 or i < 12 else f"Trường số {i}",
               "Thành phố Hà Nội", "Phường Ba Đình", ("primary", "upper_secondary")[i % 2],
               21.0 + i / 1e5, 105.8, rng.randint(50, 2000), rng.choice((None, 5, 40)),
               rng.choice((None, 50.0)))
        for i in range(n)
    ]  # fmt: skip
    bandwidth = [
        BandwidthRow(s.school_id, "pc-1", NOW - timedelta(hours=rng.randint(1, 100)),
                     rng.lognormvariate(2.5, 1.2), 5.0, 30.0, None, False)
        for s in schools[: n * 9 // 10]
    ]  # fmt: skip
    devices = [
        DeviceRow(s.school_id, "pc-1", NOW, NOW - timedelta(days=1), 8192, 4, "Windows", "10",
                  i % 3 == 0, "desktop", None)
        for i, s in enumerate(schools[: n // 2])
    ]  # fmt: skip
    last = {r.school_id: r.measured_at for r in bandwidth}
    return compute(schools, last, bandwidth, devices, [], load_policy(), NOW)


@pytest.fixture(scope="module")
def snap() -> Snapshot:
    return big_snapshot(5_000)


def test_national_style_xlsx_opens_with_every_row_and_cell_type(
    snap: Snapshot, tmp_path: Path
) -> None:
    path = tmp_path / "all.xlsx"
    with path.open("wb") as out:
        count = write_shortages(snap, "xlsx", out, options=ExportOptions(lang="en"))
    assert count == 5_000
    book = openpyxl.load_workbook(path, read_only=True)
    assert book.sheetnames == ["Schools", "Budget", "Survey", "Provinces"]
    rows = list(book["Schools"].iter_rows(values_only=True))
    expected = [row(s) for s in filter_schools(snap)]
    assert len(rows) == count + 1 and [r[0] for r in rows[1:]] == [e[0] for e in expected]
    names = {r[0]: r[COLUMN["name"]] for r in rows[1:]}
    for i, text in enumerate(AWKWARD):  # as given: a text cell needs no visible quote
        if text not in EXCEL_ESCAPES:
            assert names[f"S-{i:05d}"] == text
    budget = list(book["Budget"].iter_rows(min_row=2, values_only=True))
    survey = list(book["Survey"].iter_rows(min_row=2, values_only=True))
    needs = [e[COLUMN["need"]] for e in expected]
    assert (len(budget), len(survey)) == (needs.count("measured"), needs.count("assumed"))
    totals = list(book["Provinces"].iter_rows(values_only=True))
    assert totals[-1][:2] == ("All provinces", 5_000)
    # cell types, from the file itself: text never a formula, numbers and flags as such
    types: dict[str, set[str]] = {c: set() for c in COLUMNS}
    for line in book["Schools"].iter_rows(min_row=2):
        for column, cell in zip(COLUMNS, line, strict=False):
            if cell.value is not None:
                types[column].add(cell.data_type)
    assert types["name"] == types["need"] == types["shortfalls"] == {"s"}
    assert types["students"] == types["priority"] == types["download_mbps"] == {"n"}
    assert types["registered"] == {"b"} and types["last_report"] == {"d"}  # a formatted date
    book.close()


def test_xlsx_layout_stays(tmp_path: Path) -> None:
    """Frozen header and first column, the filter over every row, columns as wide as text."""
    path = tmp_path / "small.xlsx"
    with path.open("wb") as out:
        count = write_shortages(big_snapshot(50), "xlsx", out)
    sheet = openpyxl.load_workbook(path).worksheets[0]
    when = sheet.cell(2, COLUMN["last_report"] + 1)
    assert isinstance(when.value, datetime) and when.number_format == "yyyy-mm-dd hh:mm"
    assert sheet.cell(1, 1).font.bold and sheet.cell(1, 1).alignment.wrap_text
    assert sheet.freeze_panes == "B2" and sheet.auto_filter.ref == f"A1:AK{count + 1}"
    assert sheet.column_dimensions["B"].width > sheet.column_dimensions["A"].width


def test_rows_as_xml_read_back_as_xlsxwriter_cells(tmp_path: Path) -> None:
    """The same cells through xlsxwriter's own write_* calls and as row XML read back equal."""
    lines = [
        [text, i, i + 0.25, i % 2 == 0, None, datetime(2026, 3, 2, 7, 30) + timedelta(days=i)]
        for i, text in enumerate([*AWKWARD, "x" * 40_000, "emoji 😀 " * 6_000])
    ]
    theirs, ours = tmp_path / "theirs.xlsx", tmp_path / "ours.xlsx"
    book = xlsxwriter.Workbook(str(theirs), {"constant_memory": True, "strings_to_formulas": False})
    when = book.add_format({"num_format": "yyyy-mm-dd hh:mm"})
    sheet = book.add_worksheet()
    for n, cells in enumerate(lines):
        for col, value in enumerate(cells):
            if isinstance(value, datetime):
                sheet.write_datetime(n, col, value, when)
            elif value is not None:
                sheet.write(n, col, value)
    book.close()
    book = xlsxwriter.Workbook(str(ours), {"constant_memory": True})
    when = book.add_format({"num_format": "yyyy-mm-dd hh:mm"})
    sheet = book.add_worksheet(worksheet_class=RowSheet)
    sheet.write_row(0, 0, ["header"])  # rows then go after what xlsxwriter holds
    builder = RowBuilder(6, when, (False, True, False, False, False, False))
    writer = RowWriter(sheet, [0] * 6)
    for cells in lines:
        writer.add(builder.build(cells))
    book.close()

    def read(path: Path, skip: int) -> list[tuple[object, ...]]:
        return list(openpyxl.load_workbook(path).active.iter_rows(min_row=skip, values_only=True))

    assert read(ours, 2) == read(theirs, 1)


def test_rows_go_in_order(tmp_path: Path) -> None:
    book = xlsxwriter.Workbook(str(tmp_path / "o.xlsx"), {"constant_memory": True})
    sheet = book.add_worksheet(worksheet_class=RowSheet)
    sheet.append(3, '<row r="4"/>')
    with pytest.raises(ValueError, match="in order"):
        sheet.append(2, '<row r="3"/>')
    book.close()


def test_standard_csv_is_what_csv_writer_writes(snap: Snapshot) -> None:
    out = io.BytesIO()
    count = write_shortages(snap, "csv", out)
    rows = [row(s) for s in filter_schools(snap)]
    text = io.StringIO()
    writer = csv.writer(text, lineterminator="\r\n")
    writer.writerow(COLUMNS)
    writer.writerows(_cells(rows))
    assert count == 5_000 and out.getvalue() == ("\ufeff" + text.getvalue()).encode()
    parsed = list(csv.DictReader(io.StringIO(out.getvalue().decode("utf-8-sig"), newline="")))
    names = {r["school_id"]: r["name"] for r in parsed}
    assert names["S-00000"] == '\'=HYPERLINK("http://x","click")'
    assert names["S-00005"] == 'Trường "Hoa Mai", cơ sở 2' and names["S-00006"] == (
        "Dòng một\nDòng hai"
    )


def test_both_csv_dialects_hold_the_same_cells(snap: Snapshot) -> None:
    def cells(dialect: str) -> list[list[str]]:
        out = io.BytesIO()
        write_shortages(snap, "csv", out, options=ExportOptions(dialect=dialect))
        delimiter = ";" if dialect == "excel-vn" else ","
        text = io.StringIO(out.getvalue().decode("utf-8-sig"), newline="")
        return list(csv.reader(text, delimiter=delimiter))

    decimal_comma = re.compile(r"-?[0-9]+,[0-9]+(e-?[0-9]+)?")
    standard, vietnamese = cells("standard"), cells("excel-vn")
    assert len(standard) == len(vietnamese) == 5_001
    assert any("," in c for line in vietnamese for c in line)  # decimals as Excel-vn wants
    points = [[c.replace(",", ".") if decimal_comma.fullmatch(c) else c for c in line]
              for line in vietnamese]  # fmt: skip
    assert points == standard


def test_fast_rounding_is_round() -> None:
    """Rates, percentages and gaps are rounded to 0.01 exactly as round(value, 2) would."""
    rng = random.Random(3)
    values: list[float | int] = [rng.lognormvariate(2.5, 2.0) for _ in range(300_000)]
    values += [k / 1000 for k in range(-300_000, 300_000)]  # every halfway written in decimal
    values += [k / 8 for k in range(-8_000, 8_000)]  # halfway exactly: to the even neighbour
    values += [rng.uniform(-1e12, 1e12) for _ in range(20_000)]
    values += [2.675, 1.005, -0.001, 0.0, -0.0, 1e300, 5e-324, 7, -3]
    values += [float("inf"), float("-inf")]
    assert [repr(_r2(v)) for v in values] == [repr(round(v, 2)) for v in values]
    assert repr(_r2(float("nan"))) == "nan" and _r2(None) is None
