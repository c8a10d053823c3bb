"""The collector decides which computers run an OS out of support, from the OS name and version
the agents report and a table the operator can update; the agents' own flags do not count."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

import msgspec
import pytest

from edugap.collector.model import School
from edugap.collector.policy.evaluate import evaluate
from edugap.collector.policy.rules import PolicyError, load_policy
from edugap.collector.store import open_store
from edugap.protocol import lifecycle
from edugap.protocol.messages import Inventory, OsInfo
from tests.collector import reports

NOW = datetime(2026, 11, 25, 12, 0, tzinfo=UTC)
HN, BD = "Thành phố Hà Nội", "Phường Ba Đình"


def _inventory(device: str, version: str, flag: bool, days_ago: float = 1) -> Inventory:
    inv = reports.inventory("S1", device, NOW - timedelta(days=days_ago))
    return msgspec.structs.replace(inv, os=OsInfo(name="Windows", version=version,
                                                  out_of_support=flag))  # fmt: skip


FLEET = [
    _inventory("new", "11 25H2 Pro", flag=True),  # supported until 2027-10-12; agent thinks not
    _inventory("win10", "10 22H2 Pro", flag=False),  # ended 2025-10-14; agent's old table
    _inventory("win7", "7", flag=True),  # ended 2020
    _inventory("odd", "Haiku R1", flag=True),  # not in the table: unknown, never counted
    _inventory("gone", "7", flag=True, days_ago=30),  # not live: not counted at all
]


def _evaluate(url: str, policy_file: Path | None = None) -> tuple[int, int]:
    store = open_store(url)
    try:
        store.upsert_schools(
            [School("S1", "Trường S1", HN, BD, "primary", 21.0, 105.8, 100, computers_required=4)]
        )
        store.save_batch([reports.received(r) for r in FLEET])
        counts = store.device_os(NOW - timedelta(days=21))
        assert counts == {
            "S1": {
                ("Windows", "11 25H2 Pro"): 1,
                ("Windows", "10 22H2 Pro"): 1,
                ("Windows", "7"): 1,
                ("Windows", "Haiku R1"): 1,
            }
        }
        s = evaluate(store, load_policy(policy_file), NOW).schools["S1"]
    finally:
        store.close()
    assert s.computers_evidence == "measured"  # four live inventories
    return s.os_out_of_support, s.shortfalls.count("os_upgrade")


def test_the_collectors_table_decides_not_the_agents_flag(db_url: str) -> None:
    assert _evaluate(db_url) == (2, 1)  # Windows 10 22H2 and 7; not 11 25H2, not the unknown


def test_an_operators_newer_table_applies_without_upgrading_agents(
    db_url: str, tmp_path: Path
) -> None:
    text = (Path(lifecycle.__file__).with_name("data") / "os_lifecycle.csv").read_text()
    # a vendor moved 11 25H2 Pro's end forward; the operator edits the copy beside the policy
    text = text.replace(
        "windows,11 25h2,consumer,2027-10-12", "windows,11 25h2,consumer,2026-01-31"
    )
    (tmp_path / "lifecycle.csv").write_text(text, encoding="utf-8")
    policy = tmp_path / "policy.toml"
    policy.write_text('[computers]\nos_lifecycle_file = "lifecycle.csv"\n', encoding="utf-8")
    assert load_policy(policy).os_lifecycle_file == str(tmp_path / "lifecycle.csv")
    assert _evaluate(db_url, policy) == (3, 1)


@pytest.mark.parametrize(
    ("table", "named"),
    [
        (None, "cannot read it"),
        ("os,version\nwindows,7\n", "header must be os,version,edition,end_of_support,note"),
        ("os,version,edition,end_of_support,note\nwindows,7,,soon,\n", "end_of_support 'soon'"),
    ],
)
def test_a_bad_table_names_the_key_and_the_file(
    tmp_path: Path, table: str | None, named: str
) -> None:
    if table is not None:
        (tmp_path / "t.csv").write_text(table, encoding="utf-8")
    policy = tmp_path / "policy.toml"
    policy.write_text('[computers]\nos_lifecycle_file = "t.csv"\n', encoding="utf-8")
    with pytest.raises(PolicyError) as e:
        load_policy(policy)
    assert "'computers.os_lifecycle_file'" in str(e.value) and named in str(e.value)
