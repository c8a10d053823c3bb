#!/usr/bin/env python3
"""Build the agent's offline bundle: one zip school IT carries on a USB stick.

    python3 deploy/agent/make_bundle.py --wheel dist/edugap-0.1.0-py3-none-any.whl --out dist

The zip holds the edugap wheel and every dependency as wheels for each platform and CPython
the agent supports (downloaded with `pip download --only-binary=:all: --platform ...`), both
install scripts (which install from these wheels with `--no-index`), the systemd unit, the
annotated example config, a README that says what the bundle covers and what it does not,
and SHA256SUMS. A platform whose dependencies cannot all be had as wheels is left out *and
named* in the README and on standard error, never dropped silently. Needs network to PyPI
(or the index pip is configured with) while building; the bundle needs none.
"""

from __future__ import annotations

import argparse
import hashlib
import re
import shutil
import subprocess
import sys
import tempfile
import zipfile
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

HERE = Path(__file__).resolve().parent
#: the CPython versions the agent supports (requires-python >= 3.11) and python.org offers
PYTHONS = ("3.11", "3.12", "3.13", "3.14")
#: platform name -> pip --platform tags
PLATFORMS = {
    "Windows x64": ("win_amd64",),
    "Windows x86 (32-bit)": ("win32",),
    "Linux x86_64": ("manylinux2014_x86_64",),
    "Linux aarch64": ("manylinux2014_aarch64",),
}
#: extra wheels per platform: Windows has no time-zone database for Python
EXTRAS = {"Windows x64": ("tzdata",), "Windows x86 (32-bit)": ("tzdata",)}
FILES = ("install.sh", "install.ps1", "edugap-agent.service", "edugap-agent.example.toml")


def download(wheel: Path, platform: str, python: str, dest: Path) -> str | None:
    """Wheels for one platform and Python into `dest`; None, or why they cannot all be had."""
    command = [sys.executable, "-m", "pip", "download", "--quiet", "--only-binary=:all:",
               "--implementation", "cp", "--python-version", python, "--dest", str(dest)]
    for tag in PLATFORMS[platform]:
        command += ["--platform", tag]
    command += [str(wheel), *EXTRAS.get(platform, ())]
    done = subprocess.run(command, capture_output=True, text=True, timeout=900)
    if done.returncode == 0:
        return None
    missing = re.search(r"No matching distribution found for (\S+)", done.stderr)
    if missing:
        return f"{missing.group(1)} publishes no wheel for it"
    return done.stderr.strip().splitlines()[-1] if done.stderr.strip() else "pip failed"


def readme(
    version: str, covered: dict[str, list[str]], gaps: dict[str, list[tuple[str, str]]]
) -> str:
    lines = [
        f"edugap agent {version}: offline bundle",
        "",
        "Everything needed to install the edugap school agent without Internet access:",
        "the edugap wheel and its dependencies (wheels/), install.sh (Linux, systemd),",
        "install.ps1 (Windows, a scheduled task), the systemd unit, the annotated example",
        "config (edugap-agent.example.toml) and SHA256SUMS (check: sha256sum -c SHA256SUMS).",
        "",
        "Linux, as root, in this folder (the password is asked for):",
        "    ./install.sh --school-id 79000001 --broker mqtts://mqtt.example:8883 \\",
        "        --ca-file ca.pem [--speed-tester]",
        "",
        "Windows, in an elevated PowerShell, in this folder:",
        "    powershell -ExecutionPolicy Bypass -File .\\install.ps1 -SchoolId 79000001 `",
        "        -Broker mqtts://mqtt.example:8883 -CaFile .\\ca.pem [-SpeedTester]",
        "",
        "Designate one computer per school as the speed tester (--speed-tester / -SpeedTester);",
        "the others send inventory and heartbeats only. Python 3.11 or newer must be installed",
        "(Windows: from python.org, 'for all users'). Full steps: docs/agent.md.",
        "",
        "Covered (CPython versions per platform):",
    ]
    lines += [f"    {name}: {', '.join(pythons)}" for name, pythons in covered.items() if pythons]
    if gaps:
        lines += ["", "NOT covered (these computers cannot install from this bundle):"]
        for name, why in gaps.items():
            reasons: dict[str, list[str]] = {}
            for python, reason in why:
                reasons.setdefault(reason, []).append(python)
            for reason, pythons in reasons.items():
                lines.append(f"    {name}, Python {', '.join(pythons)}: {reason}")
        if "Windows x86 (32-bit)" in gaps:
            lines.append("    (on 64-bit Windows, install the 64-bit Python from python.org)")
    return "\n".join(lines) + "\n"


def build(wheel: Path, out: Path) -> Path:
    """Build the bundle zip from the edugap wheel; returns its path."""
    version = wheel.name.split("-")[1]
    name = f"edugap-agent-{version}"
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp) / name
        wheels = root / "wheels"
        wheels.mkdir(parents=True)
        jobs = [(p, v) for p in PLATFORMS for v in PYTHONS]
        with ThreadPoolExecutor(max_workers=4) as pool:
            # one directory per job: pip must not see another job's half-written files
            results = list(pool.map(lambda job: _job(wheel, job, Path(tmp)), jobs))
        covered: dict[str, list[str]] = {p: [] for p in PLATFORMS}
        gaps: dict[str, list[tuple[str, str]]] = {}
        for (platform, python), (why, got) in zip(jobs, results, strict=True):
            if why is None:
                covered[platform].append(python)
                for f in got.iterdir():
                    shutil.copy2(f, wheels / f.name)
            else:
                gaps.setdefault(platform, []).append((python, why))
                print(f"make_bundle: NOT covered: {platform}, Python {python}: {why}",
                      file=sys.stderr)  # fmt: skip
        shutil.copy2(wheel, wheels / wheel.name)
        for file_name in FILES:
            shutil.copy2(HERE / file_name, root / file_name)
        (root / "README.txt").write_text(readme(version, covered, gaps), encoding="utf-8")
        sums = [
            f"{hashlib.sha256(f.read_bytes()).hexdigest()}  {f.relative_to(root).as_posix()}"
            for f in sorted(root.rglob("*"))
            if f.is_file()
        ]
        (root / "SHA256SUMS").write_text("\n".join(sums) + "\n", encoding="utf-8")
        out.mkdir(parents=True, exist_ok=True)
        target = out / f"{name}-offline.zip"
        with zipfile.ZipFile(target, "w", zipfile.ZIP_DEFLATED) as z:
            for p in sorted(root.rglob("*")):
                info = zipfile.ZipInfo.from_file(p, p.relative_to(root.parent).as_posix())
                if p.name == "install.sh":
                    info.external_attr = (0o100755 << 16)  # executable once unzipped
                if p.is_file():
                    z.writestr(info, p.read_bytes(), zipfile.ZIP_DEFLATED)
    return target


def _job(wheel: Path, job: tuple[str, str], tmp: Path) -> tuple[str | None, Path]:
    platform, python = job
    dest = tmp / "jobs" / f"{PLATFORMS[platform][0]}-{python}"
    dest.mkdir(parents=True)
    return download(wheel, platform, python, dest), dest


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--wheel", type=Path, required=True, help="the edugap wheel")
    parser.add_argument("--out", type=Path, default=Path("dist"), help="where the zip goes")
    args = parser.parse_args()
    if not args.wheel.is_file():
        parser.error(f"--wheel {args.wheel}: no such file (run 'make dist' first)")
    target = build(args.wheel, args.out)
    print(target)
    return 0


if __name__ == "__main__":
    sys.exit(main())
