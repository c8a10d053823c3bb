"""The built distribution: one import package (`edugap`), installable beside others.

Builds the wheel from this checkout, checks it with check-wheel-contents, installs it into a
fresh virtualenv next to another distribution that ships a top-level `agent` module (the
collision the old layout had), and installs it agent-only to see what `edugap` says there.
"""

from __future__ import annotations

import subprocess
import sys
import sysconfig
import textwrap
import zipfile
from pathlib import Path

import pytest

from tests import realparts

ROOT = Path(__file__).resolve().parents[1]


def run(*argv: str | Path, cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(a) for a in argv], cwd=cwd, capture_output=True, text=True, timeout=600
    )


def build_wheel(source: Path, out: Path) -> Path:
    done = run(sys.executable, "-m", "pip", "wheel", "--no-deps", "-q", "-w", out, source)
    if done.returncode != 0 and "Could not find a version" in done.stderr + done.stdout:
        realparts.missing("PyPI", f"cannot fetch the build backend: {done.stderr[-500:]}")
    assert done.returncode == 0, done.stdout + done.stderr
    return next(out.glob(f"{source.name.replace('-', '_')}*.whl"))


@pytest.fixture(scope="module")
def wheels(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """(edugap wheel, wheel of another distribution with a top-level `agent` module)."""
    out = tmp_path_factory.mktemp("wheels")
    other = tmp_path_factory.mktemp("src") / "other_agent"
    (other / "agent").mkdir(parents=True)
    (other / "agent" / "__init__.py").write_text('WHO = "other-agent"\n')
    (other / "pyproject.toml").write_text(
        textwrap.dedent(
            """\
            [build-system]
            requires = ["setuptools>=68"]
            build-backend = "setuptools.build_meta"
            [project]
            name = "other-agent"
            version = "1.0"
            [tool.setuptools]
            packages = ["agent"]
            """
        )
    )
    return edugap_wheel(tmp_path_factory), build_wheel(other, out)


def edugap_wheel(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The edugap wheel, built from a copy of the tracked files (so the checkout's build/ and
    egg-info stay out)."""
    edugap_dir = tmp_path_factory.mktemp("edugap-src") / "edugap"
    files = run("git", "ls-files", cwd=ROOT).stdout.split()
    for name in files:
        src = ROOT / name
        if src.is_file():
            dst = edugap_dir / name
            dst.parent.mkdir(parents=True, exist_ok=True)
            dst.write_bytes(src.read_bytes())
    return build_wheel(edugap_dir, tmp_path_factory.mktemp("edugap-wheel"))


def test_the_wheel_holds_only_the_edugap_package_and_its_license(wheels: tuple[Path, Path]) -> None:
    wheel, _ = wheels
    with zipfile.ZipFile(wheel) as z:
        names = z.namelist()
        metadata = z.read(next(n for n in names if n.endswith("METADATA"))).decode()
    top = {n.split("/")[0] for n in names if not n.split("/")[0].endswith(".dist-info")}
    assert top == {"edugap"}
    assert any(n.endswith(".dist-info/licenses/LICENSE") for n in names)
    for needed in ("License-Expression: Apache-2.0", "Classifier: ", "Keywords: ", "Project-URL: "):
        assert needed in metadata
    done = run(sys.executable, "-m", "check_wheel_contents", wheel)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "OK" in done.stdout


def fresh_venv(where: Path) -> Path:
    done = run(sys.executable, "-m", "venv", where)
    assert done.returncode == 0, done.stderr
    return where / "bin" / "python"


def test_installs_beside_a_distribution_with_a_top_level_agent_module(
    wheels: tuple[Path, Path], tmp_path: Path
) -> None:
    wheel, other = wheels
    python = fresh_venv(tmp_path / "venv")
    done = run(python, "-m", "pip", "install", "-q", "--no-deps", "--no-index", other, wheel)
    assert done.returncode == 0, done.stdout + done.stderr
    where = "import sysconfig; print(sysconfig.get_paths()['purelib'])"
    site = Path(run(python, "-c", where).stdout.strip())
    # the dependencies (paho, msgspec, psutil...) come from this test's environment: no network
    (site / "test-deps.pth").write_text(sysconfig.get_paths()["purelib"] + "\n")
    probe = (
        "import agent, edugap.agent.cli, edugap.collector.cli, edugap.protocol.messages; "
        "print(agent.WHO); print(edugap.agent.cli.__file__)"
    )
    done = run(python, "-c", probe, cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    who, agent_file = done.stdout.split()
    assert who == "other-agent"
    assert agent_file.startswith(str(site))
    assert not (site / "collector").exists()
    done = run(tmp_path / "venv" / "bin" / "edugap-agent", "--version", cwd=tmp_path)
    assert done.returncode == 0 and "edugap-agent" in done.stdout, done.stderr


def test_the_agent_only_install_says_how_to_get_the_collector(
    wheels: tuple[Path, Path], tmp_path: Path
) -> None:
    wheel, _ = wheels
    python = fresh_venv(tmp_path / "venv")
    done = run(python, "-m", "pip", "install", "-q", wheel)  # the agent's four dependencies only
    if done.returncode != 0:
        realparts.missing("PyPI", f"cannot install the agent's dependencies: {done.stderr[-500:]}")
    edugap = tmp_path / "venv" / "bin" / "edugap"
    done = run(edugap, "serve", cwd=tmp_path)
    assert done.returncode == 2
    assert "Traceback" not in done.stderr
    assert "pip install 'edugap[collector]'" in done.stderr
    assert "edugap-agent" in done.stderr
    assert run(tmp_path / "venv" / "bin" / "edugap-agent", "--help").returncode == 0
