"""Vietnam's provinces and communes (2025 two-tier structure) from the `vietnam-provinces` package.

Names are matched the way people type them: case, accents, spacing and the administrative
prefix ("Thành phố", "Tỉnh", "TP.", "Phường", "Xã", "Đặc khu") do not matter, so "ha noi",
"TP Hà Nội" and "Thành phố Hà Nội" are the same province. An exact (accented) match wins over
an accent-insensitive one, because two communes of one province may differ only by a tone mark.
"""

from __future__ import annotations

import csv
import difflib
import json
import re
import unicodedata
from collections.abc import Iterable
from dataclasses import dataclass, field
from functools import cache, lru_cache
from pathlib import Path

# Longest first, so "thanh pho" is removed before a shorter prefix could match.
_PREFIXES = ("thanh pho ", "dac khu ", "phuong ", "tinh ", "tp. ", "tp.", "tp ", "xa ")
_SPACES = re.compile(r"[\s_]+")
# Common short forms that no prefix rule can derive; folded alias -> folded official key.
ALIASES = {
    "hcm": "ho chi minh",
    "tphcm": "ho chi minh",
    "tp.hcm": "ho chi minh",
    "sai gon": "ho chi minh",
    "hn": "ha noi",
}


def fold(name: str) -> str:
    """Lower-case, accent-free, single-spaced form of a name ("Đắk  Lắk" -> "dak lak")."""
    decomposed = unicodedata.normalize("NFD", name.replace("Đ", "D").replace("đ", "d"))
    bare = "".join(c for c in decomposed if not unicodedata.combining(c))
    return _SPACES.sub(" ", bare).strip().casefold()


def _exact(name: str) -> str:
    """Accent-keeping key: NFC, case-folded, single-spaced."""
    return _SPACES.sub(" ", unicodedata.normalize("NFC", name)).strip().casefold()


def strip_prefix(folded: str) -> str:
    """Drop the administrative prefix from a folded name ("thanh pho ha noi" -> "ha noi")."""
    for prefix in _PREFIXES:
        if folded.startswith(prefix) and len(folded) > len(prefix):
            return folded[len(prefix) :].strip()
    return folded


@lru_cache(maxsize=16384)  # exports compare 60,000 schools' places; names repeat
def key(name: str) -> str:
    """The accent-, case- and prefix-insensitive key used to compare place names."""
    return strip_prefix(fold(name))


def key_with_accents(name: str) -> str:
    """The name without its administrative prefix, accents kept ("Phường Ba Đình" -> "Ba Đình")."""
    words = name.split()
    folded_words = [fold(w) for w in words]
    for prefix in _PREFIXES:
        n = len(prefix.split())
        if " ".join(folded_words[:n]) + " " == prefix and len(words) > n:
            return " ".join(words[n:])
    return name


# --- Vietnamese collation --------------------------------------------------------------------

# The Vietnamese alphabet (with f, j, w, z for foreign words): ă, â, đ, ê, ô, ơ, ư are letters of
# their own, tone marks sort after the letters in the order none, huyền, hỏi, ngã, sắc, nặng,
# lower case before upper case. The same order as Intl.Collator("vi") (the coverage page; a
# test compares the two).
_LETTERS = "aăâbcdđeêfghijklmnoôơpqrstuưvwxyz"
_LETTER = {c: i for i, c in enumerate(_LETTERS)}
_SHAPES = {("a", "\u0306"): "ă", ("a", "\u0302"): "â", ("e", "\u0302"): "ê",
           ("o", "\u0302"): "ô", ("o", "\u031b"): "ơ", ("u", "\u031b"): "ư"}  # fmt: skip
_TONES = {"\u0300": 1, "\u0309": 2, "\u0303": 3, "\u0301": 4, "\u0323": 5}


def collation_key(name: str) -> tuple[tuple[int, ...], tuple[int, ...], tuple[int, ...]]:
    """A sort key that orders names as Vietnamese dictionaries (and the coverage page) do."""
    primary: list[int] = []
    tones: list[int] = []
    cases: list[int] = []
    for char in name:
        lower = char.lower()
        parts = unicodedata.normalize("NFD", lower)
        base, marks = parts[0], parts[1:]
        tone = 0
        for mark in marks:
            if mark in _TONES:
                tone = _TONES[mark]
            else:
                base = _SHAPES.get((base, mark), base)
        if base in _LETTER:
            primary.append(300 + _LETTER[base])
        elif base.isdigit():
            primary.append(200 + int(base))
        elif base.isspace():
            primary.append(0)
        elif base.isalnum():
            primary.append(1000 + ord(base))
        else:
            primary.append(1 + min(ord(base), 198))  # punctuation: after spaces, before digits
        tones.append(tone)
        cases.append(int(char != lower))
    return tuple(primary), tuple(tones), tuple(cases)


def suggest(name: str, candidates: Iterable[str], n: int = 3) -> list[str]:
    """The candidates closest to `name`, compared by key() (accents, case, prefix ignored)."""
    by_key: dict[str, str] = {}
    for candidate in candidates:
        by_key.setdefault(key(candidate), candidate)
    close = difflib.get_close_matches(key(name), list(by_key), n=n, cutoff=0.6)
    return [by_key[k] for k in close]


@dataclass(frozen=True, slots=True)
class Commune:
    """One commune (xã, phường or đặc khu) with its official name and code."""

    name: str
    code: int
    province: str


@dataclass(slots=True)
class Province:
    """One province or centrally governed city, with its communes."""

    name: str
    code: int
    communes: list[Commune] = field(default_factory=list)
    _by_exact: dict[str, Commune] = field(default_factory=dict, repr=False)
    _by_key: dict[str, list[Commune]] = field(default_factory=dict, repr=False)

    def add(self, commune: Commune) -> None:
        self.communes.append(commune)
        for exact in {_exact(commune.name), _exact(key_with_accents(commune.name))}:
            self._by_exact.setdefault(exact, commune)
        for k in {fold(commune.name), key(commune.name)}:
            self._by_key.setdefault(k, []).append(commune)

    def commune(self, name: str) -> Commune | None:
        """The commune called `name` in this province, or None if unknown or ambiguous."""
        found = self._by_exact.get(_exact(name))
        if found is not None:
            return found
        for k in (fold(name), key(name)):
            candidates = self._by_key.get(k, [])
            if len(candidates) == 1:
                return candidates[0]
        return None


def _loose(name: str) -> str:
    """key() with every space and punctuation removed ("Bà Rịa – Vũng Tàu" -> "bariavungtau")."""
    return re.sub(r"[^0-9a-z]", "", key(name))


@dataclass(frozen=True, slots=True)
class Succession:
    """A province name of before the 2025 merger and the 2025 province that took it in."""

    before: str
    province: Province
    since: str  # ISO date
    source: str

    @property
    def note(self) -> str:
        return (
            f"{self.before} is part of {self.province.name} since {self.since} ({self.source})"
        )


SUCCESSORS_FILE = Path(__file__).with_name("province_successors.csv")


class Places:
    """Lookup of provinces and communes by name."""

    def __init__(self, provinces: list[Province], successors: Iterable[tuple[str, ...]] = ()):
        self.provinces = provinces
        self._by_exact: dict[str, Province] = {}
        self._by_key: dict[str, Province] = {}
        for p in provinces:
            self._by_exact[_exact(p.name)] = p
            self._by_exact[_exact(key_with_accents(p.name))] = p
            self._by_key[fold(p.name)] = p
            self._by_key[key(p.name)] = p
        self._successions: dict[str, Succession] = {}
        for before, after, since, source in successors:
            province = self.province(after)
            if province is None:
                raise ValueError(f"{SUCCESSORS_FILE}: {after!r} is not a province of 2025")
            self._successions[_loose(before)] = Succession(before, province, since, source)

    def succession(self, name: str) -> Succession | None:
        """The 2025 province that took in the pre-2025 province called `name`, if it is one."""
        return self._successions.get(_loose(name))

    def suggest_province(self, name: str) -> list[str]:
        """The closest province names of 2025, and of before with their successor."""
        names = {p.name: p.name for p in self.provinces}
        for s in self._successions.values():
            names[s.before] = f"{s.before} (now {s.province.name})"
        return [names[n] for n in suggest(name, names)]

    def province(self, name: str) -> Province | None:
        """The province called `name` (any case, accents, prefix), or None."""
        return (
            self._by_exact.get(_exact(name))
            or self._by_key.get(fold(name))
            or self._by_key.get(key(name))
            or self._by_key.get(ALIASES.get(key(name), ""))
        )

    def commune(self, province: str, name: str) -> Commune | None:
        """The commune called `name` in the province called `province`, or None."""
        p = self.province(province)
        return p.commune(name) if p is not None else None

    @property
    def commune_count(self) -> int:
        return sum(len(p.communes) for p in self.provinces)

    @classmethod
    def from_json(cls, path: Path, successors: Path | None = SUCCESSORS_FILE) -> Places:
        """Load the package's nested-divisions JSON (provinces with their `wards`) and the
        table of pre-2025 provinces and their successors."""
        provinces: list[Province] = []
        for item in json.loads(path.read_text(encoding="utf-8")):
            province = Province(name=item["name"], code=int(item["code"]))
            for ward in item.get("wards", []):
                province.add(Commune(ward["name"], int(ward["code"]), province.name))
            provinces.append(province)
        rows: list[tuple[str, ...]] = []
        if successors is not None:
            text = successors.read_text(encoding="utf-8")
            lines = [line for line in text.splitlines() if line and not line.startswith("#")]
            rows = [tuple(r) for r in csv.reader(lines[1:])]  # after the header
        return cls(provinces, rows)


def province_key(name: str) -> str:
    """key() of the official name when `name` is a known province ("TP HCM"), else key(name)."""
    found = default_places().province(name)
    return key(found.name) if found is not None else key(name)


@cache
def default_places() -> Places:
    """The official 2025 list shipped by `vietnam-provinces` (loaded once, ~50 ms)."""
    from vietnam_provinces import NESTED_DIVISIONS_JSON_PATH

    return Places.from_json(Path(NESTED_DIVISIONS_JSON_PATH))
