"""Which schools a shortage list holds: the filters, place matching, and saying when a filter
names a place nobody knows (rather than answering with an empty list)."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, fields
from typing import Protocol, TypeVar

from edugap.collector.model import (
    CONNECTIVITY_CLASSES,
    MONITORING_STATES,
    NEEDS,
    SHORTFALL_KINDS,
    SchoolStatus,
    Snapshot,
)
from edugap.collector.registry.places import Places, default_places, key, province_key, suggest

KIND_ANY = "any"  # filter: at least one shortfall


class ExportError(ValueError):
    """An unknown format or filter value; the message names it and the accepted values."""


class UnknownPlace(ExportError):
    """A filter names a province, commune or level that no school and no official list has;
    the message suggests the closest known names. (The API answers 404 with it.)"""


@dataclass(frozen=True, slots=True)
class Filters:
    """Which schools to export; None matches everything."""

    province: str | None = None
    commune: str | None = None
    level: str | None = None
    kind: str | None = None  # a SHORTFALL_KINDS member, or "any"
    need: str | None = None  # a NEEDS member: "measured" is the budget list
    connectivity: str | None = None  # a CONNECTIVITY_CLASSES member
    monitoring: str | None = None  # a MONITORING_STATES member

    def describe(self) -> str:
        """The filters as a planner gave them: "province 'Cao Bằng', kind 'computers'"."""
        given = [(f.name, getattr(self, f.name)) for f in fields(self)]
        return ", ".join(f"{name} {value!r}" for name, value in given if value) or "no filter"


class Placed(Protocol):
    """Anything with a place and a level: a registry School or a SchoolStatus."""

    @property
    def province(self) -> str: ...
    @property
    def commune(self) -> str: ...
    @property
    def level(self) -> str: ...


P = TypeVar("P", bound=Placed)


def match_places(
    items: Iterable[P],
    province: str | None = None,
    commune: str | None = None,
    level: str | None = None,
) -> list[P]:
    """Items in every given place, in their order.

    Province and commune compare accent-, case- and prefix-insensitively ("ha noi" matches
    "Thành phố Hà Nội"); level compares case-insensitively.
    """
    p = province_key(province) if province else None
    c = key(commune) if commune else None
    lv = level.casefold() if level else None
    return [
        s
        for s in items
        if (p is None or key(s.province) == p)
        and (c is None or key(s.commune) == c)
        and (lv is None or s.level.casefold() == lv)
    ]


def check_values(f: Filters) -> None:
    """ExportError for a kind, need, class or status that is not one of the known values."""
    choices: tuple[tuple[str, str | None, tuple[str, ...]], ...] = (
        ("shortfall kind", f.kind, (*SHORTFALL_KINDS, KIND_ANY)),
        ("need", f.need, NEEDS),
        ("connectivity class", f.connectivity, CONNECTIVITY_CLASSES),
        ("monitoring status", f.monitoring, MONITORING_STATES),
    )
    for name, value, known in choices:
        if value is not None and value not in known:
            raise ExportError(f"unknown {name} {value!r} (known: {', '.join(known)})")


def filter_schools(snapshot: Snapshot, f: Filters | None = None) -> list[SchoolStatus]:
    """Schools matching every filter (see match_places), in rank order (measured need first).

    Raises UnknownPlace when nothing matched because a place filter names a place that neither
    the official list nor any school has; a known place with nothing to list gives []."""
    f = f or Filters()
    check_values(f)
    chosen = snapshot.by_priority()
    if f.province or f.commune or f.level:
        chosen = match_places(chosen, f.province, f.commune, f.level)
    if f.kind:
        any_kind = f.kind == KIND_ANY
        chosen = [s for s in chosen if (bool(s.shortfalls) if any_kind else f.kind in s.shortfalls)]
    if f.need:
        chosen = [s for s in chosen if s.need == f.need]
    if f.connectivity or f.monitoring:
        chosen = [s for s in chosen if f.connectivity in (None, s.connectivity)
                  and f.monitoring in (None, s.monitoring)]  # fmt: skip
    if not chosen and (f.province or f.commune or f.level):
        check_places(snapshot, f)
    return chosen


def check_places(snapshot: Snapshot, f: Filters, places: Places | None = None) -> None:
    """UnknownPlace naming the first place filter that no school and no official list knows."""
    places = places or default_places()
    schools = list(snapshot.schools.values())
    official = places.province(f.province) if f.province else None
    if f.province and official is None and not match_places(schools, f.province):
        succession = places.succession(f.province)
        if succession is not None:
            raise UnknownPlace(
                f"no province {f.province!r} since 2025: {succession.note}; "
                f"ask for {succession.province.name!r}"
            )
        registry = {s.province for s in schools if s.province}
        close = places.suggest_province(f.province) + suggest(f.province, registry)
        raise UnknownPlace(f"unknown province {f.province!r}" + _closest(close))
    if f.commune:
        in_province = match_places(schools, f.province) if f.province else schools
        known = {s.commune for s in in_province if s.commune}
        pool = [official] if official is not None else places.provinces
        if f.province and official is None:
            pool = []  # a province only the registry knows: only its schools' communes
        found = any(p.commune(f.commune) is not None for p in pool)
        if not found and key(f.commune) not in {key(c) for c in known}:
            names = known | {c.name for p in pool for c in p.communes}
            where = f" in {official.name if official else f.province}" if f.province else ""
            raise UnknownPlace(
                f"unknown commune {f.commune!r}{where}" + _closest(suggest(f.commune, names))
            )
    if f.level:
        levels = sorted({s.level for s in schools if s.level})
        if f.level.casefold() not in {lv.casefold() for lv in levels}:
            raise UnknownPlace(
                f"unknown level {f.level!r}: no school has it (levels: {', '.join(levels)})"
            )


def _closest(names: list[str]) -> str:
    unique = list(dict.fromkeys(names))[:5]
    if not unique:
        return " (no known name is close)"
    return " (closest: " + ", ".join(repr(n) for n in unique) + ")"
