"""The shortfall policy: defaults and their sources, validation, and the per-school conclusions
checked against figures worked out by hand."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import nullcontext
from datetime import UTC, datetime, timedelta
from pathlib import Path

import msgspec
import pytest

from edugap.collector.cli import main
from edugap.collector.model import BandwidthRow, DeviceRow, HeartbeatHour, School, Snapshot, Store
from edugap.collector.policy.evaluate import compute, evaluate, statistic
from edugap.collector.policy.rules import PolicyError, load, load_policy
from edugap.collector.store import open_store
from edugap.protocol.messages import AnyReport, OsInfo
from tests import realparts
from tests.collector import reports

NOW = datetime(2026, 11, 25, 12, 0, tzinfo=UTC)  # a Wednesday, 19:00 in Hà Nội
HN, BD = "Thành phố Hà Nội", "Phường Ba Đình"


def write(path: Path, text: str) -> Path:
    path.write_text(text, encoding="utf-8")
    return path


# --- the policy file -------------------------------------------------------------------------


def test_defaults_are_the_documented_ones() -> None:
    p = load_policy()
    assert (p.min_mbps, p.per_student_mbps) == (20.0, 0.05)
    assert p.required_mbps(100) == 20.0 and p.required_mbps(1000) == 50.0
    assert (p.bad_below_mbps, p.unknown_after_days, p.statistic, p.window_days) == (
        1.0,
        7,
        "median",
        7,
    )
    assert (p.target_pct, p.school_hours, p.timezone) == (99.0, "07:00-17:00", "Asia/Ho_Chi_Minh")
    assert p.school_days == ("Mon", "Tue", "Wed", "Thu", "Fri", "Sat")
    assert (p.compliance_share, p.live_days, p.drop_off_days) == (0.8, 21, 28)
    assert (p.min_ram_gb, p.min_cores) == (4.0, 2)


def test_a_file_overrides_only_its_keys(tmp_path: Path) -> None:
    path = write(tmp_path / "p.toml", "[required]\nmin_mbps = 30\n[statistic]\nstatistic = 'p25'\n")
    loaded = load(path)
    assert loaded.policy.min_mbps == 30.0 and loaded.policy.statistic == "p25"
    assert loaded.policy.per_student_mbps == 0.05
    assert loaded.origins["min_mbps"] == f"from {path}"
    assert "ITU" in loaded.origins["per_student_mbps"]


@pytest.mark.parametrize(
    ("text", "named"),
    [
        ("[required]\nmin_mbp = 3\n", "'required.min_mbp'"),
        ("[bandwith]\nmin_mbps = 3\n", "[bandwith]"),
        ("[required]\nmin_mbps = 'fast'\n", "'required.min_mbps' has value 'fast'"),
        ("[required]\nmin_mbps = -1\n", "'required.min_mbps' has value -1"),
        ("[statistic]\nstatistic = 'p100'\n", "'statistic.statistic' has value 'p100'"),
        ("[availability]\nschool_hours = '17:00-07:00'\n", "'availability.school_hours'"),
        ("[availability]\nschool_days = ['Mon', 'Funday']\n", "'availability.school_days'"),
        ("[availability]\ntimezone = 'Mars/Olympus'\n", "'Mars/Olympus'"),
        ("[isp]\ncompliance_share = 1.5\n", "'isp.compliance_share' has value 1.5"),
        ("[monitoring]\ndrop_off_days = 10\n", "'monitoring.drop_off_days' has value 10"),
        ("[required\nmin_mbps = 3\n", "not valid TOML"),
    ],
)
def test_bad_policy_names_key_and_value(tmp_path: Path, text: str, named: str) -> None:
    path = write(tmp_path / "bad.toml", text)
    with pytest.raises(PolicyError) as e:
        load(path)
    assert named in str(e.value) and str(path) in str(e.value)


def test_policy_show_prints_values_with_sources(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = write(tmp_path / "p.toml", "[monitoring]\nlive_days = 14\n")
    assert main(["policy", "show", "--policy", str(path)]) == 0
    out = capsys.readouterr().out
    assert f"# from {path}\nlive_days = 14\n" in out
    assert "# default: ITU / UN Tech Envoy 2030 target: 20 Mbps per school\nmin_mbps = 20.0" in out
    assert "PLACEHOLDER" in out  # students_per_computer is not an official figure
    bad = write(tmp_path / "bad.toml", "[isp]\nshare = 1\n")
    assert main(["policy", "show", "--policy", str(bad)]) == 2
    assert "'isp.share'" in capsys.readouterr().err


def test_statistics() -> None:
    assert statistic([10.0, 12.0, 100.0], "median") == 12.0
    assert statistic([1.0, 2.0, 3.0, 4.0], "median") == 2.5
    assert statistic([10.0, 20.0, 30.0], "mean") == 20.0
    assert statistic([0.0, 10.0, 20.0, 30.0, 40.0], "p25") == 10.0


# --- the hand-worked registry ---------------------------------------------------------------


def school(sid: str, students: int, **kw: object) -> School:
    return School(sid, f"Trường {sid}", kw.pop("province", HN), BD, "primary", 21.0, 105.8,
                  students, **kw)  # type: ignore[arg-type]  # fmt: skip


def speed(
    sid: str, hours_ago: float, down: float | None, *, error: str | None = None
) -> BandwidthRow:
    return BandwidthRow(sid, "a", NOW - timedelta(hours=hours_ago), down, 5.0, 30.0, error, False)


def device(sid: str, dev: str, days_ago: float, mb: int = 8192, cores: int = 4,
           os: str = "11 25H2 Pro", flag: bool = False) -> DeviceRow:  # fmt: skip
    """A device's latest inventory; `flag` is the agent's own out-of-support hint, which the
    collector does not use: it decides from the OS version and its own table."""
    at = NOW - timedelta(days=days_ago)
    return DeviceRow(sid, dev, at, at, mb, cores, "Windows", os, flag, "desktop", None)


def hour(sid: str, at: datetime, checks: int, ok: int) -> HeartbeatHour:
    return HeartbeatHour(sid, at, 1, checks, ok)


MON = datetime(2026, 11, 23, tzinfo=UTC)  # Monday 00:00 UTC = 07:00 in Hà Nội

SCHOOLS = [
    school("GOOD", 400, computers_required=2, contracted_mbps=45.0),
    school("MODERATE", 1000, contracted_mbps=20.0),
    school("BAD", 100, computers_required=1),
    school("AT_RISK", 50, computers_required=3),
    school("DROP_OFF", 50, computers_required=0, province="Đà Nẵng"),
    school("NEVER", 10, computers_required=0),
    school("STALE", 50, computers_required=0),
]
LAST = {
    "GOOD": NOW - timedelta(hours=1),
    "MODERATE": NOW - timedelta(hours=2),
    "BAD": NOW - timedelta(days=1),
    "AT_RISK": NOW - timedelta(days=25),
    "DROP_OFF": NOW - timedelta(days=40),
    "STALE": NOW - timedelta(hours=3),
    "UNREG": NOW - timedelta(hours=1),
}
BANDWIDTH = [
    *(speed("GOOD", h, d) for h, d in ((1, 30.0), (30, 40.0), (60, 50.0))),
    *(speed("MODERATE", h, d) for h, d in ((2, 10.0), (26, 12.0), (50, 100.0))),
    speed("MODERATE", 3, None, error="timeout"),  # failed tests do not count
    speed("MODERATE", 24 * 8, 500.0),  # outside the 7-day window
    speed("BAD", 24, 0.5),
    speed("BAD", 48, 0.8),
    speed("STALE", 24 * 8, 90.0),  # only outside the window: unknown
    speed("UNREG", 1, 25.0),
]
DEVICES = [
    device("GOOD", "a", 0.1),
    device("GOOD", "b", 1, flag=True),  # an agent's stale hint: 11 25H2 is supported
    device("MODERATE", "a", 0.1, mb=3800, cores=2),  # "4 GB" as the OS reports it: usable
    device("MODERATE", "b", 0.1, mb=2048),  # too little RAM
    # usable, but Windows 10 ended on 2025-10-14 (the agent's older table did not know)
    device("MODERATE", "c", 0.1, os="10 22H2 Pro"),
    device("MODERATE", "d", 0.1, cores=1),  # one core
    device("BAD", "a", 1),
    device("AT_RISK", "a", 25),  # not live: neither reporting nor usable
    device("STALE", "a", 1),
    device("UNREG", "a", 1),
]
HOURS = [
    *(hour("GOOD", MON + timedelta(hours=h), 60, 60) for h in range(10)),
    hour("MODERATE", MON + timedelta(hours=2), 100, 90),  # Mon 09:00 local: counted
    hour("MODERATE", MON + timedelta(hours=9), 100, 90),  # Mon 16:00 local: counted
    hour("MODERATE", MON + timedelta(hours=10), 100, 0),  # Mon 17:00 local: after school
    hour("MODERATE", MON - timedelta(hours=1), 100, 0),  # Mon 06:00 local: before school
    hour("MODERATE", MON - timedelta(hours=22), 100, 0),  # Sun 09:00 local: no school
]


Evaluated = Callable[..., Snapshot]  # (policy: Policy | None = None) -> Snapshot


def fill(store: Store) -> None:
    """The hand-worked facts above, sent to a store as the reports that make them."""
    store.upsert_schools(SCHOOLS)
    batch: list[AnyReport] = [
        reports.bandwidth(b.school_id, b.device_id, b.measured_at, b.download_mbps, error=b.error)
        for b in BANDWIDTH
    ]
    for d in DEVICES:
        inv = reports.inventory(d.school_id, d.device_id, d.last_seen,
                                memory_mb=d.memory_mb or 0, cores=d.cpu_cores or 0)  # fmt: skip
        os_info = OsInfo(
            name="Windows", version=d.os_version or "", out_of_support=d.out_of_support
        )
        batch.append(msgspec.structs.replace(inv, os=os_info))
    batch += [reports.heartbeat(h.school_id, "a", h.hour, checks=h.checks, ok=h.checks_ok)
              for h in HOURS]  # fmt: skip
    # a status report at each school's last report time, so the store's last reports are LAST
    batch += [reports.status(sid, "a", at) for sid, at in LAST.items()]
    store.save_batch([reports.received(r) for r in batch])


@pytest.fixture(params=["rows", "sqlite", "postgres"])
def snapshot(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Evaluated]:
    """The hand-worked snapshot: compute() over the rows, or evaluate() over each real store."""
    if request.param == "rows":
        yield lambda policy=None: compute(
            SCHOOLS, LAST, BANDWIDTH, DEVICES, HOURS, policy or load_policy(), NOW
        )
        return
    with (
        realparts.postgres_database()
        if request.param == "postgres"
        else nullcontext(str(tmp_path / "edugap.db"))
    ) as url:
        store = open_store(url)
        try:
            fill(store)
            yield lambda policy=None: evaluate(store, policy or load_policy(), NOW)
        finally:
            store.close()


def test_good_school_has_no_shortfall(snapshot: Evaluated) -> None:
    s = snapshot().schools["GOOD"]
    assert (s.required_mbps, s.download_mbps, s.tests_7d, s.connectivity) == (20.0, 40.0, 3, "good")
    assert s.isp_compliant is True  # 40 >= 0.8 x 45 = 36
    assert (s.uptime_pct, s.monitoring, s.devices_reporting, s.computers_usable) == (
        100.0,
        "live",
        2,
        2,
    )
    assert (s.bandwidth_gap_mbps, s.computers_gap, s.shortfalls, s.priority) == (0.0, 0, (), 0.0)


def test_moderate_school_is_short_of_everything_measured(snapshot: Evaluated) -> None:
    s = snapshot().schools["MODERATE"]
    # 1000 students x 0.05 = 50 Mbps required; median of 10, 12, 100 = 12
    assert (s.required_mbps, s.download_mbps, s.tests_7d, s.connectivity) == (
        50.0,
        12.0,
        3,
        "moderate",
    )
    assert s.bandwidth_gap_mbps == 38.0
    assert s.isp_compliant is False  # 12 < 0.8 x 20 = 16
    assert s.uptime_pct == 90.0  # only Mon 09:00 and 16:00 local are school hours
    # 4 live devices; usable: "a" (3800 MB is 4 GB less firmware) and "c"; 1000/20 = 50 needed
    assert (s.devices_reporting, s.computers_usable, s.computers_required) == (4, 2, 50)
    assert (s.computers_gap, s.os_out_of_support) == (48, 1)
    assert s.shortfalls == ("bandwidth", "computers", "availability", "isp_contract", "os_upgrade")


def test_bad_school_and_its_priority(snapshot: Evaluated) -> None:
    s = snapshot().schools["BAD"]
    assert (s.download_mbps, s.connectivity, s.bandwidth_gap_mbps) == (0.65, "bad", 19.35)
    assert (s.computers_gap, s.uptime_pct, s.shortfalls) == (0, None, ("bandwidth",))
    # need = 0.4 x 19.35/20 = 0.387; x sqrt(100 students) x 100
    assert s.priority == 387.0


def test_monitoring_states_and_unknown_connectivity(snapshot: Evaluated) -> None:
    snap = snapshot()
    at_risk, drop, never, stale = (
        snap.schools[k] for k in ("AT_RISK", "DROP_OFF", "NEVER", "STALE")
    )
    assert (at_risk.monitoring, drop.monitoring, never.monitoring, stale.monitoring) == (
        "at_risk",
        "drop_off",
        "never",
        "live",
    )
    for s in (at_risk, drop, never, stale):
        assert s.connectivity == "unknown" and s.download_mbps is None
        assert s.bandwidth_gap_mbps == s.required_mbps == 20.0  # unknown: the full requirement
    # no live inventory: its 3 computers are an assumed gap, not a finding
    assert at_risk.shortfalls == () and at_risk.devices_reporting == 0
    assert (at_risk.computers_gap, at_risk.computers_evidence, at_risk.need) == (
        3,
        "assumed",
        "assumed",
    )
    assert drop.shortfalls == never.shortfalls == ("not_monitored",)
    assert stale.shortfalls == () and stale.tests_7d == 0


def test_unregistered_reporter_is_in_the_snapshot(snapshot: Evaluated) -> None:
    s = snapshot().schools["UNREG"]
    assert (s.registered, s.province, s.students, s.required_mbps) == (False, "", None, 20.0)
    assert (s.connectivity, s.computers_required, s.shortfalls) == ("good", None, ())


def test_area_summaries(snapshot: Evaluated) -> None:
    snap = snapshot()
    hn = next(a for a in snap.provinces if a.province == HN and a.commune is None)
    assert hn.schools == 6
    assert hn.by_connectivity == {"good": 1, "moderate": 1, "bad": 1, "unknown": 3}
    assert hn.by_monitoring == {"live": 4, "at_risk": 1, "drop_off": 0, "never": 1}
    assert hn.shortfalls["bandwidth"] == 2 and hn.shortfalls["computers"] == 1
    assert hn.bandwidth_gap_mbps == pytest.approx(38 + 19.35 + 20 * 3)
    assert (hn.bandwidth_gap_measured_mbps, hn.bandwidth_gap_assumed_mbps) == (57.35, 60.0)
    assert (hn.computers_gap, hn.computers_required, hn.os_out_of_support) == (48 + 3, 56, 1)
    assert (hn.computers_gap_measured, hn.computers_gap_assumed) == (48, 3)
    assert [a.province for a in snap.provinces] == ["Thành phố Hà Nội", "Đà Nẵng"]
    assert [(a.province, a.commune) for a in snap.communes] == [(HN, BD), ("Đà Nẵng", BD)]
    order = [s.school_id for s in snap.by_priority()]
    assert order[0] == "MODERATE" and order.index("BAD") < order.index("GOOD")


def test_policy_changes_the_conclusions(tmp_path: Path, snapshot: Evaluated) -> None:
    path = write(
        tmp_path / "p.toml",
        "[statistic]\nstatistic = 'mean'\n[required]\nunknown_gap = 'zero'\n"
        "[monitoring]\nlive_days = 14\ndrop_off_days = 30\n",
    )
    snap = snapshot(load_policy(path))
    assert snap.schools["MODERATE"].download_mbps == pytest.approx(122 / 3)
    assert snap.schools["NEVER"].bandwidth_gap_mbps == 0.0
    assert snap.schools["DROP_OFF"].monitoring == "drop_off"
    assert snap.schools["AT_RISK"].monitoring == "at_risk"


# --- through a real store --------------------------------------------------------------------


def test_evaluate_reads_a_real_store(db_url: str) -> None:
    store = open_store(db_url)
    try:
        store.upsert_schools([school("GOOD", 400, computers_required=1), school("OLD", 10)])
        recent = NOW - timedelta(hours=5)
        old_os = msgspec.structs.replace(  # the collector's table decides, not the agent
            reports.inventory("GOOD", "d2", recent),
            os=OsInfo(name="Windows", version="7", out_of_support=False),
        )
        batch = [
            reports.bandwidth("GOOD", "d1", recent, 30.0),
            reports.bandwidth("GOOD", "d1", recent - timedelta(hours=1), 50.0),
            reports.inventory("GOOD", "d1", recent),
            old_os,
            reports.heartbeat("GOOD", "d1", MON + timedelta(hours=3), checks=10, ok=9),
            reports.bandwidth("OLD", "d1", NOW - timedelta(days=30), 30.0),
            reports.bandwidth("STRANGER", "d1", recent, 5.0),
        ]
        store.save_batch([reports.received(r) for r in batch])
        snap = evaluate(store, load_policy(), NOW)
    finally:
        store.close()
    good, old, stranger = (snap.schools[k] for k in ("GOOD", "OLD", "STRANGER"))
    assert (good.download_mbps, good.connectivity, good.computers_usable) == (40.0, "good", 2)
    assert (good.uptime_pct, good.os_out_of_support) == (90.0, 1)
    assert good.shortfalls == ("availability", "os_upgrade")
    assert (old.monitoring, old.connectivity, old.shortfalls) == (
        "drop_off",
        "unknown",
        ("not_monitored",),
    )
    assert (old.computers_gap, old.computers_evidence) == (1, "assumed")
    assert (stranger.registered, stranger.connectivity) == (False, "moderate")


def test_a_store_reaches_the_conclusions_of_the_rows(db_url: str) -> None:
    """evaluate() asks the store for sums and counts; compute() folds the rows itself."""
    store = open_store(db_url)
    try:
        fill(store)
        from_store = evaluate(store, load_policy(), NOW)
    finally:
        store.close()
    from_rows = compute(SCHOOLS, LAST, BANDWIDTH, DEVICES, HOURS, load_policy(), NOW)
    assert from_store == from_rows


def test_every_policy_key_is_documented() -> None:
    from edugap.collector.policy.rules import SECTIONS

    doc = (Path(__file__).parents[2] / "docs" / "policy.md").read_text(encoding="utf-8")
    missing = [f"{s}.{k}" for s, keys in SECTIONS.items() for k in keys if f"`{s}.{k}`" not in doc]
    assert missing == [], f"docs/policy.md lacks {missing}"
    assert "edugap policy show" in doc


def test_shortfalls_are_listed_in_the_model_order(snapshot: Evaluated) -> None:
    from edugap.collector.model import SHORTFALL_KINDS

    for s in snapshot().schools.values():
        assert s.shortfalls == tuple(k for k in SHORTFALL_KINDS if k in s.shortfalls)


def test_policy_file_from_the_environment(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    path = write(tmp_path / "env.toml", "[isp]\ncompliance_share = 0.9\n")
    monkeypatch.setenv("EDUGAP_POLICY_FILE", str(path))
    assert main(["policy", "show"]) == 0
    assert f"# from {path}\ncompliance_share = 0.9\n" in capsys.readouterr().out
