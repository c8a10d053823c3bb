"""Traffic probe: rates from injected interface counters and clock."""

from __future__ import annotations

from typing import Any, NamedTuple

from edugap.agent.probes import TrafficProbe


class Counters(NamedTuple):
    bytes_sent: int
    bytes_recv: int


class Fake:
    def __init__(self) -> None:
        self.now = 50.0
        self.nics: dict[str, Counters] = {}

    def monotonic(self) -> float:
        return self.now

    def counters(self, pernic: bool = False) -> dict[str, Any]:
        assert pernic, "the probe needs per-interface counters to leave loopback out"
        return dict(self.nics)


def test_rates_over_non_loopback_interfaces() -> None:
    fake = Fake()
    probe = TrafficProbe(monotonic=fake.monotonic, counters=fake.counters)
    fake.nics = {"eth0": Counters(0, 0), "wlan0": Counters(0, 0), "lo": Counters(0, 0)}
    assert probe.rates() == (None, None)

    fake.now += 10
    fake.nics = {
        "eth0": Counters(bytes_sent=2_500_000, bytes_recv=10_000_000),
        "wlan0": Counters(bytes_sent=0, bytes_recv=2_500_000),
        "lo": Counters(bytes_sent=900_000_000, bytes_recv=900_000_000),
    }
    rx, tx = probe.rates()
    assert rx == 10.0 and tx == 2.0  # (10 MB + 2.5 MB) * 8 / 10 s; 2.5 MB * 8 / 10 s


def test_counter_reset_and_new_interfaces_do_not_make_negative_rates() -> None:
    fake = Fake()
    probe = TrafficProbe(monotonic=fake.monotonic, counters=fake.counters)
    fake.nics = {"eth0": Counters(5_000_000, 5_000_000)}
    probe.rates()
    fake.now += 4
    fake.nics = {"eth0": Counters(1_000, 1_000), "usb0": Counters(7_000_000, 7_000_000)}
    assert probe.rates() == (0.0, 0.0)
    fake.now += 4
    fake.nics = {
        "eth0": Counters(bytes_sent=501_000, bytes_recv=1_000),
        "usb0": Counters(7_000_000, 7_000_000),
    }
    assert probe.rates() == (0.0, 1.0)


def test_no_time_passed_gives_no_rate() -> None:
    fake = Fake()
    fake.nics = {"eth0": Counters(0, 0)}
    probe = TrafficProbe(monotonic=fake.monotonic, counters=fake.counters)
    probe.rates()
    assert probe.rates() == (None, None)


def test_real_counters_give_non_negative_rates() -> None:
    probe = TrafficProbe()
    assert probe.rates() == (None, None)
    rx, tx = probe.rates()
    assert rx is None or rx >= 0
    assert tx is None or tx >= 0
