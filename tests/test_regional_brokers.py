"""Regional brokers bridged to a central one, from deploy/mosquitto/make_bridges.py.

Three real Mosquitto instances on this machine, each running the configuration the generator
wrote (TLS, per-school passwords and the shipped ACL on the regional ones, bridge users and the
collectors' user on the central one, persistence everywhere): the real agent service of one
school on each regional broker (one MQTT 5, one MQTT 3.1.1), one `edugap serve` on the central
broker. Each bridge dials the central broker through a forwarder the test can cut. While the
agents send reports, a regional broker restarts, the central broker restarts, or the bridges'
link is cut (with a regional restart during the cut); every report sent is stored, once.
Then what the ACLs allow a bridge's and a school's password, and what a full bridge queue does.
"""

from __future__ import annotations

import contextlib
import csv
import getpass
import os
import queue
import subprocess
import sys
import time
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path

import paho.mqtt.client as mqtt
import pytest

from edugap.protocol.messages import utcnow
from edugap.protocol.mqtt import BrokerSettings, connect_properties, new_client
from tests import realparts
from tests.agent.agentproc import wait_for
from tests.restart_parts import CollectorProcess, ServiceAgent, cleanup, reports, stored_devices
from tests.shipped_broker import COLLECTOR_USER, ShippedBroker, make_certificates, make_credentials

DEPLOY = Path(__file__).resolve().parents[1] / "deploy" / "mosquitto"
SCRIPT = DEPLOY / "make_bridges.py"
REGIONS = {"bac": "HN-A", "nam": "SG-A"}  # region -> its one school


def run_generator(where: Path, regions_toml: str, *extra: str) -> subprocess.CompletedProcess[str]:
    realparts.require_tool("mosquitto_passwd", "mosquitto")
    where.mkdir(parents=True, exist_ok=True)
    (where / "regions.toml").write_text(regions_toml, encoding="utf-8")
    return subprocess.run(
        [sys.executable, str(SCRIPT), "--regions", str(where / "regions.toml"),
         "--out", str(where / "out"), *extra],
        capture_output=True, text=True, timeout=60,
    )  # fmt: skip


# the network between a regional and the central broker: a forwarder the test can cut
Link = realparts.CountingProxy


class GeneratedBroker(ShippedBroker):
    """One Mosquitto running a config make_bridges.py wrote; only what cannot work in a test
    is rewritten (file paths, ports, log, user), as tests/shipped_broker.py does."""

    def __init__(
        self,
        workdir: Path,
        conf_text: str,
        *,
        acl: Path,
        passwd: Path,
        users: dict[str, str],
        certs: tuple[Path, Path, Path],
        tls_port: int,
        bridge_ca: Path | None = None,
    ) -> None:
        exe = realparts.find_mosquitto()
        if exe is None:
            realparts.missing("mosquitto", "install the Debian package 'mosquitto'")
        self.exe = exe or "mosquitto"
        self.workdir = workdir
        self.collectors = {COLLECTOR_USER}
        self.users = users
        self.ca, cert, key = certs
        self.tls_port, self.plain_port = tls_port, realparts.free_port()
        (workdir / "data").mkdir(parents=True, exist_ok=True)
        rewrites = {
            "/etc/mosquitto/edugap/passwd": str(passwd),
            "/etc/mosquitto/edugap/acl": str(acl),
            "/etc/mosquitto/certs/server.crt": str(cert),
            "/etc/mosquitto/certs/server.key": str(key),
            "/var/lib/mosquitto/": f"{workdir / 'data'}/",
            "listener 8883": f"listener {self.tls_port} 127.0.0.1",
            "listener 1883 127.0.0.1": f"listener {self.plain_port} 127.0.0.1",
            "log_dest syslog": f"log_dest file {workdir / 'mosquitto.log'}",
        }
        if bridge_ca is not None:
            rewrites["/etc/mosquitto/certs/central-ca.crt"] = str(bridge_ca)
        for old, new in rewrites.items():
            assert old in conf_text, f"{old} is not in the generated config"
            conf_text = conf_text.replace(old, new)
        self.conf = workdir / "mosquitto.conf"
        # as the tests' user: as root, Mosquitto would switch to `mosquitto`, who cannot read
        # pytest's private directory
        self.conf.write_text(conf_text + f"user {getpass.getuser()}\n", encoding="utf-8")
        self.log = workdir / "mosquitto.log"
        self.proc = None


class Brokers:
    """The central broker, one broker per region, and the link from each region's bridge."""

    def __init__(self, tmp_path: Path, *generator_args: str) -> None:
        central_tls = realparts.free_port()
        self.link = Link(central_tls)  # the bridges dial the central broker through it
        toml = f'[central]\naddress = "127.0.0.1:{self.link.port}"\n' + "".join(
            f'[regions.{r}]\nschools = ["{s}"]\n' for r, s in REGIONS.items()
        )
        done = run_generator(
            tmp_path / "generated", toml, "--collector", COLLECTOR_USER, *generator_args
        )
        assert done.returncode == 0, done.stderr
        first = self.generated = tmp_path / "generated" / "out"
        with (first / "central" / "collector-credentials.csv").open(encoding="utf-8") as f:
            collector_users = {row["username"]: row["password"] for row in csv.DictReader(f)}
        central_certs = make_certificates(tmp_path / "central-certs")
        self.central = GeneratedBroker(
            tmp_path / "central",
            (first / "central" / "mosquitto.conf").read_text(),
            acl=first / "central" / "acl",
            passwd=first / "central" / "passwd",
            users=collector_users,
            certs=central_certs,
            tls_port=central_tls,
        )
        self.regions: dict[str, GeneratedBroker] = {}
        for region, school in REGIONS.items():
            out = first / region
            users, _ = make_credentials(tmp_path / f"cred-{region}", [school], collectors=())
            self.regions[region] = GeneratedBroker(
                tmp_path / region,
                (out / "mosquitto.conf").read_text(),
                acl=DEPLOY / "acl",
                passwd=tmp_path / f"cred-{region}" / "passwd",
                users=users,
                certs=make_certificates(tmp_path / f"certs-{region}"),
                tls_port=realparts.free_port(),
                bridge_ca=central_certs[0],
            )

    def start(self) -> Brokers:
        self.central.start()
        for broker in self.regions.values():
            broker.start()
        return self

    def stop(self) -> None:
        for broker in (*self.regions.values(), self.central):
            broker.stop()
        self.link.close()


@pytest.fixture
def brokers(tmp_path: Path) -> Iterator[Brokers]:
    parts = Brokers(tmp_path).start()
    try:
        yield parts
    finally:
        parts.stop()


SCENARIOS = [
    "regional-restart",
    "central-restart",
    # a group's $share subscription is not restored at a restart: the bridges' 10 s
    # restart_timeout lets the collector subscribe again before they forward anything
    "central-restart-shared-collector",
    "bridge-cut",
    "bridge-cut-regional-restart",
]


@pytest.mark.parametrize("scenario", SCENARIOS)
def test_no_report_is_lost_between_regional_and_central_brokers(
    brokers: Brokers, tmp_path: Path, scenario: str
) -> None:
    since = utcnow() - timedelta(minutes=1)
    collector = CollectorProcess(
        tmp_path / "collector", brokers.central, str(tmp_path / "e.db"),
        shared=scenario.endswith("shared-collector"),
    )
    agents = {
        region: ServiceAgent(
            tmp_path / f"agent-{region}", brokers.regions[region], school,
            mqtt_version=version, per_second=200.0,
        )
        for (region, school), version in zip(REGIONS.items(), (5, 3), strict=True)
    }
    per_agent, rate = 300, 30.0  # about 10 s of reports from each school
    try:
        collector.start()
        made = {r: reports(per_agent, REGIONS[r], prefix=f"{r}-") for r in REGIONS}
        feeds = [agents[r].start().feed(made[r], rate) for r in REGIONS]

        def stored() -> set[str]:
            return {f"{school}/{device}" for (school, device) in stored_pairs(collector.db_url)}

        def stored_of(school: str) -> int:
            return sum(key.startswith(f"{school}/") for key in stored())

        def flowing() -> bool:  # both bridges up and carrying reports to the collector
            schools = [key.split("/")[0] for key in stored()]
            return all(schools.count(school) >= 20 for school in REGIONS.values())

        wait_for(flowing, timeout=60, what="reports flowing from both regions to the collector")
        if scenario == "regional-restart":
            brokers.regions["bac"].restart()
        elif scenario.startswith("central-restart"):
            brokers.central.restart()
        else:
            brokers.link.cut()
            cut_at = stored_of("HN-A")

            def queued_at_bac() -> bool:  # delivered by the agent, held by the regional broker
                delivered = agents["bac"].fed - agents["bac"].depth()
                return delivered >= cut_at + 30

            wait_for(queued_at_bac, timeout=30, what="reports waiting in the bridge queue")
            assert stored_of("HN-A") < cut_at + 30  # they wait at the regional broker
            if scenario == "bridge-cut-regional-restart":
                brokers.regions["bac"].restart()  # the queue must survive the restart
                time.sleep(1)
            brokers.link.restore()
        for feed in feeds:
            feed.join()
        sent = {f"{REGIONS[r]}/{rep.device_id}" for r in REGIONS for rep in made[r]}
        wait_for(lambda: sent <= stored(), timeout=120, what="every report stored at the centre")
        counts = stored_devices(collector.db_url, since)
        ours = {d: n for d, n in counts.items() if any(d.startswith(f"{r}-") for r in REGIONS)}
        assert len(ours) == len(sent), "a report was lost"
        assert all(n == 1 for n in ours.values()), "a report was stored twice"
        for agent in agents.values():
            wait_for(lambda a=agent: a.depth() == 0, what="the agents' outboxes to empty")
    finally:
        cleanup(*agents.values(), collector)


def stored_pairs(db_url: str) -> list[tuple[str, str]]:
    from edugap.collector.store import open_store

    store = open_store(db_url)
    try:
        rows = store.bandwidth_since(utcnow() - timedelta(hours=1))
        return [(r.school_id, r.device_id) for r in rows]
    finally:
        store.close()


def test_a_retained_status_reaches_the_central_broker_retained(
    brokers: Brokers, tmp_path: Path
) -> None:
    """The agent's online status (retained, and its last will) travels over the bridge with its
    retain flag: a collector that subscribes later at the centre still gets it."""
    agent = ServiceAgent(tmp_path / "agent", brokers.regions["bac"], "HN-A", mqtt_version=5)
    got: list[mqtt.MQTTMessage] = []
    try:
        agent.start()
        settings = brokers.central.settings(COLLECTOR_USER)

        def retained_status() -> bool:
            client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, protocol=mqtt.MQTTv311)
            client.username_pw_set(settings.username, settings.password)
            client.on_message = lambda c, u, m: got.append(m)
            client.connect("127.0.0.1", settings.port)
            client.subscribe("edugap/v1/HN-A/+/status", 1)
            client.loop_start()
            time.sleep(0.5)
            client.loop_stop()
            client.disconnect()
            return any(m.retain for m in got)

        wait_for(retained_status, timeout=30, what="the retained status at the central broker")
        assert b'"online"' in got[-1].payload
    finally:
        cleanup(agent)


class Session:
    """An MQTT 5 client that records PUBACK reason codes and the reports it receives."""

    def __init__(self, settings: BrokerSettings, client_id: str, clean: bool = True) -> None:
        self.acks: queue.Queue[int] = queue.Queue()
        self.received: queue.Queue[bytes] = queue.Queue()
        self.refused: queue.Queue[int] = queue.Queue()
        self.client = new_client(settings, client_id, clean_start=clean)
        self.client.on_publish = lambda _c, _u, _mid, rc, _p: self.acks.put(rc.value)
        self.client.on_message = lambda _c, _u, m: self.received.put(m.payload)
        self.client.on_connect = lambda _c, _u, _f, rc, _p: self.refused.put(rc.value)
        self.client.connect(settings.host, settings.port,
                            **connect_properties(settings, clean))  # type: ignore[arg-type]
        self.client.loop_start()
        self.connack = self.refused.get(timeout=20)

    def publish(self, topic: str, payload: bytes = b"{}", retain: bool = False) -> int:
        """The broker's PUBACK reason code for one QoS 1 publish."""
        self.client.publish(topic, payload, 1, retain=retain)
        return self.acks.get(timeout=20)

    def close(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()


def connack_of(settings: BrokerSettings) -> int:
    session = Session(settings, "probe")
    session.close()
    return session.connack


def test_a_bridge_password_publishes_reports_only_and_a_school_reaches_only_its_broker(
    brokers: Brokers,
) -> None:
    conf = (brokers.generated / "bac" / "mosquitto.conf").read_text()
    password = conf.split("\nremote_password ", 1)[1].split("\n", 1)[0]
    central = brokers.central.settings(COLLECTOR_USER)
    as_bridge = BrokerSettings(port=brokers.central.tls_port, tls=True,
                               ca_file=str(brokers.central.ca), username="bridge-bac",
                               password=password, mqtt_version=5)  # fmt: skip
    bridge = Session(as_bridge, "stolen-bridge-password")
    try:
        assert bridge.connack == 0
        assert bridge.publish("edugap/v1/HN-A/d1/heartbeat") < 0x80  # a report: accepted
        assert bridge.publish("edugap/v1/HN-A/d1/echo/1") == 0x87  # anything else: refused
        assert bridge.publish("somewhere/else") == 0x87
    finally:
        bridge.close()
    school = brokers.regions["bac"].settings("HN-A")
    assert connack_of(school) == 0
    # a school's password opens neither another region's broker nor the central one
    other_region = BrokerSettings(port=brokers.regions["nam"].tls_port, tls=True,
                                  ca_file=str(brokers.regions["nam"].ca), username="HN-A",
                                  password=school.password, mqtt_version=5)  # fmt: skip
    assert connack_of(other_region) >= 0x80
    at_centre = BrokerSettings(port=central.port, username="HN-A", password=school.password,
                               mqtt_version=5)  # fmt: skip
    assert connack_of(at_centre) >= 0x80


@pytest.fixture
def small_queue(tmp_path: Path) -> Iterator[Brokers]:
    parts = Brokers(tmp_path, "--max-queued-messages", "10").start()
    try:
        yield parts
    finally:
        parts.stop()


def test_a_full_bridge_queue_drops_reports_the_agents_were_told_were_delivered(
    small_queue: Brokers,
) -> None:
    """What docs/scale.md warns of ("Bridge queue full"), on the installed Mosquitto: reports
    past max_queued_messages are acknowledged as delivered, then dropped, and the regional
    broker logs it. If an upgrade changes this, the docs must change with it."""
    brokers = small_queue
    central = brokers.central.settings(COLLECTOR_USER)
    collector = Session(central, "collector-session", clean=False)
    collector.client.subscribe("edugap/v1/+/+/+", qos=1)
    time.sleep(0.5)  # the SUBACK; the session is kept while the collector is away
    collector.close()
    brokers.link.cut()
    agent = Session(brokers.regions["bac"].settings("HN-A"), "agent")
    try:
        codes = [agent.publish(f"edugap/v1/HN-A/d{i}/heartbeat", b"%d" % i) for i in range(30)]
        # every one acknowledged as delivered: plain success, not "No matching subscribers"
        # (the bridge is a subscriber on the regional broker, connected or not), so an MQTT 5
        # agent has no reason to hold
        assert codes == [0] * 30
        brokers.link.restore()
        collector = Session(central, "collector-session", clean=False)
        got: list[bytes] = []

        def marker_arrived() -> bool:
            agent.publish("edugap/v1/HN-A/marker/heartbeat", b"marker")
            deadline = time.monotonic() + 1
            while time.monotonic() < deadline:
                with contextlib.suppress(queue.Empty):
                    got.append(collector.received.get(timeout=0.1))
            return b"marker" in got

        wait_for(marker_arrived, timeout=60, what="the bridge back and carrying reports")
        delivered = {g for g in got if g != b"marker"}
        assert delivered == {b"%d" % i for i in range(10)}  # the first 10; 20 were dropped
        log = (brokers.regions["bac"].workdir / "mosquitto.log").read_text()
        assert "Outgoing messages are being dropped for client edugap-bridge-bac.local" in log
    finally:
        agent.close()
        collector.close()


# --- the generator on its own ---------------------------------------------------------------

REGISTRY = "school_id,name,province\nHN-1,A,Hà Nội\nHN-2,B,thành phố ha noi\nSG-1,C,TP HCM\n"


def test_schools_go_to_their_province_region_and_passwords_survive_a_rerun(
    tmp_path: Path,
) -> None:
    (tmp_path / "schools.csv").write_text(REGISTRY, encoding="utf-8")
    toml = (
        '[central]\naddress = "central.example:8883"\n'
        '[regions.bac]\nprovinces = ["Hà Nội"]\n'
        '[regions.nam]\nprovinces = ["Hồ Chí Minh"]\nschools = ["SG-9"]\n'
    )
    args = ("--registry", str(tmp_path / "schools.csv"), "--collector", COLLECTOR_USER,
            "--max-queued-messages", "20000000")  # fmt: skip
    done = run_generator(tmp_path, toml, *args)
    assert done.returncode == 0, done.stderr
    out = tmp_path / "out"
    assert (out / "bac" / "schools.csv").read_text().split() == ["school_id", "HN-1", "HN-2"]
    assert (out / "nam" / "schools.csv").read_text().split() == ["school_id", "SG-9", "SG-1"]
    conf = (out / "bac" / "mosquitto.conf").read_text()
    for line in ("connection edugap-bac", "address central.example:8883",
                 "topic edugap/v1/+/+/+ out 1", "cleansession false",
                 "remote_clientid edugap-bridge-bac", "bridge_attempt_unsubscribe false",
                 "max_queued_messages 20000000"):
        assert f"\n{line}\n" in conf  # fmt: skip
    assert os.stat(out / "bac" / "mosquitto.conf").st_mode & 0o777 == 0o600  # it holds a secret
    users = [line.split(":")[0] for line in (out / "central" / "passwd").read_text().split()]
    assert sorted(users) == ["bridge-bac", "bridge-nam", COLLECTOR_USER]
    acl = (out / "central" / "acl").read_text()
    assert "user bridge-nam\ntopic write edugap/v1/+/+/+" in acl

    passwd_before = (out / "central" / "passwd").read_text()
    again = run_generator(tmp_path, toml, *args)
    assert again.returncode == 0, again.stderr
    assert (out / "bac" / "mosquitto.conf").read_text() == conf
    assert (out / "central" / "passwd").read_text() == passwd_before


def test_a_school_in_no_region_stops_the_generator(tmp_path: Path) -> None:
    (tmp_path / "schools.csv").write_text(REGISTRY, encoding="utf-8")
    toml = '[central]\naddress = "central.example:8883"\n[regions.bac]\nprovinces = ["Hà Nội"]\n'
    done = run_generator(tmp_path, toml, "--registry", str(tmp_path / "schools.csv"))
    assert done.returncode != 0
    assert "1 schools are in no region: SG-1 (TP HCM)" in done.stderr
    assert not (tmp_path / "out").exists()

