"""Numbered SQL migrations per backend: `<backend>/NNNN_name.sql`, applied in order at start."""

from __future__ import annotations

from importlib import resources


def migrations(backend: str) -> list[tuple[int, str, str]]:
    """(version, name, sql) of every migration of `backend`, in version order."""
    found: list[tuple[int, str, str]] = []
    for entry in resources.files(__package__).joinpath(backend).iterdir():
        name = entry.name
        if not name.endswith(".sql"):
            continue
        number, _, _ = name.partition("_")
        found.append((int(number), name, entry.read_text(encoding="utf-8")))
    found.sort()
    versions = [v for v, _, _ in found]
    if len(set(versions)) != len(versions):
        raise RuntimeError(f"two {backend} migrations share a number: {[n for _, n, _ in found]}")
    return found


def statements(sql: str) -> list[str]:
    """Split a migration script into statements (our scripts have no ';' inside literals)."""
    lines = [line for line in sql.splitlines() if not line.strip().startswith("--")]
    return [s.strip() for s in "\n".join(lines).split(";") if s.strip()]
