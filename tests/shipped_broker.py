"""Mosquitto from the shipped deploy/mosquitto/mosquitto.conf, for tests that must hold for it.

Only what cannot work in a test is rewritten: file paths (into the test's directory), the two
listeners' ports (free ones on 127.0.0.1), the log (a file instead of syslog) and the user
(whoever runs the tests). TLS, the ACL, per-school passwords from make_credentials.py,
persistence, queue and packet limits are the shipped ones.

    with shipped_broker(tmp_path) as broker:
        agent = broker.settings("HN-A")            # TLS listener, school credentials
        collector = broker.settings("edugap-collector")  # private plain listener
        broker.restart()                           # SIGTERM and start: as `systemctl restart`
"""

from __future__ import annotations

import csv
import getpass
import signal
import subprocess
import sys
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from pathlib import Path

from edugap.protocol.mqtt import BrokerSettings
from tests import realparts

DEPLOY = Path(__file__).resolve().parents[1] / "deploy" / "mosquitto"
COLLECTOR_USER = "edugap-collector"
SCHOOLS = ("HN-A", "HN-B")


def make_certificates(where: Path) -> tuple[Path, Path, Path]:
    """A throwaway CA and a server certificate for 127.0.0.1 (ca.crt, server.crt, server.key)."""
    openssl = realparts.require_tool("openssl", "openssl")
    where.mkdir(parents=True, exist_ok=True)

    def run(*args: str) -> None:
        subprocess.run([openssl, *args], cwd=where, check=True, capture_output=True)

    run("req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2",
        "-subj", "/CN=edugap test CA", "-keyout", "ca.key", "-out", "ca.crt")  # fmt: skip
    run("req", "-newkey", "rsa:2048", "-nodes", "-subj", "/CN=127.0.0.1",
        "-keyout", "server.key", "-out", "server.csr")  # fmt: skip
    (where / "ext.cnf").write_text("subjectAltName=IP:127.0.0.1\n")
    run("x509", "-req", "-in", "server.csr", "-CA", "ca.crt", "-CAkey", "ca.key",
        "-CAcreateserial", "-days", "2", "-extfile", "ext.cnf", "-out", "server.crt")  # fmt: skip
    return where / "ca.crt", where / "server.crt", where / "server.key"


def make_credentials(
    where: Path, schools: Iterable[str], collectors: Iterable[str] = (COLLECTOR_USER,)
) -> tuple[dict[str, str], subprocess.CompletedProcess[str]]:
    """Run make_credentials.py as an operator would: ({user: password}, the finished run).

    Writes `where/schools.csv` (the registry), `where/passwd` and `where/credentials.csv`.
    """
    realparts.require_tool("mosquitto_passwd", "mosquitto")
    where.mkdir(parents=True, exist_ok=True)
    registry = where / "schools.csv"
    registry.write_text(
        "school_id,name\n" + "".join(f"{s},{s}\n" for s in schools), encoding="utf-8"
    )
    out = where / "credentials.csv"
    command = [sys.executable, str(DEPLOY / "make_credentials.py"), "--registry", str(registry),
               "--passwd", str(where / "passwd"), "--out", str(out)]  # fmt: skip
    for user in collectors:
        command += ["--collector", user]
    result = subprocess.run(command, capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    with out.open(encoding="utf-8") as f:
        return {row["username"]: row["password"] for row in csv.DictReader(f)}, result


def shipped_config(workdir: Path, passwd: Path, cert: Path, key: Path) -> tuple[str, int, int]:
    """The shipped config with paths, ports, log and user rewritten: (text, tls, plain port)."""
    tls_port, plain_port = realparts.free_port(), realparts.free_port()
    conf = (DEPLOY / "mosquitto.conf").read_text(encoding="utf-8")
    (workdir / "data").mkdir(parents=True, exist_ok=True)
    for old, new in {
        "/etc/mosquitto/edugap/passwd": str(passwd),
        "/etc/mosquitto/edugap/acl": str(DEPLOY / "acl"),
        "/etc/mosquitto/certs/server.crt": str(cert),
        "/etc/mosquitto/certs/server.key": str(key),
        "/var/lib/mosquitto/": f"{workdir / 'data'}/",
        "listener 8883": f"listener {tls_port} 127.0.0.1",
        "listener 1883 127.0.0.1": f"listener {plain_port} 127.0.0.1",
        "log_dest syslog": f"log_dest file {workdir / 'mosquitto.log'}",
    }.items():
        assert old in conf, f"{old} is no longer in the deploy config: update tests/shipped_broker"
        conf = conf.replace(old, new)
    # run as whoever runs the tests: as root, Mosquitto would otherwise switch to the user
    # `mosquitto`, who cannot read pytest's private temporary directory
    conf += f"user {getpass.getuser()}\n"
    return conf, tls_port, plain_port


class ShippedBroker:
    """One Mosquitto running the shipped config; stop/start keep ports and persistence."""

    def __init__(
        self,
        workdir: Path,
        schools: Iterable[str] = SCHOOLS,
        collectors: Iterable[str] = (COLLECTOR_USER,),
    ) -> None:
        exe = realparts.find_mosquitto()
        if exe is None:
            realparts.missing("mosquitto", "install the Debian package 'mosquitto'")
        self.exe = exe or "mosquitto"
        self.workdir = workdir
        workdir.mkdir(parents=True, exist_ok=True)
        self.collectors = set(collectors)
        self.users, _ = make_credentials(workdir / "credentials", schools, self.collectors)
        self.ca, cert, key = make_certificates(workdir / "certs")
        text, self.tls_port, self.plain_port = shipped_config(
            workdir, workdir / "credentials" / "passwd", cert, key
        )
        self.conf = workdir / "mosquitto.conf"
        self.conf.write_text(text, encoding="utf-8")
        self.log = workdir / "mosquitto.log"
        self.proc: subprocess.Popen[bytes] | None = None

    def settings(
        self, user: str, *, mqtt_version: int = 5, password: str | None = None
    ) -> BrokerSettings:
        """How `user` connects: collectors on the private plain listener, everyone else (the
        schools) over TLS on the agents' listener, as deploy/mosquitto/mosquitto.conf intends."""
        secret = self.users.get(user) if password is None else password
        if user in self.collectors:
            return BrokerSettings(port=self.plain_port, username=user, password=secret,
                                  mqtt_version=mqtt_version)  # fmt: skip
        return BrokerSettings(port=self.tls_port, tls=True, ca_file=str(self.ca), username=user,
                              password=secret, mqtt_version=mqtt_version)  # fmt: skip

    def url(self, user: str) -> str:
        """The broker URL (with credentials) `user` would configure."""
        s = self.settings(user)
        scheme = "mqtts" if s.tls else "mqtt"
        return f"{scheme}://{s.username}:{s.password}@127.0.0.1:{s.port}"

    def start(self) -> ShippedBroker:
        self.proc = subprocess.Popen(
            [self.exe, "-c", str(self.conf)], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE
        )
        try:
            realparts.wait_port(self.tls_port)
            realparts.wait_port(self.plain_port)
        except TimeoutError:
            self.kill()
            log = self.log.read_text() if self.log.exists() else ""
            raise RuntimeError(
                f"the shipped Mosquitto config did not start: {log[-2000:]}"
            ) from None
        return self

    def stop(self) -> None:
        """SIGTERM, as `systemctl stop mosquitto`: it writes its persistence file and exits."""
        realparts.end_process(self.proc)
        self._reap()

    def kill(self) -> None:
        """SIGKILL: a crash; whatever arrived since the last autosave is gone."""
        realparts.end_process(self.proc, signal.SIGKILL)
        self._reap()

    def restart(self) -> None:
        self.stop()
        self.start()

    def errors(self) -> str:
        """The error lines Mosquitto logged (empty when it was happy)."""
        if not self.log.exists():
            return ""
        return "\n".join(line for line in self.log.read_text().splitlines() if "Error" in line)

    def _reap(self) -> None:
        if self.proc is not None and self.proc.stderr is not None:
            self.proc.stderr.close()
        self.proc = None


@contextmanager
def shipped_broker(workdir: Path, **kwargs: Iterable[str]) -> Iterator[ShippedBroker]:
    """A started ShippedBroker, stopped at the end."""
    broker = ShippedBroker(workdir, **kwargs).start()
    try:
        yield broker
    finally:
        broker.stop()
