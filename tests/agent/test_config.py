"""Agent configuration (file, environment, validation) and the scheduler it drives."""

from __future__ import annotations

import os
import random
from datetime import UTC, datetime, time, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest

from edugap.agent import config_values
from edugap.agent.cli import main
from edugap.agent.config import ConfigError, ScheduleConfig, load, parse
from edugap.agent.scheduler import HEARTBEAT, INVENTORY, SPEEDTEST, Scheduler, within_budget
from tests.agent.agentproc import agent_command, clean_env

HCM = ZoneInfo("Asia/Ho_Chi_Minh")

# --- configuration -------------------------------------------------------------------------


def test_defaults_need_no_file(tmp_path: Path) -> None:
    config = load(tmp_path / "absent.toml", required=False, env={})
    assert config.school_id == "unenrolled" and not config.enrolled
    assert config.schedule.inventory_hours == 6
    assert config.schedule.heartbeat_minutes == 5
    assert config.schedule.speedtests_per_day == 4
    assert config.schedule.school_hours == (time(7), time(17))
    assert config.schedule.timezone == "Asia/Ho_Chi_Minh"
    assert config.bandwidth.role is False  # a speed tester is designated, not the default
    assert config.broker.mqtt_version == 5


def test_file_values_and_environment_overrides(tmp_path: Path) -> None:
    path = tmp_path / "agent.toml"
    path.write_text(
        'state_dir = "/srv/state"\n'
        '[school]\nschool_id = "79000001"\n'
        '[broker]\nurl = "mqtts://79000001:p@broker.example:8884"\n'
        '[schedule]\nheartbeat_minutes = 0.5\nschool_days = "mon-fri"\n'
        '[availability]\ntargets = ["10.0.0.1:53"]\n'
    )
    env = {
        "EDUGAP_AGENT_SCHEDULE_HEARTBEAT_MINUTES": "2",
        "EDUGAP_AGENT_AVAILABILITY_TARGETS": "10.0.0.2:443, 10.0.0.3:53",
        "EDUGAP_AGENT_BANDWIDTH_ROLE": "no",
        "EDUGAP_AGENT_STATE_DIR": "/var/tmp/agent",
    }
    config = load(path, env=env)
    assert config.school_id == "79000001"
    assert config.schedule.heartbeat_minutes == 2.0  # the environment wins over the file
    assert config.schedule.school_days == ("mon", "tue", "wed", "thu", "fri")
    assert config.availability.targets == ("10.0.0.2:443", "10.0.0.3:53")
    assert config.bandwidth.role is False
    assert config.state_dir == "/var/tmp/agent"
    settings = config.broker.settings()
    assert (settings.host, settings.port, settings.tls) == ("broker.example", 8884, True)
    assert (settings.username, settings.password) == ("79000001", "p")


BAD = [
    ("schedule", "heartbeat_minutes", "-5", "must be a positive number"),
    ("schedule", "inventory_hours", "0", "must be a positive number"),
    ("schedule", "availability_minutes", '"often"', "must be a number"),
    ("schedule", "speedtests_per_day", "2.5", "whole number"),
    ("schedule", "school_hours", '"17:00-07:00"', "end must be after the start"),
    ("schedule", "school_hours", '"morning"', "07:00-17:00"),
    ("schedule", "school_days", '["mon", "funday"]', "day names"),
    ("schedule", "timezone", '"Mars/Olympus"', "unknown time zone"),
    ("schedule", "max_start_delay_seconds", "-1", ">= 0"),
    ("school", "school_id", '"79/0001"', "letters, digits"),
    ("broker", "url", '"http://broker:1883"', "mqtt:// or mqtts://"),
    ("broker", "mqtt_version", "4.5", "must be 5"),
    ("broker", "keepalive", "0", "whole number >= 1"),
    ("broker", "ca_file", '"/nonexistent/ca.pem"', "no such file"),
    ("bandwidth", "role", '"maybe"', "true or false"),
    ("bandwidth", "backend", '"fast.com"', "selfhosted, speedtest.net"),
    ("bandwidth", "server_url", '"ftp://x"', "http://"),
    ("bandwidth", "daily_budget_mb", "-10", "positive"),
    ("availability", "targets", '["no-port"]', "host:port"),
    ("outbox", "max_rows", "0", ">= 1"),
    ("outbox", "drain_per_second", "-1", ">= 0"),
]


@pytest.mark.parametrize(
    ("section", "key", "value", "why"), BAD, ids=[f"{s}.{k}" for s, k, *_ in BAD]
)
def test_check_config_names_bad_key_and_value(
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
    section: str,
    key: str,
    value: str,
    why: str,
) -> None:
    for name in list(os.environ):
        if name.startswith("EDUGAP_AGENT_"):
            monkeypatch.delenv(name)
    path = tmp_path / "agent.toml"
    path.write_text(f"[{section}]\n{key} = {value}\n")
    assert main(["check-config", "--config", str(path)]) != 0
    err = capsys.readouterr().err
    shown = value.strip('"')
    assert f"config key '{section}.{key}' has value '{shown}'" in err or (
        f"'{section}.{key}'" in err and shown in err
    )
    assert why in err


def test_check_config_reports_every_problem_and_unknown_keys() -> None:
    with pytest.raises(ConfigError) as e:
        parse(
            {"schedule": {"heartbeat_minutes": -5, "heartbeat_minuets": 5}, "brokr": {}},
            env={"EDUGAP_AGENT_OUTBOX_MAX_MB": "lots"},
        )
    text = str(e.value)
    assert "config key 'schedule.heartbeat_minutes' has value '-5': must be a positive" in text
    assert "'schedule.heartbeat_minuets' is not a known key" in text
    assert "'brokr' is not a known key" in text
    assert (
        "'outbox.max_mb' has value 'lots' (from environment variable EDUGAP_AGENT_OUTBOX_MAX_MB)"
        in text
    )
    assert len(e.value.problems) == 4


def test_availability_checks_the_broker_unless_targets_are_set(tmp_path: Path) -> None:
    broker = {"url": "mqtts://broker.example:8883"}
    config = parse({"broker": broker}, env={})
    assert config.availability.targets == ()
    assert config.availability_targets == ("broker.example:8883",)  # no third party by default
    v6 = parse({"broker": {"url": "mqtt://[2001:db8::1]:1883"}}, env={})
    assert v6.availability_targets == ("[2001:db8::1]:1883",)
    chosen = parse({"broker": broker, "availability": {"targets": ["8.8.8.8:53"]}}, env={})
    assert chosen.availability_targets == ("8.8.8.8:53",)  # third parties by choice
    emptied = parse(
        {"availability": {"targets": ["8.8.8.8:53"]}},
        env={"EDUGAP_AGENT_AVAILABILITY_TARGETS": ""},
    )
    assert emptied.availability_targets == ("127.0.0.1:1883",)  # the default broker

    path = tmp_path / "agent.toml"
    path.write_text('[broker]\nurl = "mqtts://broker.example:8883"\n')
    done = agent_command("check-config", "--config", str(path))
    assert done.returncode == 0, done.stderr
    assert "availability targets broker.example:8883 (the broker's)" in done.stdout


def test_selfhosted_backend_needs_a_server_url() -> None:
    with pytest.raises(ConfigError, match=r"bandwidth\.server_url"):
        parse({"bandwidth": {"backend": "selfhosted", "role": True}}, env={})
    parse({"bandwidth": {"backend": "selfhosted", "role": False}}, env={})  # unused: fine


def test_check_config_command_exit_codes(tmp_path: Path) -> None:
    good = tmp_path / "good.toml"
    good.write_text('[school]\nschool_id = "79000001"\n')
    done = agent_command("check-config", "--config", str(good))
    assert done.returncode == 0, done.stderr
    assert "config OK" in done.stdout
    bad = tmp_path / "bad.toml"
    bad.write_text("[schedule]\nheartbeat_minutes = -5\n")
    done = agent_command("check-config", "--config", str(bad))
    assert done.returncode != 0
    assert "config key 'schedule.heartbeat_minutes' has value '-5'" in done.stderr
    done = agent_command("check-config", "--config", str(tmp_path / "missing.toml"))
    assert done.returncode != 0 and "does not exist" in done.stderr
    env = clean_env(EDUGAP_AGENT_CONFIG=str(bad))
    assert agent_command("check-config", env=env).returncode != 0
    # the service refuses to start on the same problem, naming it
    done = agent_command("run", "--config", str(bad))
    assert done.returncode == 2
    assert "config key 'schedule.heartbeat_minutes' has value '-5'" in done.stderr
    env = clean_env(EDUGAP_AGENT_SCHEDULE_HEARTBEAT_MINUTES="soon")
    done = agent_command("run", "--config", str(good), env=env)
    assert done.returncode == 2
    assert "(from environment variable EDUGAP_AGENT_SCHEDULE_HEARTBEAT_MINUTES)" in done.stderr


def test_windows_fallback_zone_is_exact_for_vietnam() -> None:
    fixed = config_values._FIXED_ZONES["Asia/Ho_Chi_Minh"]
    moment = datetime(2026, 7, 1, 12, tzinfo=UTC)
    assert moment.astimezone(HCM).utcoffset() == timedelta(hours=fixed)
    assert config_values.load_zone("+07:00").utcoffset(None) == timedelta(hours=7)


# --- scheduler -----------------------------------------------------------------------------


def schedule(**values: object) -> ScheduleConfig:
    return parse({"schedule": values}, env={}).schedule


def run_day(scheduler: Scheduler, start: datetime, hours: float, step_s: float = 30) -> dict:
    """Drive the scheduler through `hours` with a fake clock; when each job ran."""
    ran: dict[str, list[datetime]] = {}
    now = start
    while now < start + timedelta(hours=hours):
        for job in scheduler.due(now):
            ran.setdefault(job, []).append(now)
        now = min(scheduler.next_at(), now + timedelta(seconds=step_s))
    return ran


def test_speed_tests_fall_inside_school_hours_on_school_days() -> None:
    # Monday 2026-03-02 00:00 in Ho Chi Minh City; run a whole week
    start = datetime(2026, 3, 2, tzinfo=HCM).astimezone(UTC)
    cfg = schedule(school_days="mon-fri", speedtests_per_day=4, max_start_delay_seconds=0)
    ran = run_day(Scheduler(cfg, start=start, rng=random.Random(1)), start, 24 * 7)
    tests = [t.astimezone(HCM) for t in ran[SPEEDTEST]]
    assert len(tests) == 4 * 5
    assert all(time(7) <= t.time() < time(17) for t in tests)
    assert {t.strftime("%a") for t in tests} == {"Mon", "Tue", "Wed", "Thu", "Fri"}


def test_agents_test_at_different_times() -> None:
    start = datetime(2026, 3, 2, tzinfo=HCM).astimezone(UTC)
    plans = [
        Scheduler(schedule(), start=start, rng=random.Random(seed)).speedtest_plan
        for seed in range(50)
    ]
    first_tests = {plan[0] for plan in plans}
    assert len(first_tests) == 50  # no two agents of a province start their day together


def test_no_speed_test_before_the_random_start_delay() -> None:
    start = datetime(2026, 3, 2, 9, tzinfo=HCM).astimezone(UTC)
    cfg = schedule(max_start_delay_seconds=3600, speedtests_per_day=50)
    scheduler = Scheduler(cfg, start=start, rng=random.Random(7))
    assert scheduler.not_before > start
    assert all(t >= scheduler.not_before for t in scheduler.speedtest_plan)


def test_restart_mid_day_owes_only_the_remaining_tests() -> None:
    start = datetime(2026, 3, 2, 12, tzinfo=HCM).astimezone(UTC)
    cfg = schedule(speedtests_per_day=4, max_start_delay_seconds=0)
    scheduler = Scheduler(cfg, start=start, tests_done_today=3, rng=random.Random(3))
    assert len(scheduler.speedtest_plan) == 1
    assert all(start <= t for t in scheduler.speedtest_plan)


def test_bandwidth_role_off_means_no_speed_tests() -> None:
    start = datetime(2026, 3, 2, tzinfo=HCM).astimezone(UTC)
    ran = run_day(Scheduler(schedule(), start=start, speedtests=False), start, 48)
    assert SPEEDTEST not in ran


def test_inventory_at_start_then_every_n_hours_and_heartbeats_every_m_minutes() -> None:
    start = datetime(2026, 3, 2, 3, tzinfo=UTC)
    cfg = schedule(inventory_hours=6, heartbeat_minutes=5)
    ran = run_day(Scheduler(cfg, start=start, speedtests=False), start, 12)
    assert ran[INVENTORY] == [start, start + timedelta(hours=6)]
    assert len(ran[HEARTBEAT]) == 12 * 12 - 1  # the first one comes one interval after start
    assert ran[HEARTBEAT][0] == start + timedelta(minutes=5)


def test_after_a_long_sleep_jobs_run_once_not_in_a_burst() -> None:
    start = datetime(2026, 3, 2, 3, tzinfo=UTC)
    scheduler = Scheduler(schedule(heartbeat_minutes=5), start=start, speedtests=False)
    scheduler.due(start)
    later = start + timedelta(hours=3)
    assert scheduler.due(later).count(HEARTBEAT) == 1
    assert HEARTBEAT not in scheduler.due(later + timedelta(seconds=1))


def test_daily_budget() -> None:
    assert within_budget(used_bytes=0, estimated_bytes=40_000_000, budget_mb=50)
    assert not within_budget(used_bytes=20_000_000, estimated_bytes=40_000_000, budget_mb=50)
