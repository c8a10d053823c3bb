"""Registry files as Vietnamese offices write them: Excel's CSV on Vietnamese settings, Unicode
Text, XLSX; a duplicate column, an unclosed quote; provinces of before 2025, and none at all."""

from __future__ import annotations

from pathlib import Path

import openpyxl
import pytest

from edugap.collector.cli import main
from edugap.collector.registry.schools import RegistryError, read
from edugap.collector.store import open_store

COLUMNS = ["school_id", "name", "province", "commune", "level", "lat", "lon", "students",
           "contracted_mbps"]  # fmt: skip
ROWS = [
    ["CB-1", "Trường Tiểu học Bảo Lâm, điểm chính", "Cao Bằng", "Xã Bảo Lâm", "primary",
     "22,8721", "105,4593", "1.234", "12,5"],
    ["CB-2", "Trường Mầm non Hoa Sen", "Cao Bằng", "Xã Bảo Lâm", "preschool", "22,87", "105,46",
     "85", ""],
]  # fmt: skip


def lines(delimiter: str, rows: list[list[str]] = ROWS, header: list[str] = COLUMNS) -> str:
    return "\r\n".join(delimiter.join(r) for r in [header, *rows]) + "\r\n"


def test_excel_csv_on_vietnamese_settings_semicolons_and_decimal_commas() -> None:
    data = b"\xef\xbb\xbf" + lines(";").encode("utf-8")  # Excel's "CSV UTF-8" on vi-VN
    result = read(data, "truong.csv")
    assert result.found == "UTF-8 with BOM, ';'-separated" and result.errors == []
    first, second = result.schools
    assert (first.lat, first.lon, first.students, first.contracted_mbps) == (
        22.8721,
        105.4593,
        1234,  # "1.234": '.' groups thousands where ',' is the decimal mark
        12.5,
    )
    assert first.name == "Trường Tiểu học Bảo Lâm, điểm chính" and second.students == 85
    assert first.province == "Cao Bằng" and first.commune == "Xã Bảo Lâm"


def test_excel_unicode_text_utf16_with_tabs() -> None:
    data = lines("\t").encode("utf-16")  # a byte-order mark, then UTF-16 LE, as Excel saves
    result = read(data, "truong.txt")
    assert result.found == "UTF-16 with BOM, tab-separated" and result.errors == []
    assert [s.school_id for s in result.schools] == ["CB-1", "CB-2"]
    assert result.schools[0].lat == 22.8721


def test_a_header_as_people_type_it() -> None:
    header = [" School_ID ", "Name", "PROVINCE", "Commune", "level", "LAT", "Lon", "Students",
              "contracted mbps"]  # fmt: skip
    rows = [[c.replace(",", ".").replace("1.234", "1234") for c in r] for r in ROWS]
    result = read(lines(",", [[f'"{c}"' for c in r] for r in rows], header).encode(), "x.csv")
    assert result.found == "UTF-8, ','-separated" and len(result.schools) == 2
    assert result.schools[0].contracted_mbps == 12.5


def test_a_column_named_twice_is_refused() -> None:
    header = [*COLUMNS, "Name"]
    with pytest.raises(RegistryError) as e:
        read(lines(";", [[*r, "other"] for r in ROWS], header).encode(), "dup.csv")
    assert str(e.value) == (
        "the header names column 'name' twice (columns 2 and 10): rename or delete one, so no "
        "value is silently taken from the other"
    )


def test_an_unclosed_quote_is_reported_at_its_line() -> None:
    rows = [*ROWS, ["CB-3", '"Trường Tiểu học', "Cao Bằng", "Xã Bảo Lâm", "primary", "22,8",
                    "105,4", "10", ""], ROWS[0]]  # fmt: skip
    with pytest.raises(RegistryError) as e:
        read(lines(";", rows).encode(), "quote.csv")
    assert str(e.value).startswith(
        "line 4: a quote opens a field here and is never closed, so lines 4-5 would be one field"
    )


def test_a_province_of_before_2025_goes_to_its_successor_with_a_note() -> None:
    rows = [["HG-1", "Trường PTDTBT Lũng Cú", "Hà Giang", "Xã Lũng Cú", "primary", "23,36",
             "105,32", "300", ""]]  # fmt: skip
    result = read(lines(";", rows).encode(), "hg.csv")
    (school,) = result.schools
    assert school.province == "Tuyên Quang" and result.errors == []
    assert [str(n) for n in result.notes] == [
        "line 2: province 'Hà Giang': Hà Giang is part of Tuyên Quang since 2025-07-01 "
        "(Resolution 202/2025/QH15); imported under Tuyên Quang"
    ]


def test_a_province_that_matches_nothing_is_refused_unless_allowed() -> None:
    rows = [["AT-1", "Trường Atlantis", "Atlantis", "Xã Biển", "primary", "21", "105", "10", ""],
            ["DN-1", "Trường Đồng Nai", "Dong Nay", "Xã A", "primary", "11", "107", "10",
             ""]]  # fmt: skip
    refused = read(lines(";", rows).encode(), "a.csv")
    assert refused.schools == []
    assert [str(e) for e in refused.errors] == [
        "line 2: province 'Atlantis' is not one of the 34 provinces of 2025 (no province name "
        "is close); correct it, or import it as written with --allow-unknown-province",
        "line 3: province 'Dong Nay' is not one of the 34 provinces of 2025 (closest: Đồng "
        "Nai, Đồng Tháp, Long An (now Tây Ninh)); correct it, or import it as written with "
        "--allow-unknown-province",
    ]
    allowed = read(lines(";", rows).encode(), "a.csv", allow_unknown_province=True)
    assert [s.province for s in allowed.schools] == ["Atlantis", "Dong Nay"]
    assert "kept as written (--allow-unknown-province)" in str(allowed.warnings[0])


def _xlsx(path: Path) -> Path:
    book = openpyxl.Workbook()
    notes = book.active
    notes.title = "Ghi chú"
    notes.append(["Danh sách trường năm học 2026-2027"])  # a sheet without the columns
    sheet = book.create_sheet("Danh sách")
    sheet.append([])  # planners leave a blank row above the header
    sheet.append(COLUMNS)
    sheet.append(["CB-1", "Trường Tiểu học Bảo Lâm", "Cao Bằng", "Xã Bảo Lâm", "primary",
                  22.8721, 105.4593, 1234, 12.5])  # fmt: skip
    sheet.append(["CB-2", "Trường Mầm non", "Cao Bằng", "Xã Bảo Lâm", "preschool", "22,87",
                  "105,46", 85.0, None])  # a decimal comma typed into a text cell  # fmt: skip
    sheet.append(["CB-3", "Trường X", "Cao Bằng", "Xã Bảo Lâm", "primary", "north", 105.4, 9])
    book.save(path)
    return path


def test_xlsx_import_reads_the_sheet_with_the_columns(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = _xlsx(tmp_path / "truong.xlsx")
    db = str(tmp_path / "x.db")
    assert main(["schools", "import", str(path), "--db", db]) == 1  # one row failed
    err = capsys.readouterr().err
    assert f"{path}: read as XLSX, sheet 'Danh sách'" in err
    assert f"error: {path} row 5: lat 'north' is not a number" in err
    assert "imported 2 schools; 1 rows failed" in err
    store = open_store(db)
    try:
        schools = {s.school_id: s for s in store.schools()}
    finally:
        store.close()
    assert (schools["CB-1"].lat, schools["CB-1"].students, schools["CB-2"].lat) == (
        22.8721,
        1234,
        22.87,
    )


def test_the_cli_names_the_file_once_and_says_how_to_save_it(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / "ansi.csv"
    path.write_bytes(lines(",").encode("cp1258", errors="replace"))
    assert main(["schools", "import", str(path), "--db", str(tmp_path / "a.db")]) == 2
    err = capsys.readouterr().err
    assert err.count(str(path)) == 1
    assert "not UTF-8" in err and "save it as 'CSV UTF-8' or 'Unicode Text'" in err
    old = tmp_path / "old.xls"
    old.write_bytes(b"\xd0\xcf\x11\xe0" + b"\x00" * 100)
    assert main(["schools", "import", str(old), "--db", str(tmp_path / "a.db")]) == 2
    assert "save it as XLSX or as CSV UTF-8" in capsys.readouterr().err
