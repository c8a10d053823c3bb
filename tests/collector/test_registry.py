"""School registry import: bad rows named by line and reason, good rows upserted, lists."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from edugap.collector.cli import main
from edugap.collector.registry.schools import RegistryError, parse, read, to_csv
from edugap.collector.store import open_store
from tests.collector import reports

HEADER = (
    "school_id,name,province,commune,level,lat,lon,students,computers_required,contracted_mbps\n"
)
GOOD = [
    "HN-001,Trường Tiểu học Ba Đình,Hà Nội,Ba Đình,primary,21.034,105.814,600,25,100\n",
    'HCM-01,"Trường THCS Nguyễn Du, cơ sở 2",tp hcm,Phường Sài Gòn,lower_secondary,'
    "10.776,106.7,900,,\n",
]
BAD = [  # (row, line it is on, words the reason must contain)
    ("bad/id,X,Hà Nội,Ba Đình,primary,21,105.8,10,,\n", 4, "school_id 'bad/id'"),
    ("HN-002,,Hà Nội,Ba Đình,primary,21,105.8,10,,\n", 5, "missing name"),
    ("HN-003,X,Hà Nội,Ba Đình,primary,north,105.8,10,,\n", 6, "lat 'north' is not a number"),
    ("HN-004,X,Hà Nội,Ba Đình,primary,48.85,2.35,10,,\n", 7, "outside Vietnam"),
    ("HN-005,X,Hà Nội,Ba Đình,primary,105.8,21,10,,\n", 8, "look swapped"),
    ("HN-006,X,Hà Nội,Ba Đình,primary,21,105.8,-5,,\n", 9, "students '-5' is negative"),
    ("HN-001,Again,Hà Nội,Ba Đình,primary,21,105.8,10,,\n", 10, "duplicate school_id 'HN-001'"),
    ("HN-007,X,Hà Nội,Ba Đình,primary,21,105.8,10,many,\n", 11, "computers_required 'many'"),
    ("HN-008,X,Hà Nội,Ba Đình,primary,21,105.8,10,,0\n", 12, "contracted_mbps '0'"),
    ("HN-009,X,Hà Nội\n", 13, "missing commune"),
    ("HN-010,X,Hà Nội,Ba Đình,primary,21,105.8,10,1,2,3\n", 14, "11 fields"),
    ('HN-012,X,Hà Nội,Ba Đình,primary,"21,03",105.8,10,,\n', 15, "dot as the decimal mark"),
]
# a quoted name spanning two lines: the next row's line number must still be right
MULTILINE = 'HN-011,"Trường\nhai dòng",Hà Nội,Ba Đình,primary,21,105.8,10,,\n'
UNKNOWN_PLACE = "XX-001,Trường Mới,Atlantis,Nowhere,primary,21,105.8,10,,\n"


def registry_text() -> str:
    return HEADER + "".join(GOOD) + "".join(r for r, _, _ in BAD) + MULTILINE + UNKNOWN_PLACE


ATLANTIS = (
    "line 18: province 'Atlantis' is not one of the 34 provinces of 2025 (no province name is "
    "close); correct it, or import it as written with --allow-unknown-province"
)


def test_bad_rows_are_named_by_line_and_reason() -> None:
    result = parse(registry_text())
    assert [s.school_id for s in result.schools] == ["HN-001", "HCM-01", "HN-011"]
    errors = {e.line: e.message for e in result.errors}
    for _, line, words in BAD:
        assert words in errors[line], (line, errors)
    assert str(result.errors[-1]) == ATLANTIS
    assert len(result.errors) == len(BAD) + 1 and result.warnings == []
    assert result.found == "UTF-8, ','-separated"


def test_place_names_are_stored_under_their_official_spelling() -> None:
    hn, hcm, multi, unknown = parse(registry_text(), allow_unknown_province=True).schools
    assert (hn.province, hn.commune) == ("Thành phố Hà Nội", "Phường Ba Đình")
    assert (hcm.province, hcm.commune) == ("Thành phố Hồ Chí Minh", "Phường Sài Gòn")
    assert (hn.computers_required, hn.contracted_mbps, hcm.computers_required) == (25, 100.0, None)
    assert hcm.name == "Trường THCS Nguyễn Du, cơ sở 2" and multi.name == "Trường\nhai dòng"
    assert (unknown.province, unknown.commune) == ("Atlantis", "Nowhere")  # allowed: kept


def test_unknown_commune_is_a_warning() -> None:
    result = parse(HEADER + "HN-1,X,Hà Nội,Phường Không Có,primary,21,105.8,10,,\n")
    assert len(result.schools) == 1 and result.schools[0].province == "Thành phố Hà Nội"
    assert "commune 'Phường Không Có'" in str(result.warnings[0])


def test_missing_required_column_is_named() -> None:
    with pytest.raises(RegistryError, match="missing required column 'students'"):
        parse("school_id,name,province,commune,level,lat,lon\nA,B,C,D,E,21,105\n")


def test_encoding() -> None:
    text = HEADER + GOOD[0]
    assert read(b"\xef\xbb\xbf" + text.encode()).found == "UTF-8 with BOM, ','-separated"
    with pytest.raises(RegistryError, match=r"line 2: not UTF-8 .* Excel's plain 'CSV' uses"):
        read(HEADER.encode() + GOOD[0].encode("cp1258", errors="replace"))


def test_to_csv_reads_back() -> None:
    schools = parse(registry_text()).schools
    assert parse(to_csv(schools)).schools == schools


def run(args: list[str], capsys: pytest.CaptureFixture[str]) -> tuple[int, str, str]:
    code = main(args)
    out, err = capsys.readouterr()
    return code, out, err


def test_import_command_upserts_good_rows(
    db_url: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / "schools.csv"
    path.write_bytes(b"\xef\xbb\xbf" + registry_text().encode())
    code, _, err = run(["schools", "import", str(path), "--db", db_url], capsys)
    assert code == 1  # some rows failed
    assert f"{path}: read as UTF-8 with BOM, ','-separated" in err
    assert f"error: {path} line 6: lat 'north' is not a number" in err
    assert f"error: {path} {ATLANTIS}" in err
    assert "imported 3 schools; 13 rows failed; 0 warnings" in err

    path.write_text(HEADER + GOOD[0].replace("600", "650"), encoding="utf-8")
    assert run(["schools", "import", str(path), "--db", db_url], capsys)[0] == 0
    store = open_store(db_url)
    try:
        schools = {s.school_id: s for s in store.schools()}
    finally:
        store.close()
    assert len(schools) == 3 and schools["HN-001"].students == 650
    assert schools["HCM-01"].name == "Trường THCS Nguyễn Du, cơ sở 2"


def test_import_errors_for_the_whole_file(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    db = str(tmp_path / "e.db")
    code, _, err = run(["schools", "import", str(tmp_path / "none.csv"), "--db", db], capsys)
    assert code == 2 and "cannot read" in err
    path = tmp_path / "short.csv"
    path.write_text("school_id,name\nA,B\n", encoding="utf-8")
    code, _, err = run(["schools", "import", str(path), "--db", db], capsys)
    assert code == 2 and "missing required column 'province'" in err
    path.write_text(HEADER + GOOD[0], encoding="utf-8")
    code, _, err = run(["schools", "import", str(path), "--db", db, "--dry-run"], capsys)
    assert code == 0 and "checked 1 schools" in err
    assert not Path(db).exists()  # a dry run writes nothing
    code, _, err = run(["schools", "list", "--db", db], capsys)
    assert code == 2 and f"no store at {db}" in err and not Path(db).exists()


def test_list_command_filters_and_unregistered(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    db = str(tmp_path / "l.db")
    path = tmp_path / "schools.csv"
    path.write_text(HEADER + "".join(GOOD), encoding="utf-8")
    assert run(["schools", "import", str(path), "--db", db], capsys)[0] == 0
    store = open_store(db)
    try:
        store.save_batch([reports.received(reports.bandwidth("GHOST-1")),
                          reports.received(reports.bandwidth("HN-001"))])  # fmt: skip
    finally:
        store.close()

    code, out, _ = run(["schools", "list", "--db", db, "--province", "ho chi minh",
                        "--format", "json"], capsys)  # fmt: skip
    assert code == 0
    assert [s["school_id"] for s in json.loads(out)] == ["HCM-01"]
    _, out, _ = run(["schools", "list", "--db", db, "--commune", "BA DINH", "--format", "csv"],
                    capsys)  # fmt: skip
    assert out.splitlines()[1].startswith("HN-001,Trường Tiểu học Ba Đình,Thành phố Hà Nội")
    _, out, _ = run(["schools", "list", "--db", db, "--level", "primary"], capsys)
    assert "HN-001" in out and "HCM-01" not in out and "(1 schools)" in out
    _, out, _ = run(["schools", "list", "--db", db, "--unregistered", "--format", "csv"], capsys)
    assert out.splitlines() == ["school_id,last_report", "GHOST-1,2026-11-20T08:00:00+00:00"]


@pytest.mark.parametrize("variable", ["EDUGAP_DB_URL", "EDUGAP_DB"])
def test_store_from_the_environment(
    variable: str,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    db = tmp_path / "env.db"
    monkeypatch.delenv("EDUGAP_DB_URL", raising=False)
    monkeypatch.delenv("EDUGAP_DB", raising=False)
    monkeypatch.setenv(variable, str(db))
    path = tmp_path / "schools.csv"
    path.write_text(HEADER + GOOD[0], encoding="utf-8")
    assert run(["schools", "import", str(path)], capsys)[0] == 0
    _, out, _ = run(["schools", "list", "--format", "csv"], capsys)
    assert db.exists() and out.splitlines()[1].startswith("HN-001,")
