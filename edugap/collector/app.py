"""Wiring of `edugap serve`: store, ingest, snapshot refresher, metrics and the HTTP server.

Start order: policy (fails fast), store (fails fast), ingest (connects in the background and
keeps retrying), refresher (first snapshot at once), HTTP. Stop order is the reverse: uvicorn
handles SIGTERM/SIGINT and drains requests, then ingest stores and acknowledges what it holds,
then the store closes.
"""

from __future__ import annotations

import logging
import signal
import socket
import threading
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

import uvicorn
from starlette.applications import Starlette

from edugap.collector.collectors import CollectorRegistry, RegistryKeeper
from edugap.collector.config import CollectorConfig
from edugap.collector.ingest.consumer import Ingest
from edugap.collector.model import IngestStats, Store
from edugap.collector.policy.evaluate import evaluate
from edugap.collector.policy.rules import Policy, load_policy
from edugap.collector.policy.snapshots import SnapshotHolder, SnapshotRefresher
from edugap.collector.registry.outlines import OutlineError, load_outlines
from edugap.collector.serving.exposition import Exposition
from edugap.collector.serving.http import HttpDeps, build_app
from edugap.collector.serving.httpguard import (
    ACCEPT_BACKLOG,
    ConnectionGuard,
    connection_limit,
    raise_nofile_limit,
)
from edugap.collector.serving.speedtest import RateLimiter, speedtest_app
from edugap.collector.store import open_store, redact
from edugap.protocol.messages import utcnow

log = logging.getLogger(__name__)


class _Server(uvicorn.Server):
    """uvicorn's server, saying where it listens once the socket is bound."""

    async def startup(self, sockets: Any = None) -> None:
        await super().startup(sockets)
        if self.started and sockets:
            host, port = sockets[0].getsockname()[:2]
            log.info("listening on http://%s:%d", host, port)


class StartupError(RuntimeError):
    """The collector cannot start with these settings; the message says which and why."""


def _bind(c: CollectorConfig) -> socket.socket:
    """The listening socket for http.listen, or StartupError naming the key and the reason."""
    try:
        infos = socket.getaddrinfo(c.listen_host, c.listen_port, type=socket.SOCK_STREAM)
        family, kind, proto, _name, address = infos[0]
        sock = socket.socket(family, kind, proto)
    except OSError as e:
        raise StartupError(f"config key 'http.listen' has value {c.http_listen!r}: {e}") from e
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind(address)
        sock.listen(2048)
    except OSError as e:
        sock.close()
        raise StartupError(
            f"config key 'http.listen' has value {c.http_listen!r}: cannot listen: {e.strerror}"
        ) from e
    sock.set_inheritable(True)
    return sock


def _http_guard(c: CollectorConfig) -> ConnectionGuard:
    """The HTTP connection limit and timeouts, with the descriptor limit raised first."""
    nofile = raise_nofile_limit()
    limit = connection_limit(c.http_max_connections, nofile)
    if limit < c.http_max_connections:
        log.warning(
            "config key 'http.max_connections' has value %d: lowered to %d, as this process "
            "may open only %d files (raise LimitNOFILE / ulimit -n)",
            c.http_max_connections,
            limit,
            nofile,
        )
    return ConnectionGuard(limit, c.http_header_timeout_seconds, c.http_idle_timeout_seconds)


def _speedtest_limiter(c: CollectorConfig) -> RateLimiter | None:
    if c.speedtest_requests_per_minute == 0:
        return None
    return RateLimiter(c.speedtest_requests_per_minute, c.speedtest_burst)


@dataclass
class Parts:
    """Factories for each part; tests and benchmarks replace one, production uses these."""

    open_store: Callable[[str], Store] = open_store
    load_policy: Callable[[str | None], Policy] = load_policy
    evaluate: Callable[[Store, Policy, datetime], Any] = evaluate
    ingest: Callable[..., Ingest] = Ingest
    clock: Callable[[], datetime] = utcnow


class CollectorApp:
    """One running collector: call start(), then serve() (blocks until a signal), or stop()."""

    def __init__(self, config: CollectorConfig, parts: Parts | None = None) -> None:
        self.config = config
        self.parts = parts or Parts()
        self.stats = IngestStats()
        self.holder = SnapshotHolder()
        self.exposition = Exposition(self.holder, self.stats, clock=self.parts.clock,
                                     school_detail=config.metrics_school_detail)  # fmt: skip
        # render the metrics text on the refresher's thread, not on the first scrape
        self.holder.on_new(lambda _info: self.exposition.prepare())
        self.store: Store | None = None
        self.ingest: Ingest | None = None
        self.registry: RegistryKeeper | None = None
        self.refresher: SnapshotRefresher | None = None
        self.http: Starlette | None = None
        self.socket: socket.socket | None = None
        self.guard: ConnectionGuard | None = None

    def start(self) -> Starlette:
        """Open everything; raises StartupError naming the setting that is wrong."""
        c = self.config
        self.guard = _http_guard(c)
        self.exposition.http.guard = self.guard
        # bind first: a port in use stops the collector before it touches store or broker
        self.socket = _bind(c)
        try:
            policy = self.parts.load_policy(c.policy_file)
        except ValueError as e:
            raise StartupError(f"config key 'policy.file' has value {c.policy_file!r}: {e}") from e
        try:
            outlines = load_outlines(c.http_outlines)
        except OutlineError as e:
            key = f"config key 'http.outlines' has value {c.http_outlines!r}"
            raise StartupError(f"{key}: {e}") from e
        try:
            store = self.parts.open_store(c.db_url)
        except Exception as e:
            raise StartupError(
                f"config key 'db.url' has value {redact(c.db_url)!r}: cannot open the store: {e}"
            ) from e
        self.store = store
        log.info("store %s open", store.url)
        share = self._share_name(store)
        try:
            broker = c.broker_settings()
            client_id = c.client_id()
            self.ingest = self.parts.ingest(
                store,
                broker,
                group=share,
                shared=c.ingest_shared,
                client_id=client_id.value,
                batch_max=c.ingest_batch_max,
                batch_seconds=c.ingest_batch_seconds,
                max_future_skew_s=c.ingest_max_future_skew_seconds,
                clock=self.parts.clock,
                stats=self.stats,
            )
        except (OSError, ValueError) as e:  # ssl.SSLError is an OSError: a bad CA or key file
            raise StartupError(
                f"config key 'broker.url' has value {redact(c.broker_url)!r} "
                f"(ca_file {c.broker_ca_file!r}, cert_file {c.broker_cert_file!r}): "
                f"cannot set up the MQTT client: {e}"
            ) from e
        if isinstance(store, CollectorRegistry):
            self.registry = RegistryKeeper.for_this_process(
                store, group=c.ingest_group, name=c.ingest_name, shared=c.ingest_shared,
                client_id=client_id, broker=broker,
            )  # fmt: skip
            self.registry.start()
        self.ingest.start()
        log.info(
            "connecting to broker %s as collector %r of group %r (%s subscription, client id "
            "fingerprint %s)",
            broker.url,
            c.ingest_name,
            c.ingest_group,
            "shared" if c.ingest_shared else "own",
            client_id.fingerprint,
        )
        if not client_id.secret:
            local = broker.host in ("127.0.0.1", "::1", "localhost")
            log.log(
                logging.INFO if local else logging.WARNING,
                "the broker needs no password from this collector, so its client id is derived "
                "from nothing secret: any client of this broker could take over its session",
            )
        self.refresher = SnapshotRefresher(
            lambda now: self.parts.evaluate(store, policy, now),
            self.holder,
            c.snapshot_interval_seconds,
            prune=store.prune,
            retention=timedelta(days=c.db_retention_days),
            report_id_retention=timedelta(days=c.db_report_id_days),
            clock=self.parts.clock,
        )
        self.refresher.start()
        speedtest = speedtest_app(limiter=_speedtest_limiter(c))
        self.exposition.http.speedtest = speedtest
        self.http = build_app(
            HttpDeps(
                holder=self.holder,
                exposition=self.exposition,
                rejects=store,
                readiness=self.readiness,
                causes=self.causes,
                api_token=c.http_api_token,
                metrics_token=c.http_metrics_token,
                speedtest=speedtest,
                time_zone=policy.timezone,
                outlines=outlines,
            )
        )
        return self.http

    def _share_name(self, store: Store) -> str:
        """The group's $share name: unguessable, kept in the store for every collector of it."""
        group = self.config.ingest_group
        if not isinstance(store, CollectorRegistry):
            if self.config.ingest_shared:
                log.warning("store keeps no collector registry: sharing as $share/%s/", group)
            return group
        try:
            return store.share_name(group)
        except Exception as e:
            raise StartupError(
                f"config key 'db.url' has value {redact(self.config.db_url)!r}: cannot read the "
                f"group {group!r} from the store: {e}"
            ) from e

    def readiness(self) -> dict[str, bool]:
        """Store reachable, ingest connected and subscribed, the writer saving (no batch
        failing for longer than ingest.unready_after_seconds, room to write), first snapshot
        done."""
        store_ok = writer_ok = False
        if self.store is not None:
            try:
                self.store.recent_rejects(1)
                store_ok = True
            except Exception as e:
                log.warning("readiness: store %s unreachable: %s", self.store.url, e)
            why = self.store.unwritable()
            unsaved = self.ingest.unsaved_for() if self.ingest is not None else 0.0
            if why is None and unsaved > self.config.ingest_unready_after_seconds:
                why = f"a batch has not been saved for {unsaved:.0f} s"
            if why is not None:
                log.warning("readiness: writer not ready: %s", why)
            writer_ok = why is None
        return {
            "store": store_ok,
            "ingest": self.ingest is not None and self.ingest.ready(),
            "writer": writer_ok,
            "snapshot": self.holder.current is not None,
        }

    def causes(self) -> dict[str, str]:
        """Why a readiness check fails, where the collector knows: the broker's connection."""
        cause = self.ingest.cause if self.ingest is not None else None
        return {"ingest": str(cause)} if cause is not None else {}

    def serve(self) -> int:
        """Run the HTTP server until SIGTERM/SIGINT, then stop everything. Returns exit code."""
        app = self.http or self.start()
        guard = self.guard or _http_guard(self.config)
        server = _Server(
            uvicorn.Config(
                app,
                host=self.config.listen_host,
                port=self.config.listen_port,
                log_level="warning",
                # uvicorn's lines go through our handler (edugap.collector.safetext)
                log_config=None,
                access_log=False,
                lifespan="off",
                timeout_graceful_shutdown=10,
                http=guard.protocol(),  # the connection limit and the timeouts
                ws="none",
                timeout_keep_alive=guard.idle_timeout,
                backlog=ACCEPT_BACKLOG,
            )
        )
        received: list[int] = []
        if threading.current_thread() is threading.main_thread():
            # uvicorn re-raises the signal it caught once it has shut down; with the default
            # SIGTERM handler that would kill the process before ingest drains. Record it instead.
            for sig in (signal.SIGTERM, signal.SIGINT):
                signal.signal(sig, lambda signum, _frame: received.append(signum))
        try:
            server.run(sockets=[self.socket] if self.socket else None)
        finally:
            if received or server.should_exit:
                log.info("shutting down")
            self.stop()
        return 0 if server.started else 1

    def stop(self) -> None:
        """Stop the refresher, drain ingest, close the store. Safe to call twice."""
        if self.refresher is not None:
            self.refresher.stop()
            self.refresher = None
        if self.ingest is not None:
            log.info("stopping ingest: storing and acknowledging what is queued")
            self.ingest.stop()
            self.ingest = None
        if self.registry is not None:
            self.registry.stop()
            self.registry = None
        if self.store is not None:
            self.store.close()
            self.store = None
        if self.socket is not None:
            self.socket.close()
            self.socket = None
        log.info("collector stopped")
