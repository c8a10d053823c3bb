"""Passwords stay out of messages in every form a URL or a connection string can carry them."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import psycopg
import pytest

from edugap.agent.config import ConfigError, load
from edugap.protocol.redact import redact, remember, secrets_in

# (text, the secret that must not survive, a part that must survive)
FORMS = [
    ("postgresql://edugap:Hunter2x@db.example.vn:5432/edugap", "Hunter2x", "db.example.vn:5432"),
    ("mqtts://79-THPT-0123:Zq9-xY_w@mqtt.example.vn:8883", "Zq9-xY_w", "79-THPT-0123"),
    # percent-encoded, in both its written and decoded form
    ("postgresql://u:p%40ss%2Fw%3Fd@h/db", "p%40ss", "@h/db"),
    # an '@', '/' and '?' that should have been encoded
    ("postgresql://u:p@ss/w?rd@h:5432/db", "ss/w?rd", "h:5432/db"),
    ("postgresql://u@h/db?password=Hunter2x&sslmode=require", "Hunter2x", "postgresql://u@h/db"),
    ("postgresql://u@h/db?sslmode=require&PassWord=Hunter2x", "Hunter2x", "sslmode=require"),
    ("postgresql://u@h/db?sslpassword=Hunter2x", "Hunter2x", "postgresql://u@h/db"),
    # a percent-encoded key: libpq decodes it, so must we
    ("postgresql://u@h/db?pass%77ord=Hunter2x", "Hunter2x", "postgresql://u@h/db"),
    ("postgresql://u@h/db?pass%2Dword=Hunter2x", "Hunter2x", "postgresql://u@h/db"),
    # libpq key=value, plain and quoted with an escaped quote
    ("host=h user=u password=Hunter2x dbname=edugap", "Hunter2x", "dbname=edugap"),
    ("host=h password = 'Hun ter\\'2x' dbname=edugap", "ter\\'2x", "dbname=edugap"),
    # inside an error message, quoted by repr()
    ("cannot open 'postgresql://u:Hunter2x@h/db': refused", "Hunter2x", ": refused"),
    ('broker URL "mqtt://u:it\'s@h" has no port', "it's", "has no port"),
    ("GET /x?token=Hunter2x HTTP/1.1", "Hunter2x", "HTTP/1.1"),
]


@pytest.mark.parametrize(("text", "secret", "kept"), FORMS)
def test_every_form_of_a_password_is_hidden(text: str, secret: str, kept: str) -> None:
    shown = redact(text)
    assert secret not in shown
    assert "***" in shown
    assert kept in shown


def test_percent_encoded_password_is_hidden_decoded_too() -> None:
    url = "postgresql://u:p%40ss%20word%21@h/db"
    assert secrets_in(url) >= {"p%40ss%20word%21", "p@ss word!"}
    remember(url)
    assert "p@ss word!" not in redact("libpq said: bad password 'p@ss word!'")


@pytest.mark.parametrize(
    "text",
    [
        "mqtt://127.0.0.1:1883",
        "postgresql://postgres@127.0.0.1:5432/postgres",
        "sqlite:////var/lib/edugap/edugap.db",
        "school_id=HN-A commune=Phường Ba Đình",
        "snapshot of 60000 schools in 4.2 s",
    ],
)
def test_text_without_a_password_is_unchanged(text: str) -> None:
    assert redact(text) == text


def test_a_secret_libpq_quotes_without_its_key_is_hidden_once_remembered() -> None:
    url = "postgresql://edugap:Sekret word@127.0.0.1:1/x"
    with pytest.raises(psycopg.Error) as caught:
        psycopg.connect(url, connect_timeout=2)
    message = str(caught.value)
    assert "Sekret word" in message  # libpq quotes the bad part, no key, no URL around it
    remember(url)
    assert "Sekret" not in redact(message)


def test_libpq_echoing_a_whole_bad_uri_is_hidden() -> None:
    with pytest.raises(psycopg.Error) as caught:
        psycopg.connect("postgresql://u:Unsaid9x@[::1", connect_timeout=2)
    assert "Unsaid9x" in str(caught.value)
    assert "Unsaid9x" not in redact(str(caught.value))


def test_short_remembered_secrets_do_not_garble_text() -> None:
    remember("edugap", whole=True)  # a weak password must not hide the program's name
    assert redact("edugap serve: listening") == "edugap serve: listening"


def test_agent_config_errors_hide_the_broker_password(tmp_path: Path) -> None:
    config = tmp_path / "agent.toml"
    config.write_text(
        '[school]\nschool_id = "HN-A"\n[broker]\nurl = "mqtts://HN-A:Hunter2x@"\npassword = 42\n',
        encoding="utf-8",
    )
    with pytest.raises(ConfigError) as caught:
        load(config)
    assert "Hunter2x" not in str(caught.value)
    assert "42" not in str(caught.value)
    assert "broker.url" in str(caught.value) and "broker.password" in str(caught.value)


def _serve(*args: str) -> str:
    done = subprocess.run(
        [sys.executable, "-m", "edugap.collector.cli", "serve", "--listen", "127.0.0.1:0", *args],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 2, done.stdout + done.stderr
    return done.stdout + done.stderr


@pytest.mark.parametrize(
    "db",
    [
        "postgresql://edugap:Hunter2x@127.0.0.1:1/edugap",
        "postgresql://edugap:Hun%40ter2x@127.0.0.1:1/edugap",
        "postgresql://edugap@127.0.0.1:1/edugap?password=Hunter2x",
        "postgresql://edugap@127.0.0.1:1/edugap?pass%77ord=Hunter2x",
        "postgresql://edugap:Hunter2x words@127.0.0.1:1/edugap",
        "postgresql://edugap:Hunter2x@[::1",
    ],
)
def test_edugap_serve_never_prints_the_store_password(db: str) -> None:
    output = _serve("--db", db)
    assert "cannot open the store" in output
    for secret in ("Hunter2x", "Hun%40ter2x", "Hun@ter2x"):
        assert secret not in output


def test_edugap_serve_never_prints_the_broker_password() -> None:
    output = _serve("--broker", "mqtts://edugap-collector:Hunter2x@")
    assert "broker.url" in output and "Hunter2x" not in output


def test_edugap_rejects_never_prints_the_store_password() -> None:
    done = subprocess.run(
        [sys.executable, "-m", "edugap.collector.cli", "rejects", "--db",
         "postgresql://edugap@127.0.0.1:1/edugap?password=Hunter2x"],
        capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert done.returncode == 2
    assert "Hunter2x" not in done.stdout + done.stderr
