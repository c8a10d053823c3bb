"""Collector configuration: defaults, then a TOML file, then `EDUGAP_<SECTION>_<KEY>`, then CLI.

Every setting is declared once in SETTINGS; the file, the environment and the command line are
all checked against that table, and a bad value stops the collector at start with the key, the
value and where it came from named (starlette's `Config` is the model).
"""

from __future__ import annotations

import math
import os
import tomllib
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from edugap.collector.collectors import ClientId, client_id_for, default_name
from edugap.protocol.mqtt import BrokerSettings, BrokerUrlError, parse_broker_url
from edugap.protocol.redact import redact, remember

DEFAULT_DB_FILE = "edugap.db"


def default_db_url(environ: Mapping[str, str] | None = None) -> str:
    """The store every `edugap` command uses unless told otherwise: $EDUGAP_DB, else ./edugap.db."""
    env = os.environ if environ is None else environ
    return env.get("EDUGAP_DB") or DEFAULT_DB_FILE


class ConfigError(ValueError):
    """A setting that cannot be used; the message names the key, the value and its source."""


Value = str | int | float | bool | None


def _text(raw: object) -> str:
    if not isinstance(raw, str):
        raise ValueError("expected a string")
    return raw


def _optional_text(raw: object) -> str | None:
    text = _text(raw).strip()
    return text or None


def _int_at_least(minimum: int) -> Callable[[object], int]:
    def parse(raw: object) -> int:
        if isinstance(raw, bool):
            raise ValueError("expected an integer")
        if isinstance(raw, str):
            try:
                raw = int(raw.strip())
            except ValueError:
                raise ValueError("expected an integer") from None
        if not isinstance(raw, int):
            raise ValueError("expected an integer")
        if raw < minimum:
            raise ValueError(f"must be at least {minimum}")
        return raw

    return parse


def _bool(raw: object) -> bool:
    if isinstance(raw, bool):
        return raw
    if isinstance(raw, str) and raw.strip().lower() in ("true", "false", "1", "0", "yes", "no"):
        return raw.strip().lower() in ("true", "1", "yes")
    raise ValueError("expected true or false")


def _positive_float(raw: object) -> float:
    if isinstance(raw, bool):
        raise ValueError("expected a number")
    if isinstance(raw, str):
        try:
            raw = float(raw.strip())
        except ValueError:
            raise ValueError("expected a number") from None
    if not isinstance(raw, int | float):
        raise ValueError("expected a number")
    value = float(raw)
    if not math.isfinite(value) or value <= 0:
        raise ValueError("must be a positive number")
    return value


def _broker_url(raw: object) -> str:
    url = _text(raw).strip()
    try:
        parse_broker_url(url)
    except BrokerUrlError as e:
        raise ValueError(redact(str(e))) from None
    return url


def _listen(raw: object) -> str:
    text = _text(raw).strip()
    host, sep, port = text.rpartition(":")
    if not sep or not host or not port.isdigit() or not 0 <= int(port) <= 65535:
        raise ValueError("expected HOST:PORT, e.g. 127.0.0.1:8080")
    return text


def _mqtt_version(raw: object) -> int:
    value = _int_at_least(3)(raw)
    if value not in (3, 5):
        raise ValueError("must be 5 (MQTT 5) or 3 (MQTT 3.1.1)")
    return value


def _existing_file(raw: object) -> str | None:
    path = _optional_text(raw)
    if path is not None and not Path(path).is_file():
        raise ValueError("no such file")
    return path


def _client_id(raw: object) -> str:
    text = _text(raw).strip()
    if not text or len(text) > 128 or any(c in text for c in "/+#"):
        raise ValueError("must be 1 to 128 characters without '/', '+' or '#'")
    return text


def _optional_client_id(raw: object) -> str | None:
    return _client_id(raw) if _optional_text(raw) else None


def _group(raw: object) -> str:
    # the group becomes a level of $share/<group>/..., so the same rule as a topic level applies
    return _client_id(raw)


@dataclass(frozen=True, slots=True)
class Setting:
    """One configuration key: where it lives, how it is parsed, its default and its CLI flag."""

    section: str
    key: str
    parse: Callable[[object], Value]
    default: Value
    help: str
    cli: str | None = None
    secret: bool = False

    @property
    def name(self) -> str:
        return f"{self.section}.{self.key}"

    @property
    def env(self) -> str:
        return f"EDUGAP_{self.section}_{self.key}".upper()

    @property
    def dest(self) -> str:
        return f"{self.section}_{self.key}"


SETTINGS: tuple[Setting, ...] = (
    Setting("broker", "url", _broker_url, "mqtt://127.0.0.1:1883",
            "MQTT broker, mqtt://HOST:PORT or mqtts://USER:PASSWORD@HOST:PORT", "--broker",
            secret=True),
    Setting("broker", "ca_file", _existing_file, None,
            "CA certificate file that signed the broker's TLS certificate (mqtts://)", "--ca-file"),
    Setting("broker", "cert_file", _existing_file, None,
            "client certificate for TLS client authentication", "--cert-file"),
    Setting("broker", "key_file", _existing_file, None,
            "private key of the client certificate", "--key-file"),
    Setting("broker", "mqtt_version", _mqtt_version, 5, "5 (MQTT 5) or 3 (MQTT 3.1.1)"),
    Setting("ingest", "group", _group, "edugap",
            "the collectors that share one store; with ingest.shared they split the reports",
            "--group"),
    Setting("ingest", "shared", _bool, False,
            "true when several collectors of the group run at once (MQTT 5 shared subscription "
            "$share/<group>/...); false: this collector alone, on a subscription the broker keeps "
            "across its restarts"),
    Setting("ingest", "name", _optional_client_id, None,
            "this collector's name in its group (default: the host name); part of its client id",
            "--name"),
    Setting("ingest", "client_id", _optional_client_id, None,
            "MQTT client id; a secret (whoever knows it can take over the session). Default: "
            "derived from the broker password, group and name", "--client-id", secret=True),
    Setting("ingest", "batch_max", _int_at_least(1), 2000,
            "most reports written in one store transaction"),
    Setting("ingest", "batch_seconds", _positive_float, 0.2,
            "longest wait before a partial batch is written, in seconds"),
    Setting("ingest", "max_future_skew_seconds", _int_at_least(0), 600,
            "a measured_at further in the future than this is clamped to the receive time"),
    Setting("ingest", "unready_after_seconds", _positive_float, 30.0,
            "/readyz reports the writer not ready once a batch has kept failing to save for "
            "this many seconds"),
    Setting("db", "url", _text, None,
            "store: a SQLite file path, or postgresql://USER@HOST:PORT/DB "
            "(default: $EDUGAP_DB, else edugap.db in the current directory)", "--db",
            secret=True),
    Setting("db", "retention_days", _int_at_least(8), 400,
            "raw reports older than this many days are pruned (the policy needs 7)",
            "--retention-days"),
    Setting("db", "report_id_days", _int_at_least(1), 14,
            "report ids (duplicate detection) older than this many days are pruned; keep it "
            "above the broker's session expiry, within which redeliveries come"),
    Setting("http", "listen", _listen, "127.0.0.1:8080", "HOST:PORT of the HTTP server",
            "--listen"),
    Setting("http", "api_token", _optional_text, None,
            "bearer token required by /api/v1/* (empty: the API is open)", "--api-token",
            secret=True),
    Setting("http", "metrics_token", _optional_text, None,
            "bearer token required by /metrics (empty: open)", "--metrics-token", secret=True),
    Setting("http", "max_connections", _int_at_least(1), 1000,
            "most HTTP connections open at once; lowered at start to fit the descriptor limit"),
    Setting("http", "header_timeout_seconds", _positive_float, 10.0,
            "a client that has not sent a whole request head this long after connecting (or "
            "after the previous response), or stalls this long in a body, is disconnected"),
    Setting("http", "idle_timeout_seconds", _int_at_least(1), 5,
            "an idle keep-alive connection is closed after this many seconds"),
    Setting("http", "outlines", _existing_file, None,
            "GeoJSON of province or commune outlines for the coverage page's map (properties "
            "'province' and 'commune', names matched like the API's filters)", "--outlines"),
    Setting("speedtest", "requests_per_minute", _int_at_least(0), 60,
            "requests per minute one client address may make to /speedtest/ once its burst is "
            "spent (0: no limit)"),
    Setting("speedtest", "burst", _int_at_least(1), 120,
            "requests one client address may make to /speedtest/ at once (a test makes 14)"),
    Setting("policy", "file", _existing_file, None,
            "shortfall policy TOML (empty: the documented defaults)", "--policy"),
    Setting("snapshot", "interval_seconds", _positive_float, 60.0,
            "how often the policy is evaluated into a new snapshot", "--snapshot-interval"),
    Setting("metrics", "school_detail", _bool, False,
            "true: /metrics serves every per-school gauge and the shortfall kinds a school has not "
            "(about 24 series per school); false: at most 10 (docs/metrics.md)"),
)  # fmt: skip
SETTINGS_BY_NAME: dict[str, Setting] = {s.name: s for s in SETTINGS}


@dataclass(frozen=True, slots=True)
class CollectorConfig:
    """Every collector setting after defaults, file, environment and command line."""

    broker_url: str
    broker_ca_file: str | None
    broker_cert_file: str | None
    broker_key_file: str | None
    broker_mqtt_version: int
    ingest_group: str
    ingest_shared: bool
    ingest_name: str
    ingest_client_id: str | None
    ingest_batch_max: int
    ingest_batch_seconds: float
    ingest_max_future_skew_seconds: int
    ingest_unready_after_seconds: float
    db_url: str
    db_retention_days: int
    db_report_id_days: int
    http_listen: str
    http_api_token: str | None
    http_metrics_token: str | None
    http_max_connections: int
    http_header_timeout_seconds: float
    http_idle_timeout_seconds: int
    speedtest_requests_per_minute: int
    speedtest_burst: int
    policy_file: str | None
    snapshot_interval_seconds: float
    http_outlines: str | None = None
    metrics_school_detail: bool = False

    @property
    def listen_host(self) -> str:
        return self.http_listen.rpartition(":")[0].strip("[]")

    @property
    def listen_port(self) -> int:
        return int(self.http_listen.rpartition(":")[2])

    def client_id(self) -> ClientId:
        """This collector's MQTT client id: ingest.client_id, else derived (a secret)."""
        return client_id_for(
            self.broker_settings(), self.ingest_group, self.ingest_name, self.ingest_client_id
        )

    def broker_settings(self) -> BrokerSettings:
        """Broker settings from the URL plus the TLS files and protocol version."""
        return parse_broker_url(
            self.broker_url,
            ca_file=self.broker_ca_file,
            cert_file=self.broker_cert_file,
            key_file=self.broker_key_file,
            mqtt_version=self.broker_mqtt_version,
        )


def remember_secrets(config: CollectorConfig) -> None:
    """From here on, this process's messages and logs hide the configured passwords and tokens
    wherever they turn up (see edugap.protocol.redact); `edugap serve` calls it once at start."""
    for setting in SETTINGS:
        value = getattr(config, setting.dest)
        if setting.secret and isinstance(value, str):
            remember(value, whole=setting.key != "url")


def _parse(setting: Setting, raw: object, source: str) -> Value:
    try:
        return setting.parse(raw)
    except ValueError as e:
        shown: object = raw
        if setting.secret and isinstance(raw, str):
            # URLs keep everything but the password; tokens are hidden entirely
            shown = redact(raw) if setting.key == "url" else "***"
        raise ConfigError(
            f"config key '{setting.name}' has value {shown!r} ({source}): {e}"
        ) from None


def _from_file(path: str) -> dict[str, tuple[object, str]]:
    try:
        data = tomllib.loads(Path(path).read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise ConfigError(f"config file {path!r} does not exist") from None
    except (OSError, UnicodeDecodeError) as e:
        raise ConfigError(f"config file {path!r} cannot be read: {e}") from None
    except tomllib.TOMLDecodeError as e:
        raise ConfigError(f"config file {path!r} is not valid TOML: {e}") from None
    found: dict[str, tuple[object, str]] = {}
    for section, table in data.items():
        if not isinstance(table, dict):
            raise ConfigError(
                f"config key '{section}' in {path} has value {table!r}: expected a [section]"
            )
        for key, raw in table.items():
            name = f"{section}.{key}"
            if name not in SETTINGS_BY_NAME:
                known = ", ".join(SETTINGS_BY_NAME)
                raise ConfigError(f"config key '{name}' in {path} is unknown (known: {known})")
            found[name] = (raw, f"from {path}")
    return found


def load_config(
    path: str | None = None,
    environ: Mapping[str, str] | None = None,
    cli: Mapping[str, Any] | None = None,
) -> CollectorConfig:
    """Defaults < TOML file < environment < command line (`cli` maps dest names to values).

    `cli` values that are None mean "not given". Raises ConfigError naming the key and value.
    """
    env = os.environ if environ is None else environ
    given: dict[str, tuple[object, str]] = _from_file(path) if path else {}
    for setting in SETTINGS:
        if setting.env in env:
            given[setting.name] = (env[setting.env], f"from env {setting.env}")
        if cli is not None and cli.get(setting.dest) is not None:
            given[setting.name] = (cli[setting.dest], f"from option {setting.cli}")
    values: dict[str, Value] = {}
    for setting in SETTINGS:
        if setting.name in given:
            raw, source = given[setting.name]
            values[setting.dest] = _parse(setting, raw, source)
        else:
            values[setting.dest] = setting.default
    if values["ingest_name"] is None:
        values["ingest_name"] = _parse(SETTINGS_BY_NAME["ingest.name"], default_name(), "host name")
    if values["db_url"] is None:
        values["db_url"] = default_db_url(env)
    if not values["db_url"]:
        raise ConfigError("config key 'db.url' has value '': expected a file path or URL")
    config = CollectorConfig(**values)  # type: ignore[arg-type]
    if (config.broker_cert_file is None) != (config.broker_key_file is None):
        raise ConfigError(
            "config keys 'broker.cert_file' and 'broker.key_file' have values "
            f"{config.broker_cert_file!r} and {config.broker_key_file!r}: give both or neither"
        )
    return config
