"""Collector configuration: defaults, file < env < CLI, and errors that name key and value."""

from __future__ import annotations

import argparse
import socket
from pathlib import Path

import pytest

from edugap.collector.commands import serve
from edugap.collector.config import SETTINGS, ConfigError, default_db_url, load_config


def write(tmp_path: Path, text: str) -> str:
    path = tmp_path / "collector.toml"
    path.write_text(text, encoding="utf-8")
    return str(path)


def serve_args(*argv: str) -> dict[str, object]:
    """Parse `edugap serve ARGV` with the real parser; returns the namespace as a dict."""
    parser = argparse.ArgumentParser()
    serve.register(parser.add_subparsers())
    return vars(parser.parse_args(["serve", *argv]))


def test_defaults() -> None:
    c = load_config(None, environ={}, cli=None)
    assert c.broker_url == "mqtt://127.0.0.1:1883"
    assert c.http_listen == "127.0.0.1:8080"
    assert (c.listen_host, c.listen_port) == ("127.0.0.1", 8080)
    assert c.db_url == "edugap.db"
    assert c.ingest_group == "edugap"
    assert c.ingest_shared is False and c.ingest_client_id is None
    assert c.snapshot_interval_seconds == 60.0
    assert c.http_api_token is None


def test_default_db_follows_edugap_db() -> None:
    assert default_db_url({}) == "edugap.db"
    assert default_db_url({"EDUGAP_DB": "/srv/edugap.db"}) == "/srv/edugap.db"
    assert load_config(None, environ={"EDUGAP_DB": "/srv/x.db"}).db_url == "/srv/x.db"
    # the sectioned variable wins over the shared one
    env = {"EDUGAP_DB": "/srv/x.db", "EDUGAP_DB_URL": "postgresql://pg/edugap"}
    assert load_config(None, environ=env).db_url == "postgresql://pg/edugap"


def test_file_then_env_then_cli(tmp_path: Path) -> None:
    path = write(tmp_path, """
[broker]
url = "mqtt://file-broker:1883"
[http]
listen = "0.0.0.0:9000"
api_token = "from-file"
[snapshot]
interval_seconds = 30
""")  # fmt: skip
    from_file = load_config(path, environ={})
    assert from_file.broker_url == "mqtt://file-broker:1883"
    assert from_file.http_listen == "0.0.0.0:9000"
    assert from_file.snapshot_interval_seconds == 30.0

    env = {"EDUGAP_BROKER_URL": "mqtt://env-broker:1883", "EDUGAP_HTTP_LISTEN": "127.0.0.1:9100"}
    from_env = load_config(path, environ=env)
    assert from_env.broker_url == "mqtt://env-broker:1883"
    assert from_env.http_listen == "127.0.0.1:9100"
    assert from_env.http_api_token == "from-file"  # untouched keys keep the file's value

    cli = serve_args("--broker", "mqtts://u:p@cli-broker:8883", "--snapshot-interval", "5")
    from_cli = load_config(path, environ=env, cli=cli)
    assert from_cli.broker_url == "mqtts://u:p@cli-broker:8883"
    assert from_cli.snapshot_interval_seconds == 5.0
    assert from_cli.http_listen == "127.0.0.1:9100"  # env still applies where CLI is silent
    settings = from_cli.broker_settings()
    assert (settings.host, settings.port, settings.tls, settings.username) == (
        "cli-broker", 8883, True, "u",
    )  # fmt: skip


@pytest.mark.parametrize(
    ("key", "value", "why"),
    [
        ("broker.url", "http://broker:1883", "mqtt://"),
        ("broker.url", "mqtt://", "no host"),
        ("broker.mqtt_version", "4", "5"),
        ("broker.ca_file", "/nonexistent/ca.pem", "no such file"),
        ("ingest.group", "a/b", "'/'"),
        ("ingest.name", "a+b", "'+'"),
        ("ingest.shared", "maybe", "true or false"),
        ("ingest.batch_max", "0", "at least 1"),
        ("ingest.batch_seconds", "-1", "positive"),
        ("ingest.max_future_skew_seconds", "soon", "integer"),
        ("db.retention_days", "3", "at least 8"),
        ("db.report_id_days", "0", "at least 1"),
        ("http.listen", "8080", "HOST:PORT"),
        ("http.listen", "localhost:99999", "HOST:PORT"),
        ("policy.file", "/nonexistent/policy.toml", "no such file"),
        ("snapshot.interval_seconds", "0", "positive"),
        ("snapshot.interval_seconds", "nan", "positive"),
    ],
)
def test_bad_value_names_key_and_value_from_env(key: str, value: str, why: str) -> None:
    section, name = key.split(".")
    env_name = f"EDUGAP_{section}_{name}".upper()
    with pytest.raises(ConfigError) as err:
        load_config(None, environ={env_name: value})
    message = str(err.value)
    assert f"'{key}'" in message and repr(value) in message and why in message
    assert env_name in message  # says where the value came from


@pytest.mark.parametrize("setting", [s for s in SETTINGS if s.cli], ids=lambda s: s.name)
def test_every_cli_option_maps_to_its_key(setting: object, tmp_path: Path) -> None:
    good = {
        "broker.url": "mqtt://h:1", "broker.ca_file": write(tmp_path, ""),
        "db.url": "x.db", "db.retention_days": "30", "http.listen": "127.0.0.1:1",
        "policy.file": write(tmp_path, ""), "snapshot.interval_seconds": "2",
        "http.outlines": write(tmp_path, ""),
    }  # fmt: skip
    s = setting
    raw = good.get(s.name, "value")  # type: ignore[attr-defined]
    if s.name in ("broker.cert_file", "broker.key_file"):  # type: ignore[attr-defined]
        cli = serve_args("--cert-file", raw := write(tmp_path, ""), "--key-file", raw)
    else:
        cli = serve_args(s.cli, raw)  # type: ignore[attr-defined]
    config = load_config(None, environ={}, cli=cli)
    assert str(getattr(config, s.dest)).startswith(raw.split(":")[0])  # type: ignore[attr-defined]


def test_bad_cli_value_names_the_option(tmp_path: Path) -> None:
    with pytest.raises(
        ConfigError, match=r"'http.listen' has value 'nowhere' \(from option --listen\)"
    ):
        load_config(None, environ={}, cli=serve_args("--listen", "nowhere"))


def test_secrets_are_not_echoed() -> None:
    with pytest.raises(ConfigError) as err:
        load_config(None, environ={"EDUGAP_BROKER_URL": "http://user:hunter2@b"})
    assert "hunter2" not in str(err.value) and "'broker.url'" in str(err.value)
    with pytest.raises(ConfigError) as err:
        load_config(None, environ={"EDUGAP_INGEST_CLIENT_ID": "my-secret/id"})
    assert "my-secret" not in str(err.value) and "'ingest.client_id'" in str(err.value)


def test_the_client_id_is_derived_from_the_password_unless_given() -> None:
    def client_id(**env: str) -> str:
        environ = {"EDUGAP_BROKER_URL": "mqtt://edugap-collector:pw1@b:1883", **env}
        return load_config(None, environ=environ).client_id().value

    first = client_id(EDUGAP_INGEST_NAME="c1")
    assert first == client_id(EDUGAP_INGEST_NAME="c1"), "stable across restarts"
    assert "pw1" not in first and "c1" not in first and "edugap-collector" not in first
    others = {
        client_id(EDUGAP_INGEST_NAME="c2"),
        client_id(EDUGAP_INGEST_NAME="c1", EDUGAP_INGEST_GROUP="other"),
        client_id(EDUGAP_INGEST_NAME="c1", EDUGAP_BROKER_URL="mqtt://edugap-collector:pw2@b"),
    }
    assert first not in others and len(others) == 3
    assert client_id(EDUGAP_INGEST_CLIENT_ID="chosen") == "chosen"
    assert load_config(None, environ={}).ingest_name == socket.gethostname()
    assert not load_config(None, environ={}).client_id().secret  # no password: says so


@pytest.mark.parametrize(
    ("text", "named"),
    [
        ("[http]\nlisten = 8080\n", "'http.listen' has value 8080"),
        ("[http]\nport = 8080\n", "'http.port'"),  # unknown key
        ("[htp]\nlisten = '1:2'\n", "'htp.listen'"),
        ("listen = '1:2'\n", "'listen'"),  # not in a section
        ("[http\n", "not valid TOML"),
        ("[ingest]\nbatch_max = true\n", "'ingest.batch_max' has value True"),
    ],
)
def test_bad_file_names_the_key(tmp_path: Path, text: str, named: str) -> None:
    with pytest.raises(ConfigError) as err:
        load_config(write(tmp_path, text), environ={})
    assert named in str(err.value)
    assert "collector.toml" in str(err.value)


def test_missing_config_file() -> None:
    with pytest.raises(ConfigError, match="does not exist"):
        load_config("/nonexistent/collector.toml", environ={})


def test_cert_without_key_is_refused(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"broker\.cert_file"):
        load_config(None, environ={"EDUGAP_BROKER_CERT_FILE": write(tmp_path, "")})
