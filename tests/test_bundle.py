"""The agent's offline bundle as school IT gets it: built by deploy/agent/make_bundle.py (as
`make agent-bundle` does), unpacked, and installed by install.sh in a network namespace with no
network into a throwaway root; its Windows and Linux wheels resolve with pip for every
supported CPython. Windows itself cannot run here: its wheels are checked by `pip --platform`.
"""

from __future__ import annotations

import hashlib
import importlib.util
import os
import re
import shutil
import stat
import subprocess
import sys
import zipfile
from pathlib import Path
from types import ModuleType

import pytest

from tests import realparts
from tests.shipped_broker import make_certificates
from tests.test_packaging import edugap_wheel

ROOT = Path(__file__).resolve().parents[1]


def make_bundle_module() -> ModuleType:
    spec = importlib.util.spec_from_file_location(
        "make_bundle", ROOT / "deploy" / "agent" / "make_bundle.py"
    )
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


MAKE_BUNDLE = make_bundle_module()


def isolated_env(**extra: str) -> dict[str, str]:
    """No pip configuration of this machine (its find-links would hide a missing wheel)."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PIP_", "EDUGAP_AGENT_"))}
    env["PIP_CONFIG_FILE"] = os.devnull
    env.update(extra)
    return env


@pytest.fixture(scope="module")
def bundle(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The unpacked bundle directory (edugap-agent-VERSION/)."""
    wheel = edugap_wheel(tmp_path_factory)
    out = tmp_path_factory.mktemp("dist")
    archive = MAKE_BUNDLE.build(wheel, out)
    unpacked = tmp_path_factory.mktemp("usb-stick")
    with zipfile.ZipFile(archive) as z:
        z.extractall(unpacked)
    (root,) = unpacked.iterdir()
    if not any((root / "wheels").glob("msgspec-*")):
        realparts.missing("PyPI", "make_bundle.py could not download the dependencies' wheels")
    return root


def test_the_bundle_holds_the_installers_the_config_a_readme_and_true_sums(bundle: Path) -> None:
    for name in ("install.sh", "install.ps1", "edugap-agent.service",
                 "edugap-agent.example.toml", "README.txt", "SHA256SUMS"):  # fmt: skip
        assert (bundle / name).is_file(), name
    checked = 0
    for line in (bundle / "SHA256SUMS").read_text().splitlines():
        digest, name = line.split("  ", 1)
        assert hashlib.sha256((bundle / name).read_bytes()).hexdigest() == digest, name
        checked += 1
    assert checked == sum(1 for p in bundle.rglob("*") if p.is_file()) - 1  # all but itself
    readme = (bundle / "README.txt").read_text()
    for platform in ("Windows x64", "Linux x86_64", "Linux aarch64"):
        assert f"{platform}: {', '.join(MAKE_BUNDLE.PYTHONS)}" in readme
    # msgspec publishes no 32-bit Windows wheels: the README says so instead of staying silent
    assert "NOT covered" in readme and "Windows x86 (32-bit)" in readme and "msgspec" in readme


TARGETS = [("win_amd64", ("edugap", "tzdata")), ("manylinux2014_x86_64", ("edugap",)),
           ("manylinux2014_aarch64", ("edugap",))]  # fmt: skip


def dry_run(bundle: Path, platform: str, python: str, tmp: Path, *requirements: str) -> str:
    done = subprocess.run(
        [sys.executable, "-m", "pip", "install", "--dry-run", "--no-index", "--find-links",
         str(bundle / "wheels"), "--platform", platform, "--python-version", python,
         "--implementation", "cp", "--only-binary=:all:", "--target", str(tmp / "target"),
         *requirements],
        capture_output=True, text=True, env=isolated_env(), timeout=300,
    )  # fmt: skip
    return done.stdout + done.stderr if done.returncode else f"OK {done.stdout}"


@pytest.mark.parametrize("platform,requirements", TARGETS, ids=[t[0] for t in TARGETS])
def test_every_supported_python_resolves_offline_from_the_bundle(
    bundle: Path, tmp_path: Path, platform: str, requirements: tuple[str, ...]
) -> None:
    for python in MAKE_BUNDLE.PYTHONS:
        out = dry_run(bundle, platform, python, tmp_path, *requirements)
        assert out.startswith("OK") and "Would install" in out and "edugap-" in out, (
            f"{platform} Python {python}: {out[-800:]}"
        )


def test_32_bit_windows_is_not_resolvable_and_the_readme_says_so(
    bundle: Path, tmp_path: Path
) -> None:
    out = dry_run(bundle, "win32", "3.12", tmp_path, "edugap", "tzdata")
    assert not out.startswith("OK") and "No matching distribution" in out
    assert "Windows x86 (32-bit), Python 3.11, 3.12" in (bundle / "README.txt").read_text()


def throwaway_root(where: Path) -> Path:
    """A directory standing for /: the account files useradd --prefix edits."""
    etc = where / "etc"
    etc.mkdir(parents=True)
    for name in ("passwd", "group", "shadow", "gshadow", "login.defs"):
        if Path("/etc", name).exists():
            shutil.copy2(Path("/etc", name), etc / name)
    return where


def test_install_sh_from_the_bundle_with_no_network(bundle: Path, tmp_path: Path) -> None:
    unshare = realparts.require_tool("unshare", "util-linux")
    if subprocess.run([unshare, "-n", "true"], capture_output=True).returncode != 0:
        realparts.missing("network namespace", "unshare -n needs root (CAP_SYS_ADMIN)")
    realparts.require_tool("useradd", "passwd")
    root = throwaway_root(tmp_path / "root")
    ca, _, _ = make_certificates(tmp_path / "certs")
    password = tmp_path / "password"
    password.write_text("s3cret-from-a-file\n")
    # a systemctl stand-in, logging the calls the installer makes
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    calls = tmp_path / "systemctl.log"
    stand_in = bin_dir / "systemctl"
    stand_in.write_text(f'#!/bin/sh\necho "$@" >> {calls}\n')
    stand_in.chmod(stand_in.stat().st_mode | stat.S_IEXEC)
    env = isolated_env(PATH=f"{bin_dir}:{os.environ['PATH']}")

    done = subprocess.run(
        [unshare, "-n", "bash", str(bundle / "install.sh"), "--root", str(root),
         "--school-id", "79000001", "--broker", "mqtts://mqtt.edugap.example:8883",
         "--ca-file", str(ca), "--password-file", str(password), "--speed-tester"],
        capture_output=True, text=True, env=env, timeout=600, stdin=subprocess.DEVNULL,
    )  # fmt: skip
    assert done.returncode == 0, done.stdout + done.stderr
    assert "no network" in done.stdout
    assert "s3cret-from-a-file" not in done.stdout + done.stderr
    assert f"--root={root} enable edugap-agent.service" in calls.read_text()

    config = root / "etc" / "edugap" / "agent.toml"
    assert stat.S_IMODE(config.stat().st_mode) == 0o640
    agent = root / "opt" / "edugap-agent" / "bin" / "edugap-agent"
    check = subprocess.run([unshare, "-n", str(agent), "check-config", "--config", str(config)],
                           capture_output=True, text=True, env=env, timeout=120)  # fmt: skip
    assert check.returncode == 0, check.stdout + check.stderr
    assert "school 79000001, broker mqtts://79000001@mqtt.edugap.example:8883" in check.stdout
    assert "speed test(s) a day" in check.stdout  # designated: --speed-tester
    assert (root / "etc" / "systemd" / "system" / "edugap-agent.service").is_file()
    assert "edugap-agent:" in (root / "etc" / "passwd").read_text()


@pytest.mark.parametrize(
    "args,message",
    [
        (["--school-id"], "--school-id needs a value"),
        (["--school-id", "--broker", "mqtts://h:8883"], "--school-id needs a value"),
        (["--school-id", "bad id", "--broker", "mqtts://h:8883"], "1 to 64 letters"),
        (["--school-id", "79000001"], "--school-id needs --broker"),
        (["--school-id", "79000001", "--broker", "http://h"], "must look like mqtts://"),
        (["--password", "x"], "--password is not taken"),
        (["--ca-file", "ca.pem"], "need --school-id"),
        (["--bogus"], "unknown option '--bogus'"),
    ],
)
def test_install_sh_checks_its_arguments_first(args: list[str], message: str) -> None:
    done = subprocess.run(["bash", str(ROOT / "deploy" / "agent" / "install.sh"), *args],
                          capture_output=True, text=True, timeout=30)  # fmt: skip
    assert done.returncode == 2
    assert message in done.stderr
    assert "unbound variable" not in done.stderr


def test_install_ps1_stays_within_task_scheduler_limits_and_takes_no_password_argument() -> None:
    """PowerShell cannot run here (no pwsh from the package registries this machine reaches):
    what can be checked without it."""
    text = (ROOT / "deploy" / "agent" / "install.ps1").read_text()
    (count,) = re.findall(r"-RestartCount (\d+)", text)
    assert 1 <= int(count) <= 255  # RestartOnFailure/Count in the Task Scheduler schema
    params = text[text.index("param(") : text.index(")\n$ErrorActionPreference")]
    assert "[string]$Password " not in params and "$PasswordFile" in params
    assert "[switch]$SpeedTester" in params
    assert "--no-index" in text and "--find-links" in text
