"""`edugap demo`: broker, collector, a simulated fleet and a few real agents, on one machine.

Steps: start a broker (Mosquitto, else the embedded amqtt), import the simulated registry into
a SQLite store in the demo directory, start `edugap serve`, publish the simulated fleet, start
real `edugap-agent run` processes enrolled to simulated schools that never reported, wait until
the collector has everything, print the URLs and a shortfall summary, then run until Ctrl-C,
SIGTERM or --duration, and stop every child.
"""

from __future__ import annotations

import json
import os
import shutil
import threading
import time
import urllib.request
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, TextIO

from edugap.collector.demo.bulk_publish import Message, Publisher, PublishResult
from edugap.collector.demo.fleet import SimSchool, build_fleet, write_registry_file
from edugap.collector.demo.procs import (
    BrokerImpl,
    Child,
    Children,
    DemoError,
    Interrupted,
    agent_argv,
    broker_child,
    edugap_argv,
    free_port,
    port_open,
    run_once,
    wait_until,
)
from edugap.collector.demo.simulate import Plan, fleet_reports, plan_now
from edugap.collector.demo.summary import Summary, summarise
from edugap.protocol.mqtt import parse_broker_url

STATE_FILES = ("demo.db", "demo.db-wal", "demo.db-shm", "mosquitto.db")


@dataclass(frozen=True, slots=True)
class DemoOptions:
    """What `edugap demo` runs; the defaults are the documented ones."""

    dir: Path = Path("edugap-demo")
    schools: int = 2000
    devices_per_school: int = 2
    port: int = 8080
    mqtt_port: int | None = None  # None: a free port
    seed: int = 1
    duration: float | None = None  # None: until Ctrl-C / SIGTERM
    broker_impl: BrokerImpl = "auto"
    agents: int = 3
    host: str = "127.0.0.1"
    ready_timeout: float = 180.0


# The demo talks only to its own collector: ignore any *_proxy environment variables.
_opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))


def _get(url: str, timeout: float = 10.0) -> bytes:
    with _opener.open(url, timeout=timeout) as response:
        body: bytes = response.read()
        return body


def _get_json(url: str) -> Any:
    return json.loads(_get(url))


def _http_ok(url: str) -> bool:
    try:
        _get(url, timeout=2.0)
        return True
    except OSError:
        return False


def agent_config(
    school_id: str,
    mqtt_url: str,
    mqtt_version: int,
    http_base: str,
    state_dir: Path,
    now: datetime,
) -> str:
    """TOML for one demo agent: short intervals, self-hosted speed test, local targets only."""
    host_port = http_base.removeprefix("http://")
    # "School hours" are the coming hour (UTC), so the 30 planned speed tests start at once.
    end = now + timedelta(hours=1)
    hours = f"{now:%H:%M}-" + ("24:00" if end.date() != now.date() else f"{end:%H:%M}")
    return f"""# written by `edugap demo`: a real agent with demo-sized intervals
state_dir = "{state_dir.as_posix()}"
log_level = "info"

[school]
school_id = "{school_id}"

[broker]
url = "{mqtt_url}"
mqtt_version = {mqtt_version}

[schedule]
inventory_hours = 0.05
heartbeat_minutes = 0.25
availability_minutes = 0.05
speedtests_per_day = 30
school_hours = "{hours}"
school_days = "mon-sun"
timezone = "UTC"
max_start_delay_seconds = 0

[bandwidth]
# each demo agent is its school's designated speed tester
role = true
backend = "selfhosted"
server_url = "{http_base}/speedtest/"
daily_budget_mb = 5000
timeout_seconds = 20

[availability]
# only this machine: the demo never sends traffic elsewhere
targets = ["{host_port}"]
timeout_seconds = 1

[outbox]
drain_per_second = 0
"""


class Demo:
    """Runs the demo; `stop` (an Event) ends it from a signal handler or another thread."""

    def __init__(
        self, options: DemoOptions, out: TextIO, stop: threading.Event | None = None
    ) -> None:
        self.o = options
        self.out = out
        self.stop = stop or threading.Event()
        self.children = Children()
        self.dir = options.dir.resolve()
        self.logs = self.dir / "logs"
        self.http_base = f"http://{options.host}:{options.port}"
        self.mqtt_url = ""
        self.mqtt_version = 5
        self.broker_name = ""

    def say(self, text: str) -> None:
        print(text, file=self.out, flush=True)

    # --- steps -------------------------------------------------------------------------------

    def _fresh_dir(self) -> None:
        """Each run starts afresh: old reports would collide with the regenerated ones."""
        self.dir.mkdir(parents=True, exist_ok=True)
        for name in STATE_FILES:
            (self.dir / name).unlink(missing_ok=True)
        shutil.rmtree(self.dir / "agents", ignore_errors=True)
        shutil.rmtree(self.logs, ignore_errors=True)
        self.logs.mkdir(parents=True)

    def _start_broker(self) -> None:
        port = self.o.mqtt_port or free_port()
        if port_open(port):
            raise DemoError(f"MQTT port {port} is already in use (choose another --mqtt-port)")
        child, self.mqtt_version = broker_child(self.o.broker_impl, self.dir, port)
        child.log_path = self.logs / child.log_path.name
        self.broker_name = child.name
        self.mqtt_url = f"mqtt://127.0.0.1:{port}"
        self.children.start(child)
        wait_until(lambda: port_open(port), 20, f"{child.name} on port {port}", child, self.stop)
        self.say(f"broker: {child.name} on {self.mqtt_url} (MQTT {self.mqtt_version})")

    def _import_registry(self, fleet: list[SimSchool]) -> None:
        registry = self.dir / "registry.csv"
        write_registry_file(registry, (s.school for s in fleet))
        db = str(self.dir / "demo.db")
        run_once(
            edugap_argv("schools", "import", str(registry), "--db", db),
            self.logs / "import.log",
            "importing the simulated registry",
        )
        self.say(f"registry: {len(fleet)} simulated schools imported from {registry}")

    def _start_collector(self) -> Child:
        args = ["serve", "--broker", self.mqtt_url, "--db", str(self.dir / "demo.db")]
        args += ["--listen", f"{self.o.host}:{self.o.port}", "--snapshot-interval", "5"]
        env = {**os.environ, "EDUGAP_BROKER_MQTT_VERSION": str(self.mqtt_version)}
        child = Child("edugap serve", edugap_argv(*args), self.logs / "serve.log", env=env)
        self.children.start(child)
        wait_until(
            lambda: _http_ok(f"{self.http_base}/readyz"), 60, "the collector", child, self.stop
        )
        self.say(f"collector: edugap serve on {self.http_base} (log {child.log_path})")
        return child

    def _publish(self, fleet: list[SimSchool]) -> PublishResult:
        settings = parse_broker_url(self.mqtt_url, mqtt_version=self.mqtt_version)
        messages = _until(self.stop, fleet_reports(fleet, Plan(now=plan_now()), seed=self.o.seed))

        def progress(r: PublishResult) -> None:
            self.say(f"  {r.sent} reports sent ({r.rate:.0f}/s)")

        with Publisher(settings, client_id="edugap-demo-simulator") as publisher:
            result = publisher.publish_all(messages, progress=progress, progress_every=5.0)
        self.say(
            f"fleet: published {result.sent} reports of {len(fleet)} schools "
            f"in {result.seconds:.1f}s"
        )
        return result

    def _start_agents(self, fleet: list[SimSchool]) -> list[str]:
        # Schools that never reported: the real agents visibly bring them into coverage.
        silent = [s.school.school_id for s in fleet if s.profile.monitoring == "never"]
        chosen = (silent or [s.school.school_id for s in fleet])[: self.o.agents]
        for n, school_id in enumerate(chosen, 1):
            home = self.dir / "agents" / f"agent-{n}"
            home.mkdir(parents=True, exist_ok=True)
            config = home / "agent.toml"
            config.write_text(
                agent_config(
                    school_id,
                    self.mqtt_url,
                    self.mqtt_version,
                    self.http_base,
                    home / "state",
                    datetime.now(UTC),
                ),
                encoding="utf-8",
            )
            argv = agent_argv("run", "--config", str(config))
            self.children.start(Child(f"agent {n}", argv, self.logs / f"agent-{n}.log"))
        if chosen:
            self.say(f"agents: {len(chosen)} real edugap-agent processes for {', '.join(chosen)}")
        return chosen

    def _wait_ingested(self, sent: int, reporting: int, collector: Child) -> Summary:
        """Until the collector stored what was published and a snapshot shows every school."""

        def stored() -> bool:
            try:
                text = _get(f"{self.http_base}/metrics?collector=1").decode()
            except OSError:
                return False  # busy or restarting: ask again
            done = 0.0
            for line in text.splitlines():
                if line.startswith("edugap_collector_messages_total{"):
                    done += float(line.rsplit(" ", 1)[1])
            return done >= sent

        wait_until(
            stored, self.o.ready_timeout, "the collector to store the fleet", collector, self.stop
        )
        summary: list[Summary] = []

        def covered() -> bool:
            try:
                s = summarise(_get_json(f"{self.http_base}/api/v1/provinces"))
            except (OSError, ValueError):
                return False  # 503 before the first snapshot, or busy
            summary[:] = [s]
            return s.heard_from >= reporting

        wait_until(covered, 60, "a snapshot with every simulated school", collector, self.stop)
        return summary[0]

    def urls(self) -> dict[str, str]:
        b = self.http_base
        return {
            "coverage page": f"{b}/",
            "metrics": f"{b}/metrics",
            "API": f"{b}/api/v1/schools",
            "shortage CSV": f"{b}/api/v1/shortages?format=csv",
        }

    def run(self) -> int:
        """Start everything, report, wait for the end; always stops every child."""
        o = self.o
        try:
            if port_open(o.port, o.host):
                raise DemoError(f"HTTP port {o.port} is already in use (choose another --port)")
            self._fresh_dir()
            fleet = build_fleet(o.schools, o.devices_per_school, seed=o.seed)
            self._start_broker()
            self._import_registry(fleet)
            collector = self._start_collector()
            result = self._publish(fleet)
            if self.stop.is_set():
                raise Interrupted("interrupted while publishing the fleet")
            self._start_agents(fleet)
            reporting = sum(1 for s in fleet if s.profile.monitoring != "never")
            summary = self._wait_ingested(result.sent, reporting, collector)
            self.say("")
            for name, url in self.urls().items():
                self.say(f"  {name:<14} {url}")
            self.say(f"  {'logs':<14} {self.logs}")
            self.say("")
            self.say(summary.text())
            self.say("")
            until = f"for {o.duration:g}s" if o.duration is not None else "until Ctrl-C"
            self.say(f"edugap demo is running {until}.")
            return self._watch()
        except Interrupted as e:
            self.say(f"edugap demo: {e}")
            return 130
        except DemoError as e:
            self.say(f"edugap demo: {e}")
            return 1
        finally:
            self.say("stopping the agents, the collector and the broker...")
            self.children.stop_all()
            self.say("stopped.")

    def _watch(self) -> int:
        deadline = None if self.o.duration is None else time.monotonic() + self.o.duration
        while not self.stop.is_set():
            if deadline is not None and time.monotonic() >= deadline:
                break
            dead = self.children.dead()
            if dead:
                child = dead[0]
                self.say(f"edugap demo: {child.name} exited; its log:\n{child.log_tail()}")
                return 1
            self.stop.wait(0.5)
        return 0


def _until(stop: threading.Event, messages: Iterable[Message]) -> Iterator[Message]:
    """The messages, ending early once `stop` is set (Ctrl-C while publishing)."""
    for message in messages:
        if stop.is_set():
            return
        yield message
