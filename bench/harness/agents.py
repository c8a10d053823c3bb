"""Agent-like publishers: the agent's own Publisher and Drain over an in-memory outbox.

Each school is one MQTT connection with its own credentials, driven by
edugap.agent.publisher's `Publisher` and `Drain` the way the agent's service drives them: a
report leaves the queue only on a PUBACK that is neither a failure nor 0x10 "No matching
subscribers" (the drain then holds and probes); paho reconnects by itself and re-sends what
was in flight. Only the outbox differs: the agent keeps it in SQLite, here it lives in memory
(`MemoryOutbox`, the four methods the drain uses), so one process stands in for many schools at
thousands of reports a second. The agent's per-device drain rate limit is off for the same
reason: one connection here carries the reports of a whole school.

A bench runs `Fleet` in its own process, or several such processes via `publisher_process`
(the GIL would otherwise cap the rate): each generates reports at its rate until its stop file
appears, then drains what its outboxes hold and writes its counts as JSON.
"""

from __future__ import annotations

import bisect
import json
import logging
import queue
import random
import sys
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from edugap.agent.outbox import Row
from edugap.agent.probes import Identity
from edugap.agent.publisher import Drain, Event, Publisher
from edugap.protocol.messages import Report, encode, topic_for
from edugap.protocol.mqtt import BrokerSettings

from .procs import Child, python_child

log = logging.getLogger("harness.agents")
TICK = 0.01  # seconds between rounds of the driver thread


def device_of(school_id: str) -> str:
    """The one device of an agent-like school. Its MQTT client id is derived from it, as the
    agent's is, so it must differ between schools: a shared one would make the broker drop
    each connection for the next."""
    return f"{school_id.lower()}-pc"


class MemoryOutbox:
    """What `Drain` needs of the agent's outbox (pending, ack, hold, release), in memory."""

    def __init__(self) -> None:
        self.rows: dict[int, Row] = {}
        self._order: list[int] = []  # every seq ever added, ascending; acked ones skipped
        self._head = 0  # _order before this index is all acknowledged
        self._next = 1
        self.max_depth = 0
        self.holds = 0

    def add(self, report_id: str, topic: str, payload: bytes) -> int:
        seq = self._next
        self._next += 1
        self.rows[seq] = Row(seq, report_id, topic, payload)
        self._order.append(seq)
        self.max_depth = max(self.max_depth, len(self.rows))
        return seq

    def pending(self, after_seq: int = 0, limit: int = 20) -> list[Row]:
        out: list[Row] = []
        at = max(self._head, bisect.bisect_right(self._order, after_seq))
        while at < len(self._order) and len(out) < limit:
            row = self.rows.get(self._order[at])
            if row is not None:
                out.append(row)
            at += 1
        return out

    def ack(self, seqs: Iterable[int]) -> int:
        removed = sum(1 for s in seqs if self.rows.pop(s, None) is not None)
        while self._head < len(self._order) and self._order[self._head] not in self.rows:
            self._head += 1
        if self._head > 100_000:  # keep the index from growing with every report ever sent
            del self._order[: self._head]
            self._head = 0
        return removed

    def hold(self, retry_in: float) -> None:
        self.holds += 1

    def release(self) -> None:
        pass

    def depth(self) -> int:
        return len(self.rows)


@dataclass
class AgentLike:
    """One school's connection: the agent's Publisher and Drain, an outbox in memory."""

    school_id: str
    settings: BrokerSettings
    rng: random.Random
    max_inflight: int = 20
    events: queue.Queue[Any] = field(default_factory=queue.Queue)
    outbox: MemoryOutbox = field(default_factory=MemoryOutbox)
    sent: Counter[str] = field(default_factory=Counter)  # kind -> reports put in the outbox

    def __post_init__(self) -> None:
        identity = Identity(self.school_id, device_of(self.school_id), "bench")
        self.publisher = Publisher(self.settings, identity, self.events, reconnect=(1, 120),
                                   max_inflight=self.max_inflight, rng=self.rng)  # fmt: skip
        # duck-typed: a MemoryOutbox has every method of Outbox that Drain calls
        outbox: Any = self.outbox
        self.drain = Drain(outbox, self.publisher, max_inflight=self.max_inflight,
                           per_second=0.0, rng=self.rng)  # fmt: skip

    def put(self, report: Report) -> None:
        """A report into the outbox, as the agent's service does with each probe's result."""
        topic = topic_for(report.school_id, report.device_id, report.kind)
        self.outbox.add(report.report_id, topic, encode(report))
        self.sent[report.kind] += 1

    def put_raw(self, what: str, topic: str, payload: bytes) -> None:
        """Bytes that need not be a valid report (a test of the collector), counted as `what`."""
        self.outbox.add(what, topic, payload)
        self.sent[what] += 1

    def step(self) -> None:
        """Take the connection's news, hand rows to paho, drop what the broker acknowledged."""
        while True:
            try:
                event = self.events.get_nowait()
            except queue.Empty:
                break
            if not isinstance(event, Event):
                continue
            if event.kind == "published":
                self.drain.on_published(event.mid, event.ok, event.reason, event.code)
            elif event.kind == "connected":
                self.publisher.announce_online()
        self.drain.pump()
        self.drain.commit_acks()

    def counts(self) -> dict[str, Any]:
        return {
            "sent": dict(self.sent),
            "delivered": self.drain.delivered,
            "queued": self.outbox.depth(),
            "max_depth": self.outbox.max_depth,
            "held": self.drain.held,
            "failed": self.drain.failed,
        }


Make = Callable[[str, int, datetime], Report]  # (school, seq, now) -> the seq-th report


class Fleet:
    """Agent-like schools on one driver thread: each generates `rate` reports a second (built
    by `make`) until `stop_generating()`, and drains its outbox to the broker."""

    def __init__(self, agents: list[AgentLike], rate: float, make: Make) -> None:
        self.agents = agents
        self.rate = rate
        self.make = make
        self._calls: queue.SimpleQueue[Callable[[], None]] = queue.SimpleQueue()
        self._generating = threading.Event()
        self._stopping = threading.Event()
        self._thread = threading.Thread(target=self._run, name="fleet", daemon=True)
        self.started_at = 0.0
        self.generated_seconds = 0.0

    def start(self) -> Fleet:
        for agent in self.agents:
            agent.publisher.start()
        self._generating.set()
        self.started_at = time.monotonic()
        self._thread.start()
        return self

    def call(self, fn: Callable[[], None]) -> None:
        """Run fn on the driver thread (which owns the outboxes) at its next round."""
        self._calls.put(fn)

    def stop_generating(self) -> None:
        if self._generating.is_set():
            self.generated_seconds = time.monotonic() - self.started_at
        self._generating.clear()

    def depth(self) -> int:
        return sum(a.outbox.depth() for a in self.agents)

    def wait_drained(self, timeout: float) -> bool:
        """Wait until every outbox is empty (all acknowledged by the broker)."""
        deadline = time.monotonic() + timeout
        while self.depth() or not self._calls.empty():
            if time.monotonic() > deadline:
                return False
            time.sleep(0.1)
        return True

    def close(self) -> None:
        self._stopping.set()
        self._thread.join(30)
        for agent in self.agents:
            agent.publisher.stop()

    def counts(self) -> dict[str, Any]:
        return {
            "generated_seconds": self.generated_seconds,
            "schools": {a.school_id: a.counts() for a in self.agents},
        }

    def _run(self) -> None:
        made = [0] * len(self.agents)
        while not self._stopping.is_set():
            while True:
                try:
                    self._calls.get_nowait()()
                except queue.Empty:
                    break
            if self._generating.is_set() and self.rate > 0:
                due = int((time.monotonic() - self.started_at) * self.rate)
                now = datetime.now(UTC)
                for i, agent in enumerate(self.agents):
                    while made[i] < due:
                        made[i] += 1
                        agent.put(self.make(agent.school_id, made[i], now))
            for agent in self.agents:
                try:
                    agent.step()
                except Exception:
                    log.exception("school %s: the drain failed; going on", agent.school_id)
            time.sleep(TICK)


# --- in a process of its own ---------------------------------------------------------------


@dataclass
class FleetConfig:
    """What a publisher process needs (JSON on its command line)."""

    broker: dict[str, Any]  # BrokerSettings fields but the credentials
    schools: list[tuple[str, str]]  # (school id = user name, password)
    rate: float  # reports a second per school
    maker: str  # "module:function" making the seq-th report of a school: see `Make`
    stop_file: str
    result_file: str
    drain_seconds: float = 300.0
    seed: int = 1


def publisher_process(name: str, config: FleetConfig, workdir: Path) -> Child:
    """A Child running `run_fleet(config)` (not yet started); its log in workdir."""
    path = workdir / f"{name}.json"
    path.write_text(json.dumps(config.__dict__), encoding="utf-8")
    code = (
        "import sys; sys.path.insert(0, sys.argv[1]); from harness.agents import run_fleet; "
        "sys.exit(run_fleet(sys.argv[2]))"
    )
    bench = str(Path(__file__).resolve().parents[1])
    return python_child(name, code, [bench, str(path)], workdir / f"{name}.log")


def run_fleet(config_path: str) -> int:
    """A publisher process: generate until the stop file appears, drain, write the counts."""
    logging.basicConfig(level=logging.WARNING, stream=sys.stderr,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")  # fmt: skip
    config = FleetConfig(**json.loads(Path(config_path).read_text(encoding="utf-8")))
    module, function = config.maker.split(":")
    make: Make = getattr(__import__(module, fromlist=[function]), function)
    rng = random.Random(config.seed)
    agents = [
        AgentLike(school, BrokerSettings(**config.broker, username=school, password=password),
                  random.Random(rng.random()))
        for school, password in config.schools
    ]  # fmt: skip
    fleet = Fleet(agents, config.rate, make).start()
    stop = Path(config.stop_file)
    while not stop.exists():
        time.sleep(0.2)
    fleet.stop_generating()
    drained = fleet.wait_drained(config.drain_seconds)
    counts = fleet.counts()
    counts["drained"] = drained
    fleet.close()
    Path(config.result_file).write_text(json.dumps(counts), encoding="utf-8")
    return 0
