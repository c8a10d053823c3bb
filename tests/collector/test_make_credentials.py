"""deploy/mosquitto/make_credentials.py against what an attacker or a careless admin leaves at its
output paths: a world-readable file, a symbolic link, a loose umask. Secrets must end up in a new
mode-600 file, never written through a link, never in a file that keeps a looser mode."""

from __future__ import annotations

import csv
import importlib.util
import io
import os
import subprocess
import sys
from pathlib import Path
from types import ModuleType

import pytest

from edugap.collector import safetext
from tests import realparts

SCRIPT = Path(__file__).resolve().parents[2] / "deploy" / "mosquitto" / "make_credentials.py"
NOBODY = 65534


def script() -> ModuleType:
    spec = importlib.util.spec_from_file_location("make_credentials", SCRIPT)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def run(tmp_path: Path, *extra: str) -> subprocess.CompletedProcess[str]:
    realparts.require_tool("mosquitto_passwd", "mosquitto")
    registry = tmp_path / "schools.csv"
    if not registry.exists():
        # "'-HN-3" is how edugap's own CSVs write an id that starts like a formula
        registry.write_text("school_id,name\nHN-1,A\nHN-2,B\n'-HN-3,C\n", encoding="utf-8")
    return subprocess.run(
        [sys.executable, str(SCRIPT), "--registry", str(registry), "--passwd",
         str(tmp_path / "passwd"), "--out", str(tmp_path / "out.csv"), *extra],
        capture_output=True, text=True, timeout=60,
        preexec_fn=lambda: os.umask(0),  # the loosest umask: modes must not depend on it
    )  # fmt: skip


def mode(path: Path) -> int:
    return path.lstat().st_mode & 0o777


def rows(path: Path) -> list[dict[str, str]]:
    return list(csv.DictReader(io.StringIO(path.read_text(encoding="utf-8"))))


def test_an_existing_world_readable_out_file_is_replaced_not_reused(tmp_path: Path) -> None:
    out = tmp_path / "out.csv"
    out.write_text("old,secrets\n")
    out.chmod(0o644)
    before = out.stat().st_ino
    done = run(tmp_path)
    assert done.returncode == 0, done.stderr
    assert mode(out) == 0o600
    assert out.stat().st_ino != before  # a new file, not the 644 one filled with passwords
    assert [r["username"] for r in rows(out)] == ["HN-1", "HN-2", "'-HN-3"]
    assert mode(tmp_path / "passwd") == 0o600
    assert not list(tmp_path.glob(".*.tmp"))


def test_a_symlink_at_out_is_replaced_and_its_target_untouched(tmp_path: Path) -> None:
    victim = tmp_path / "elsewhere" / "index.html"
    victim.parent.mkdir()
    victim.write_text("precious")
    victim.chmod(0o644)
    (tmp_path / "out.csv").symlink_to(victim)
    done = run(tmp_path)
    assert done.returncode == 0, done.stderr
    assert victim.read_text() == "precious" and mode(victim) == 0o644
    out = tmp_path / "out.csv"
    assert not out.is_symlink() and mode(out) == 0o600
    assert len(rows(out)) == 3


def test_an_existing_passwd_keeps_its_users_and_owner_and_loses_its_loose_mode(
    tmp_path: Path,
) -> None:
    passwd = tmp_path / "passwd"
    passwd.write_text("edugap-collector:$7$101$kept")  # no final newline
    passwd.chmod(0o644)
    if os.geteuid() == 0:
        os.chown(passwd, NOBODY, NOBODY)  # stands for the mosquitto user
    done = run(tmp_path, "--collector", "edugap-collector")
    assert done.returncode == 0, done.stderr
    lines = passwd.read_text().splitlines()
    assert lines[0] == "edugap-collector:$7$101$kept"
    assert [line.split(":")[0] for line in lines[1:]] == ["HN-1", "HN-2", "-HN-3"]
    assert mode(passwd) == 0o600
    if os.geteuid() == 0:
        assert (passwd.stat().st_uid, passwd.stat().st_gid) == (NOBODY, NOBODY)
    assert "edugap-collector" not in {r["username"] for r in rows(tmp_path / "out.csv")}


def test_a_symlink_at_passwd_is_refused_and_nothing_written(tmp_path: Path) -> None:
    target = tmp_path / "shadow"
    target.write_text("root:x\n")
    (tmp_path / "passwd").symlink_to(target)
    done = run(tmp_path)
    assert done.returncode != 0 and "symbolic link" in done.stderr
    assert target.read_text() == "root:x\n"
    assert not (tmp_path / "out.csv").exists()


def test_generated_passwords_never_start_like_a_formula(monkeypatch: pytest.MonkeyPatch) -> None:
    module = script()
    tokens = iter(["-starts-with-minus", "fine_token"])
    monkeypatch.setattr(module.secrets, "token_urlsafe", lambda n: next(tokens))
    assert module.new_password() == "fine_token"


def test_the_script_follows_the_projects_csv_rule() -> None:
    module = script()
    assert module.neutralise is safetext.neutralise  # one rule, not a copy of it
    assert module.FORMULA_PREFIXES == safetext.FORMULA_PREFIXES
    assert module.unneutralise("'-HN-3") == "-HN-3"


@pytest.mark.parametrize(
    ("data", "name"),
    [
        # Excel's "Unicode Text" on Vietnamese settings, with a header as people type it
        (" School_ID \tName\r\nHN-1\tTrường A\r\nHN-2\tB\r\n'-HN-3\tC\r\n".encode("utf-16"),
         "schools.txt"),
        ("\ufeffschool_id;name;lat\r\nHN-1;A;21,03\r\nHN-2;B;21,04\r\n'-HN-3;C;21\r\n"
         .encode(), "schools.csv"),
    ],
)  # fmt: skip
def test_the_registry_is_read_as_schools_import_reads_it(
    tmp_path: Path, data: bytes, name: str
) -> None:
    """The same reader as `edugap schools import`; the passwords come out one per LF line."""
    registry = tmp_path / name
    registry.write_bytes(data)
    done = run(tmp_path, "--registry", str(registry))
    assert done.returncode == 0, done.stderr
    text = (tmp_path / "out.csv").read_bytes()
    assert b"\r" not in text  # `cut -d, -f2` gives the bare password
    assert [r["username"] for r in rows(tmp_path / "out.csv")] == ["HN-1", "HN-2", "'-HN-3"]


def test_the_script_runs_from_a_source_tree_without_edugap_installed(tmp_path: Path) -> None:
    realparts.require_tool("mosquitto_passwd", "mosquitto")
    registry = tmp_path / "schools.csv"
    registry.write_text("school_id\nHN-1\n", encoding="utf-8")
    env = {"PATH": os.environ["PATH"], "PYTHONNOUSERSITE": "1"}
    done = subprocess.run(
        ["/usr/bin/python3", "-S", str(SCRIPT), "--registry", str(registry), "--passwd",
         str(tmp_path / "passwd"), "--out", str(tmp_path / "out.csv")],
        capture_output=True, text=True, timeout=60, env=env, cwd=tmp_path,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert [r["username"] for r in rows(tmp_path / "out.csv")] == ["HN-1"]
