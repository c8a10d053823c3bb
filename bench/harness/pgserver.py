"""A private PostgreSQL server for a bench: its own data directory and port, so that a bench
may stop, crash and restart it without disturbing anyone else's database.

It runs the machine's PostgreSQL binaries (the newest /usr/lib/postgresql/<major>/bin, as
Debian installs them). PostgreSQL refuses to run as root, so when the bench runs as root the
server runs as the `postgres` user, in a directory given to that user.

    with PrivatePostgres() as pg:
        url = pg.create_database("edugap")
        pg.restart("immediate")     # a crash: committed transactions survive it
"""

from __future__ import annotations

import os
import pwd
import shutil
import signal
import subprocess
import tempfile
import time
from pathlib import Path
from types import TracebackType
from typing import Any, Literal

from .procs import free_port

# pg_ctl's shutdown modes and the signal each sends to the postmaster
MODES = {"smart": signal.SIGTERM, "fast": signal.SIGINT, "immediate": signal.SIGQUIT}
Mode = Literal["smart", "fast", "immediate"]


def postgres_bin() -> Path:
    """The newest /usr/lib/postgresql/<major>/bin that has `postgres` and `initdb`."""
    base = Path("/usr/lib/postgresql")
    found = sorted(
        (p for p in base.glob("*/bin") if (p / "postgres").exists() and (p / "initdb").exists()),
        key=lambda p: int(p.parent.name) if p.parent.name.isdigit() else 0,
    )
    if not found:
        raise SystemExit("no PostgreSQL server binaries in /usr/lib/postgresql/*/bin: install "
                         "the Debian package postgresql")  # fmt: skip
    return found[-1]


class PrivatePostgres:
    """One PostgreSQL server on 127.0.0.1 and a free port, trust authentication."""

    def __init__(self, port: int | None = None) -> None:
        self.bin = postgres_bin()
        # a directory of its own in the temporary directory: the server's user must reach it,
        # and a bench's own work directory is private to whoever runs the bench
        self.workdir = workdir = Path(tempfile.mkdtemp(prefix="edugap-bench-pg-"))
        self.data = workdir / "data"
        self.log = workdir / "postgres.log"
        self.port = port or free_port()
        self.proc: subprocess.Popen[bytes] | None = None
        self.restarts = 0
        # as root, run as `postgres`; otherwise as whoever runs the bench
        self.user = "postgres" if os.geteuid() == 0 else None
        if self.user:
            entry = pwd.getpwnam(self.user)
            os.chown(workdir, entry.pw_uid, entry.pw_gid)
        self._run([str(self.bin / "initdb"), "-D", str(self.data), "-U", "postgres",
                   "--auth=trust", "-E", "UTF8", "--locale=C.UTF-8"])  # fmt: skip

    @property
    def admin_url(self) -> str:
        return f"postgresql://postgres@127.0.0.1:{self.port}/postgres"

    def url(self, database: str) -> str:
        return f"postgresql://postgres@127.0.0.1:{self.port}/{database}"

    def _run(self, argv: list[str]) -> None:
        done = subprocess.run(argv, capture_output=True, text=True, user=self.user, check=False)
        if done.returncode != 0:
            raise RuntimeError(f"{argv[0]} failed: {done.stdout[-1000:]}{done.stderr[-1000:]}")

    def start(self) -> PrivatePostgres:
        """Start the server and wait until it takes connections."""
        with self.log.open("ab") as log:
            self.proc = subprocess.Popen(
                [str(self.bin / "postgres"), "-D", str(self.data), "-p", str(self.port),
                 "-c", "listen_addresses=127.0.0.1", "-c", f"unix_socket_directories={self.data}"],
                stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT,
                user=self.user, process_group=0,
            )  # fmt: skip
        self._wait_ready(60)
        return self

    def _wait_ready(self, timeout: float) -> None:
        import psycopg

        deadline = time.monotonic() + timeout
        while True:
            if self.proc is not None and self.proc.poll() is not None:
                raise RuntimeError(f"PostgreSQL exited: {self.log.read_text()[-2000:]}")
            try:
                with psycopg.connect(self.admin_url, connect_timeout=2):
                    return
            except psycopg.OperationalError:
                if time.monotonic() > deadline:
                    raise RuntimeError(
                        f"PostgreSQL not ready after {timeout:g}s: {self.log.read_text()[-2000:]}"
                    ) from None
                time.sleep(0.1)

    def stop(self, mode: Mode = "fast", timeout: float = 60.0) -> None:
        """Shut down as `pg_ctl stop -m mode` would; `immediate` is a crash (recovery at the
        next start replays the log: committed transactions survive)."""
        proc, self.proc = self.proc, None
        if proc is None or proc.poll() is not None:
            return
        proc.send_signal(MODES[mode])
        try:
            proc.wait(timeout)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()

    def restart(self, mode: Mode = "fast") -> None:
        self.stop(mode)
        self.start()
        self.restarts += 1

    def create_database(self, name: str) -> str:
        """A new, empty database; its URL."""
        import psycopg

        with psycopg.connect(self.admin_url, autocommit=True) as conn:
            conn.execute(f'CREATE DATABASE "{name}"')
        return self.url(name)

    def __enter__(self) -> PrivatePostgres:
        return self.start()

    def __exit__(self, *exc: type[BaseException] | BaseException | TracebackType | Any) -> None:
        self.stop("fast")
        shutil.rmtree(self.workdir, ignore_errors=True)
