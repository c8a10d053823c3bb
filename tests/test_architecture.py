"""The tree follows the data path, and each package imports only what its docstring allows.

Every package that has rules declares them in its `__init__.py`: a docstring with a
"May import:" paragraph for the reader and a `MAY_IMPORT` tuple of `edugap` modules for this
test. A module may always import from its own package; anything else under `edugap` must
start with one of the allowed names. Imports inside functions count too.
"""

from __future__ import annotations

import ast
from collections.abc import Iterator
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PACKAGE = ROOT / "edugap"

# The packages that must declare their rules: the protocol, the agent, and every stage of the
# collector's data path (the composition root, CLI commands and the demo may import anything).
RULED = (
    "edugap.protocol",
    "edugap.agent",
    "edugap.collector.ingest",
    "edugap.collector.store",
    "edugap.collector.policy",
    "edugap.collector.serving",
    "edugap.collector.export",
    "edugap.collector.registry",
)
# Single modules at the collector's root that the stages share: types, the collector's identity,
# text safety and settings; none of them reaches into a stage.
RULED_MODULES = {
    "edugap.collector.model": ("edugap.protocol",),
    "edugap.collector.collectors": ("edugap.protocol",),
    "edugap.collector.safetext": ("edugap.protocol",),
    "edugap.collector.config": ("edugap.protocol", "edugap.collector.collectors"),
}
# The data path, in the order a report travels; docs/architecture.md follows it.
DATA_PATH = ("ingest", "store", "policy", "serving", "export")


def module_name(path: Path) -> str:
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def edugap_imports(path: Path) -> Iterator[tuple[int, str]]:
    """(line, module) of every import of an `edugap` module in the file, nested ones too."""
    tree = ast.parse(path.read_text(encoding="utf-8"))
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for alias in node.names:
                if alias.name.split(".")[0] == "edugap":
                    yield node.lineno, alias.name
        elif (
            isinstance(node, ast.ImportFrom)
            and node.level == 0
            and (node.module or "").split(".")[0] == "edugap"
        ):
            # `from edugap.x import y` may name a module y: judge the full name
            for alias in node.names:
                yield node.lineno, f"{node.module}.{alias.name}"


def declared(package: str) -> tuple[str, tuple[str, ...]]:
    """The package's docstring and its MAY_IMPORT tuple, read without importing it."""
    init = ROOT / package.replace(".", "/") / "__init__.py"
    tree = ast.parse(init.read_text(encoding="utf-8"))
    doc = ast.get_docstring(tree) or ""
    for node in tree.body:
        if (
            isinstance(node, ast.AnnAssign)
            and isinstance(node.target, ast.Name)
            and node.target.id == "MAY_IMPORT"
            and node.value is not None
        ):
            value = ast.literal_eval(node.value)
            assert isinstance(value, tuple)
            return doc, value
    raise AssertionError(f"{init} declares no MAY_IMPORT")


def allowed(name: str, own: str, may: tuple[str, ...]) -> bool:
    return any(name == p or name.startswith(p + ".") for p in (own, *may))


def violations(package: str, may: tuple[str, ...]) -> list[str]:
    found = []
    base = ROOT / package.replace(".", "/")
    files = [base.with_suffix(".py")] if base.with_suffix(".py").is_file() else base.rglob("*.py")
    for path in files:
        for line, name in edugap_imports(path):
            if not allowed(name, package, may):
                found.append(f"{path.relative_to(ROOT)}:{line} imports {name}")
    return found


@pytest.mark.parametrize("package", RULED)
def test_each_stage_imports_only_what_it_declares(package: str) -> None:
    doc, may = declared(package)
    assert "May import:" in doc, f"{package}'s docstring does not say what it may import"
    assert not violations(package, may)


@pytest.mark.parametrize("module", sorted(RULED_MODULES))
def test_shared_collector_modules_reach_into_no_stage(module: str) -> None:
    assert not violations(module, RULED_MODULES[module])


def test_nothing_in_the_pipeline_imports_the_demo_or_the_commands() -> None:
    for package in RULED:
        _, may = declared(package)
        for forbidden in ("edugap.collector.demo", "edugap.collector.commands"):
            assert not any(allowed(forbidden, "", (m,)) for m in may), (package, forbidden)


def test_the_protocol_depends_on_neither_program() -> None:
    _, may = declared("edugap.protocol")
    assert not [m for m in may if m.startswith(("edugap.agent", "edugap.collector"))]
    _, agent_may = declared("edugap.agent")
    assert not [m for m in agent_may if m.startswith("edugap.collector")]


def test_the_collector_tree_reads_in_data_path_order() -> None:
    collector = PACKAGE / "collector"
    stages = {p.name for p in collector.iterdir() if (p / "__init__.py").is_file()}
    assert set(DATA_PATH) <= stages
    assert {"registry", "demo", "commands"} <= stages
    architecture = (ROOT / "docs" / "architecture.md").read_text(encoding="utf-8")
    positions = [architecture.index(f"collector/{stage}/") for stage in DATA_PATH]
    assert positions == sorted(positions), "docs/architecture.md lists the stages out of order"


def test_the_rule_checker_sees_a_forbidden_import(tmp_path: Path) -> None:
    # the checker itself: a nested import of the demo from a stage is found
    probe = tmp_path / "probe.py"
    probe.write_text("def f():\n    from edugap.collector.demo import fleet\n")
    names = [name for _, name in edugap_imports(probe)]
    assert names == ["edugap.collector.demo.fleet"]
    assert not allowed(names[0], "edugap.collector.ingest", ("edugap.collector.model",))
